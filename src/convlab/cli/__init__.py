"""The ``convlab`` command: a thin argparse layer over the Python API.

Each sub-command lives in its own module with ``add_parser(subparsers)`` (which sets
``func``). A ConvlabError is printed as one line, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from convlab import __version__
from convlab.errors import ConvlabError

# Sub-command modules, in the order `convlab --help` lists them.
COMMANDS = (
    "convlab.cli.models_cmd",
    "convlab.cli.summary_cmd",
    "convlab.cli.conv_arith_cmd",
    "convlab.cli.train_cmd",
    "convlab.cli.eval_cmd",
    "convlab.cli.predict_cmd",
    "convlab.cli.export_cmd",
    "convlab.cli.features_cmd",
    "convlab.cli.viz_cmd",
    "convlab.cli.serve_cmd",
    "convlab.cli.data_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    except ConvlabError as error:
        print(f"convlab: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("convlab: interrupted; files already written are kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
