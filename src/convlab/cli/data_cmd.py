"""`convlab data list | info | download`: the named data sets, and what a data source holds."""

from __future__ import annotations

import json

from convlab.choices import FOLDER_IMAGE_SIZE, RESIZE_DESCRIPTIONS, RESIZE_RULES


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="list, inspect and download data sets",
        description="Named sets are looked for under --data-root (default $CONVLAB_DATA or "
        "~/.cache/convlab/data), then where a system package installs them, then downloaded.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list",
        help="every named set and whether it is on this machine",
        description="Every named set: classes, split sizes, image size, channels, "
        "and where it is found on this machine (nothing is downloaded).",
    )
    listing.add_argument("--data-root", default=None, help="where named sets are looked for")
    listing.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    listing.set_defaults(func=run_list)

    info = actions.add_parser(
        "info",
        help="classes, splits, size, channels, mean/std of a data source",
        description="Load a named set, an image folder or idx:IMAGES,LABELS and show "
        "its classes, split sizes, image size, channels, mean/std, where it was found, "
        "the files that could not be read and, for a folder, the sizes of its images "
        "(upright by their EXIF orientation) and the files it did not consider.",
    )
    info.add_argument("source", metavar="NAME_OR_PATH")
    info.add_argument("--data-root", default=None, help="where named sets are looked for")
    info.add_argument(
        "--image-size",
        default=None,
        help="convert to N or HxW (default: the set's own, a folder's most common)",
    )
    info.add_argument("--resize", default=None, metavar="|".join(RESIZE_RULES), help=_resize_help())
    info.add_argument("--in-chans", type=int, default=None, choices=(1, 3), help="convert to 1 or 3 channels")
    info.add_argument("--val-split", type=float, default=0.1, help="validation fraction (default: 0.1)")
    info.add_argument("--seed", type=int, default=0, help="seed of the validation split (default: 0)")
    info.add_argument(
        "--max-bad-fraction",
        type=float,
        default=0.05,
        help="fraction of unreadable files tolerated in a folder (default: 0.05)",
    )
    info.add_argument("--download", action="store_true", help="download a missing named set")
    info.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    info.set_defaults(func=run_info)

    cache = actions.add_parser(
        "cache",
        help="decode an image folder once into a memory-mapped array",
        description="Decode every image of a folder data set once, resized to the size "
        "training uses, into a uint8 array under $CONVLAB_FOLDER_CACHE (default "
        "~/.cache/convlab/folders) with a manifest of the files' sizes and mtimes. "
        "load_data and `convlab train --data FOLDER` then read the array instead of "
        "decoding every epoch, until a file changes (docs/performance.md).",
    )
    cache.add_argument("folder", metavar="FOLDER")
    cache.add_argument(
        "--image-size",
        default=None,
        help=f"size to cache, N or HxW: the size `convlab train` prints for your model (default "
        f"{FOLDER_IMAGE_SIZE}, what it uses for a model that declares no input size)",
    )
    cache.add_argument("--resize", default="crop", metavar="|".join(RESIZE_RULES), help=_resize_help("crop"))
    cache.add_argument(
        "--in-chans",
        type=int,
        default=None,
        choices=(1, 3),
        help="channels to cache (default: 3 if any image is in colour)",
    )
    cache.add_argument(
        "--max-bad-fraction",
        type=float,
        default=0.05,
        help="fraction of unreadable files tolerated (default: 0.05)",
    )
    cache.set_defaults(func=run_cache)

    download = actions.add_parser(
        "download",
        help="download a named set with torchvision",
        description="Download a named set into --data-root with torchvision's "
        "dataset code (checked against the published MD5).",
    )
    download.add_argument("name", metavar="NAME")
    download.add_argument(
        "--data-root", default=None, help="where to put it (default $CONVLAB_DATA or ~/.cache/convlab/data)"
    )
    download.set_defaults(func=run_download)


