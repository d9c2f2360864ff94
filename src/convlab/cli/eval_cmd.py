"""`convlab eval`: loss, top-1/top-5, per-class scores and the confusion matrix of a checkpoint on a split."""

from __future__ import annotations

import argparse

from convlab.choices import PRECISIONS, TTA_MODES
from convlab.cli.output import print_wrapped
from convlab.files import require_file_or_folder

CONFUSION_PRINTED_UP_TO = 20  # classes; a larger matrix does not fit a terminal, see confusion-<split>.png


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint or run folder on its test or validation split, or on a held-out folder",
        description="Evaluate a checkpoint (or a run folder's best checkpoint): loss, top-1 and top-5 accuracy "
        "and error, per-class precision/recall/F1 and the confusion matrix. The data defaults to the one "
        "the model was trained on, at the same size and with the same validation split: its test split, or "
        "its validation split when it has none (a folder of photos split into train/val), which is said. "
        "--data FOLDER evaluates every image of a separate held-out folder of class folders, matched to the "
        "model's classes by name in any order. For a run folder the results are also written there, side by "
        "side: eval-<split>[-<tta>].json and confusion-<split>[-<tta>].png, with the data's name first for "
        "other data (eval-holdout-all.json). Top-5 is capped at the number of classes.",
    )
    parser.add_argument(
        "source",
        metavar="RUN_OR_CHECKPOINT",
        help="run folder or .safetensors checkpoint",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="data to evaluate on (default: the checkpoint's own); a folder of class folders other than the "
        "training data is a held-out set: all its images, class folders matched by name",
    )
    parser.add_argument(
        "--split",
        default=None,
        choices=("test", "val", "train"),
        help="default: test, or val when the data has no test split (a held-out folder: all its images)",
    )
    parser.add_argument(
        "--tta",
        default=None,
        choices=("none", *TTA_MODES),
        help="test-time augmentation: flip = image and mirror, shift = both at rest and moved 1 px "
        "up/down/left/right, tencrop = 5 crops and mirrors; a note says when the run was not trained "
        "with the augmentations a mode assumes (--augment flip, crop or translate)",
    )
    parser.add_argument("--batch-size", type=int, default=512, help="default: 512")
    parser.add_argument(
        "--amp",
        choices=PRECISIONS,
        default="auto",
        help="precision of the forward pass: auto = bf16 autocast where the CPU has bf16 matrix units (AMX, "
        "AVX-512 BF16) and the model does enough multiply-adds per image to gain, or the GPU has bf16, else "
        "float32, as training chose; off = float32; bf16, fp16 = autocast (default: auto)",
    )
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default="auto",
        help="NHWC weights, the layout oneDNN's convolutions run fastest in; --no-channels-last keeps NCHW "
        "(default: auto, NHWC for models with 2-d convolutions)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when present)")
    parser.add_argument("--data-root", default=None, help="where named data sets are found or downloaded")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.set_defaults(func=run)


def run(args) -> int:
    require_file_or_folder(args.source)  # a mistyped path is answered before torch loads
    from convlab.evaluation import evaluate

    result = evaluate(
        args.source,
        data=args.data,
        split=args.split,
        tta=args.tta,
        batch_size=args.batch_size,
        device=args.device,
        data_root=args.data_root,
        json_out=args.json,
        amp=args.amp,
        channels_last=args.channels_last,
    )
    if not args.json:
        print_result(result)
    return 0


def print_result(result) -> None:
    """The notes (one line each), the figures as tables, then the files written."""
    from rich.console import Console
    from rich.table import Table

    for note in result.notes:
        print(note)
    print_wrapped("precision", result.precision)
    console = Console()
    k = result.top5_k
    tta = f", TTA {result.tta}" if result.tta else ""
    summary = Table(title=f"{result.checkpoint}: {result.data} {result.split} ({result.n:,} images{tta})")
    for column in ("loss", "top-1 acc", f"top-{k} acc", "top-1 error", f"top-{k} error"):
        summary.add_column(column, justify="right")
    summary.add_row(
        f"{result.loss:.4f}",
        f"{result.top1:.2%}",
        f"{result.top5:.2%}",
        f"{1 - result.top1:.2%}",
        f"{1 - result.top5:.2%}",
    )
    console.print(summary)

    per_class = Table(title="Per class")
    per_class.add_column("class")
    for column in ("precision", "recall", "F1", "support"):
        per_class.add_column(column, justify="right")
    for row in result.per_class:
        per_class.add_row(
            str(row["class"]),
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
        )
    console.print(per_class)

    if len(result.classes) <= CONFUSION_PRINTED_UP_TO:
        matrix = Table(title="Confusion matrix (rows: true, columns: predicted)")
        matrix.add_column("true \\ predicted")
        for index, _ in enumerate(result.classes):
            matrix.add_column(str(index), justify="right")
        for index, (name, counts) in enumerate(zip(result.classes, result.confusion, strict=True)):
            cells = [
                f"[bold]{c}[/bold]" if j == index else (str(c) if c else "[dim]0[/dim]")
                for j, c in enumerate(counts)
            ]
            matrix.add_row(f"{index} {name}", *cells)
        console.print(matrix)
    if result.files:
        print(f"wrote {', '.join(result.files)}")
