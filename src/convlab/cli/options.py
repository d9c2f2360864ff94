"""Flags that several commands share, defined once so that their names, choices and help agree."""

from __future__ import annotations

import argparse

import yaml

from convlab.choices import MODEL_ARGUMENTS, PRECISIONS
from convlab.errors import ConvlabError


def add_inference_options(parser) -> None:
    """``--device``, ``--amp`` and ``--channels-last``: how ``predict`` and ``serve`` run a checkpoint."""
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when present)")
    parser.add_argument(
        "--amp",
        choices=PRECISIONS,
        default="auto",
        help="precision of the forward pass: auto = bf16 autocast where the CPU has bf16 matrix units "
        "(AMX, AVX-512 BF16) and the model does enough multiply-adds per image to gain, or the GPU has bf16, "
        "else float32, said on stderr; off = float32; bf16, fp16 = autocast (checkpoints only: an exported "
        "file runs as exported; default: auto)",
    )
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default="auto",
        help="NHWC weights and batches, the layout oneDNN's convolutions run fastest in; --no-channels-last "
        "keeps NCHW (checkpoints only; default: auto, NHWC for models with 2-d convolutions)",
    )


def parse_model_option(text: str) -> tuple[str, object]:
    """``key=value`` of ``--option``, the value read as YAML (``hidden=[500,150]``, ``pool=max``); a value YAML
    cannot read stays text. A malformed pair, or a setting with a flag of its own, is a ConvlabError."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConvlabError(f"Option '{text}' is not of the form KEY=VALUE, e.g. --option activation=relu.")
    if key in MODEL_ARGUMENTS:
        flag = "--" + key.replace("_", "-")
        raise ConvlabError(f"{key} has a flag of its own: give {flag} {value or 'N'}, not --option {text}.")
    try:
        return key, yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        return key, value


def model_option(text: str) -> tuple[str, object]:
    """``parse_model_option`` as an argparse type: a bad pair is a usage error of the command."""
    try:
        return parse_model_option(text)
    except ConvlabError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
