"""`convlab export`: write a checkpoint as ONNX or TorchScript, checked against PyTorch on real images."""

from __future__ import annotations

from convlab.files import require_file_or_folder


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint or run folder to ONNX or TorchScript",
        description="Export a trained checkpoint (or a run folder's best checkpoint) with a dynamic batch axis "
        "and its classes, input size, channels, mean/std, model name/options and convlab version stored in "
        "the file. The exported model is run on test images of the model's own data (seeded random images "
        "normalised like it when that data is not on this machine) and its logits must be within 1e-4 of "
        "PyTorch's (1e-4 of the largest |logit| when logits go beyond +-1); otherwise nothing is written. Default output: model.onnx or model.torchscript.pt in the "
        "run folder.",
    )
    parser.add_argument(
        "source",
        metavar="RUN_OR_CHECKPOINT",
        help="run folder or .safetensors checkpoint",
    )
    parser.add_argument("--format", default="onnx", help="onnx or torchscript (default: onnx)")
    parser.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="output file, .onnx or .pt (default: model.onnx / model.torchscript.pt next to the checkpoint)",
    )
    parser.add_argument(
        "--opset", type=int, default=None, metavar="N", help="ONNX opset (default: the one torch recommends)"
    )
    parser.add_argument(
        "--check-samples",
        type=int,
        default=16,
        metavar="N",
        help="images compared between PyTorch and the exported file (default: 16, at least 2)",
    )
    parser.add_argument(
        "--allow-untrained",
        action="store_true",
        help="export a checkpoint that records no training (epoch and metrics)",
    )
    parser.add_argument(
        "--data-root", default=None, help="where named data sets are found (never downloaded here)"
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    require_file_or_folder(args.source)  # a mistyped path is answered before torch loads
    from convlab.exporting import export

    result = export(
        args.source,
        format=args.format,
        out=args.out,
        opset=args.opset,
        check_samples=args.check_samples,
        allow_untrained=args.allow_untrained,
        data_root=args.data_root,
    )
    print(result.describe())
    return 0
