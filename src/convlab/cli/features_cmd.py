"""`convlab features`: a trained network's penultimate-layer features of a data set, for a linear probe."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "features",
        help="save a network's features (its classifier's input) of a data set as .npz",
        description="Run a trained network as a fixed feature extractor over a data set and save what its "
        "classifier receives: features_<split> (float32, images x features), labels_<split> and classes, "
        "ready for any linear classifier. The data is converted to the network's input channels (and, "
        "for a convlab checkpoint, to its input size).",
    )
    parser.add_argument(
        "source",
        metavar="RUN_OR_CHECKPOINT",
        help="run folder, .safetensors checkpoint, or torchvision:ARCH[.TAG]",
    )
    parser.add_argument(
        "--data", required=True, help="a named set (fashion-mnist, cifar10, ...) or an image folder"
    )
    parser.add_argument(
        "--split", default="all", choices=("train", "val", "test", "all"), help="default: all"
    )
    parser.add_argument(
        "--out", default="features.npz", help="the .npz file to write (default: features.npz)"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="default: 256")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when present)")
    parser.add_argument("--data-root", default=None, help="where named data sets are found or downloaded")
    parser.add_argument(
        "--limit", type=int, default=None, help="keep only this many training images (stratified)"
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from convlab.transfer import write_features

    out = write_features(
        args.source,
        args.data,
        split=args.split,
        out=args.out,
        batch_size=args.batch_size,
        device=args.device,
        data_root=args.data_root,
        limit=args.limit,
    )
    with np.load(out) as saved:
        shapes = ", ".join(
            f"{key[len('features_') :]} {saved[key].shape[0]:,} x {saved[key].shape[1]:,}"
            for key in saved.files
            if key.startswith("features_")
        )
    print(f"{out}: features {shapes}")
    return 0
