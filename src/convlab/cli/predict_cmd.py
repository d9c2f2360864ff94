"""`convlab predict`: the top-k classes of image files and folders, with the preprocessing stored in the model."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from convlab.cli.options import add_inference_options
from convlab.cli.output import print_wrapped
from convlab.files import require_file_or_folder


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="classify image files or folders of them with a run folder, checkpoint or exported model",
        description="Print the top-k classes and probabilities of each image (any format, mode and size; "
        "turned upright by its EXIF orientation, converted to the model's channels and size by its resize "
        "rule and normalised with its mean and std). A folder stands for every image file under it, "
        "recursively and sorted (image extensions only, hidden files skipped). --csv writes one row per "
        "image, --json prints one JSON document. An unreadable file gets one error line naming it; the "
        "other images are still predicted and the exit status is 1.",
    )
    parser.add_argument(
        "source",
        metavar="MODEL",
        help="run folder, .safetensors checkpoint, or .onnx / TorchScript .pt file from `convlab export`",
    )
    parser.add_argument("images", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files or folders")
    parser.add_argument("--topk", type=int, default=5, help="classes shown per image (default: 5)")
    parser.add_argument(
        "--json",
        action="store_true",
        help='print [{"image", "predictions": [{"label", "index", "probability"}]}] '
        '(an unreadable file has "error" instead of "predictions")',
    )
    parser.add_argument(
        "--csv",
        metavar="FILE",
        default=None,
        help="write one row per image: image, label, probability (the top class), then label_2, "
        "probability_2 ... up to --topk, and error (empty unless the file is unreadable)",
    )
    add_inference_options(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    require_file_or_folder(args.source)  # a mistyped path is answered before torch loads
    from convlab.files import atomic_write
    from convlab.prediction import EXPORTED_SUFFIXES, predict, resolve_source

    chosen = []  # the precision and layout predict ran in (auto: what pays for the model here)
    results = predict(
        args.source,
        args.images,
        topk=args.topk,
        device=args.device,
        skip_unreadable=True,
        amp=args.amp,
        channels_last=args.channels_last,
        on_precision=chosen.append,
    )
    from convlab.data.images import display_path

    for result in results:  # a file name that is not UTF-8 is printed and written with \xNN escapes
        result["image"] = display_path(result["image"])
    failed = [r for r in results if "error" in r]
    for result in failed:
        print(f"convlab: error: {result['error']}", file=sys.stderr)
    if args.csv:
        table = csv_table(results)
        atomic_write(Path(args.csv), lambda tmp: Path(tmp).write_text(table, newline=""))
    if args.json:
        print(json.dumps(results, indent=2))
    elif args.csv:
        print(f"Predicted {len(results) - len(failed)} of {len(results)} images; wrote {args.csv}")
    else:
        if chosen and resolve_source(args.source).suffix.lower() not in EXPORTED_SUFFIXES:  # a checkpoint
            print_wrapped("precision", str(chosen[0]))
            print()  # a blank line: the files' results start below
        print_predictions([r for r in results if "error" not in r])
    return 1 if failed else 0


def csv_table(results: list[dict]) -> str:
    """The results as CSV text: one row per image, the top class first, the ranks after it in column pairs."""
    k = max(1, *(len(r.get("predictions", [])) for r in results))  # --topk capped at the classes
    header = ["image", "label", "probability"]
    for rank in range(2, k + 1):
        header += [f"label_{rank}", f"probability_{rank}"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*header, "error"])
    for result in results:
        cells = []
        for guess in result.get("predictions", []):
            cells += [guess["label"], f"{guess['probability']:.6f}"]
        cells += [""] * (len(header) - 1 - len(cells))
        writer.writerow([result["image"], *cells, result.get("error", "")])
    return buffer.getvalue()


def print_predictions(results: list[dict]) -> None:
    """The image path on its own line (paths are long; a table would wrap them), then one line per class."""
    for result in results:
        print(result["image"])
        width = max(len(guess["label"]) for guess in result["predictions"])
        for rank, guess in enumerate(result["predictions"], start=1):
            print(
                f"  {rank}. {guess['label']:<{width}}  {guess['probability']:7.2%}  (class {guess['index']})"
            )
