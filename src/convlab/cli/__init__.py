"""The ``convlab`` command: a thin argparse layer over the Python API.

Each sub-command lives in its own module with ``add_parser(subparsers)`` (which sets
``func``). A ConvlabError is printed as one line, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from convlab import __version__
from convlab.errors import ConvlabError, closest_names
from convlab.files import WriteError

# Sub-command modules, in the order `convlab --help` lists them.
COMMANDS = (
    "convlab.cli.models_cmd",
    "convlab.cli.summary_cmd",
    "convlab.cli.conv_arith_cmd",
    "convlab.cli.train_cmd",
    "convlab.cli.sweep_cmd",
    "convlab.cli.lr_find_cmd",
    "convlab.cli.eval_cmd",
    "convlab.cli.predict_cmd",
    "convlab.cli.export_cmd",
    "convlab.cli.features_cmd",
    "convlab.cli.viz_cmd",
    "convlab.cli.plot_cmd",
    "convlab.cli.serve_cmd",
    "convlab.cli.data_cmd",
)


class Parser(argparse.ArgumentParser):
    """argparse with "did you mean" for a mistyped flag or choice (Python 3.11's argparse suggests
    neither), answered by the parser of the command that was run, which knows its own flags."""

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        # before parsing, so that a typo is named even where a required flag would seem missing
        unknown = self._unknown_flags(args)
        if unknown:
            self.error(self._unrecognized(unknown))
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:  # convlab's commands take nothing they do not declare: a leftover is a typo
            self.error(self._unrecognized(extras))
        return namespace, extras

    def _long_flags(self) -> list[str]:
        return [flag for flag in self._option_string_actions if flag.startswith("--")]

    def _unknown_flags(self, args: list[str]) -> list[str]:
        """The ``--flags`` of ``args`` this parser knows neither whole nor as an abbreviation. A parser
        with sub-commands looks only before the sub-command's name: what follows is the sub-command's."""
        known = self._long_flags()
        unknown = []
        for text in args:
            if text == "--" or (self._subparsers is not None and not text.startswith("-")):
                break
            flag = text.partition("=")[0]
            if flag.startswith("--") and not any(name.startswith(flag) for name in known):
                unknown.append(flag)
        return unknown

    def _unrecognized(self, extras: list[str]) -> str:
        """``unrecognized argument --optimzer; did you mean --optimizer?``"""
        flags = [text.partition("=")[0] for text in extras if text.startswith("-") and len(text) > 1]
        if not flags:
            return f"unrecognized argument{'s' if len(extras) > 1 else ''}: {' '.join(extras)}"
        names = [flag[2:] for flag in self._long_flags()]  # without the dashes every flag shares
        suggestions = {
            flag: [f"--{name}" for name in closest_names(flag.lstrip("-"), names, n=1)] for flag in flags
        }
        if len(flags) == 1:
            ((flag, close),) = suggestions.items()
            return f"unrecognized argument {flag}" + (f"; did you mean {close[0]}?" if close else "")
        named = [
            f"{flag} (did you mean {close[0]}?)" if close else flag for flag, close in suggestions.items()
        ]
        return f"unrecognized arguments {', '.join(named)}"

    def _check_value(self, action, value):
        # argparse's own check, with the nearest choices named first (`convlab trian` -> train)
        if action.choices is not None and value not in action.choices:
            choices = [str(choice) for choice in action.choices]
            close = closest_names(str(value), choices)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise argparse.ArgumentError(
                action, f"invalid choice '{value}'{hint} (choose from {', '.join(choices)})"
            )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="convlab",
        description="Build, inspect, train, evaluate and ship convolutional networks for image classification.",
    )
    parser.add_argument("--version", action="version", version=f"convlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except WriteError as error:
        # The disk or the folder failed, not the command line: status 1, where 2 says the usage was wrong.
        print(f"convlab: error: {error}", file=sys.stderr)
        return 1
    except ConvlabError as error:
        print(f"convlab: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("convlab: interrupted; files already written are kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
