"""`convlab predict`: the top-k classes of image files, with the preprocessing stored in the checkpoint."""

from __future__ import annotations

import json
import sys

from convlab.cli.options import add_inference_options


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="classify image files with a checkpoint or run folder",
        description="Print the top-k classes and probabilities of each image (any format, mode and size; "
        "converted to the checkpoint's channels and size and normalised with its mean and std). "
        "An unreadable file gets one error line naming it; the other images are still predicted "
        "and the exit status is 1.",
    )
    parser.add_argument("source", metavar="RUN_OR_CHECKPOINT", help="run folder or .safetensors checkpoint")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    parser.add_argument("--topk", type=int, default=5, help="classes shown per image (default: 5)")
    parser.add_argument(
        "--json",
        action="store_true",
        help='print [{"image", "predictions": [{"label", "index", "probability"}]}] '
        '(an unreadable file has "error" instead of "predictions")',
    )
    add_inference_options(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from convlab.prediction import predict

    results = predict(
        args.source,
        args.images,
        topk=args.topk,
        device=args.device,
        skip_unreadable=True,
        amp=args.amp,
        channels_last=args.channels_last,
    )
    failed = [r for r in results if "error" in r]
    for result in failed:
        print(f"convlab: error: {result['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_predictions([r for r in results if "error" not in r])
    return 1 if failed else 0


def print_predictions(results: list[dict]) -> None:
    """The image path on its own line (paths are long; a table would wrap them), then one line per class."""
    for result in results:
        print(result["image"])
        width = max(len(guess["label"]) for guess in result["predictions"])
        for rank, guess in enumerate(result["predictions"], start=1):
            print(
                f"  {rank}. {guess['label']:<{width}}  {guess['probability']:7.2%}  (class {guess['index']})"
            )