def _resize_help(default: str | None = None) -> str:
    rules = "; ".join(f"{rule}: {text}" for rule, text in RESIZE_DESCRIPTIONS.items())
    return f"how images are brought to the size ({rules}) (default: {default or 'crop for folders, squash for the rest'})"


def run_list(args) -> int:
    from convlab.data.registry import list_datasets

    rows = list_datasets(args.data_root)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD)
    for column, justify in (
        ("Name", "left"),
        ("Classes", "right"),
        ("Train", "right"),
        ("Test", "right"),
        ("Image", "right"),
        ("Channels", "right"),
        ("Available", "left"),
    ):
        table.add_column(column, justify=justify, no_wrap=column in ("Name", "Image"))
    for row in rows:
        where = row["location"] if row["available"] else "no (convlab data download " + row["name"] + ")"
        table.add_row(
            row["name"],
            str(row["classes"]),
            f"{row['train']:,}",
            f"{row['test']:,}",
            "x".join(map(str, row["image_size"])),
            str(row["in_chans"]),
            where,
        )
    console = Console()
    (console if console.is_terminal else Console(width=200)).print(table)
    return 0


def run_info(args) -> int:
    from convlab.data import load_data

    image_size = _parse_size(args.image_size) if args.image_size else None
    bundle = load_data(
        args.source,
        data_root=args.data_root,
        image_size=image_size,
        in_chans=args.in_chans,
        val_split=args.val_split,
        seed=args.seed,
        download=args.download,
        max_bad_fraction=args.max_bad_fraction,
        resize=args.resize,
    )
    summary = bundle.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    height, width = summary["image_size"]
    classes = summary["classes"]
    shown = ", ".join(classes if len(classes) <= 20 else classes[:20] + [f"... ({len(classes)} in all)"])
    print(f"{summary['name']}: {summary['num_classes']} classes ({shown})")
    print("splits: " + ", ".join(f"{split} {size:,}" for split, size in summary["splits"].items()))
    print(f"images: {height}x{width} ({summary['resize']}), {summary['in_chans']} channel(s)")
    if bundle.file_sizes:
        print("file sizes: " + _describe_sizes(bundle.file_sizes))
    print(
        f"mean: {', '.join(f'{m:.4f}' for m in summary['mean'])}   std: {', '.join(f'{s:.4f}' for s in summary['std'])}"
    )
    print(f"found: {summary['source']}")
    print(f"skipped: {len(summary['skipped'])} file(s)")
    for path, reason in summary["skipped"]:
        print(f"  {path}: {reason}")
    if summary["ignored"]:
        from convlab.data.folder import describe_ignored

        print(describe_ignored(summary["ignored"]))
    return 0


def _describe_sizes(sizes, shown: int = 4) -> str:
    """``480x640 (5), 640x480 (3), 3024x4032 (1)``: the most common sizes (H x W) of a folder's files."""
    common = sizes.most_common()
    listing = ", ".join(f"{height}x{width} ({count})" for (height, width), count in common[:shown])
    return listing + (f", ... ({len(common)} sizes)" if len(common) > shown else "")


def run_cache(args) -> int:
    from convlab.data.cache import cache_folder

    image_size = _parse_size(args.image_size) if args.image_size else None
    info = cache_folder(
        args.folder,
        image_size=image_size,
        in_chans=args.in_chans,
        max_bad_fraction=args.max_bad_fraction,
        resize=args.resize,
    )
    print(info.describe(args.folder))
    return 0


def run_download(args) -> int:
    from convlab.data.registry import describe_location, download, named_set

    folder = download(args.name, args.data_root)
    print(f"{named_set(args.name).title} is in {describe_location(named_set(args.name), folder)}")
    return 0


def _parse_size(value: str) -> tuple[int, int]:
    from convlab.errors import ConvlabError

    try:
        parts = [int(p) for p in value.lower().replace(",", "x").split("x")]
    except ValueError:
        raise ConvlabError(f"Image size {value!r} is not understood; give N (square) or HxW.") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise ConvlabError(f"Image size {value!r} must be one or two positive integers (N or HxW).")
    return parts[0], parts[1]
