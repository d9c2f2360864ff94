"""Flags that several commands share, defined once so that their names, choices and help agree."""

from __future__ import annotations

from convlab.choices import PRECISIONS


def add_inference_options(parser) -> None:
    """``--device``, ``--amp`` and ``--channels-last``: how ``predict`` and ``serve`` run a checkpoint."""
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when present)")
    parser.add_argument(
        "--amp",
        choices=PRECISIONS,
        default="off",
        help="mixed precision for the forward pass; with --channels-last, bf16 is the fastest "
        "CPU path on cores with AVX-512 BF16/AMX (checkpoints only; default: off)",
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="NHWC weights and batches, the layout oneDNN's convolutions run fastest in (checkpoints only)",
    )
