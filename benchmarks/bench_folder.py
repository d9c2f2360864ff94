"""A folder of JPEG files, one side in its own process (started by benchmarks/run.py): seconds per epoch.

Sides (each delivers normalised float batches of 64 RGB images at --size x --size, shuffled):
  reference       torchvision ImageFolder + Resize/ToTensor/Normalize + DataLoader(num_workers=2),
                  decoding every file every epoch (the transfer-learning tutorial's pipeline)
  convlab-decode  load_data(folder) without a cache: convlab's folder loader, decoding every epoch
  convlab-cache   load_data(folder) with the decode-once cache (`convlab data cache`): one gather
                  per batch from the memory-mapped uint8 array

An epoch is one pass over every image of the training split with no model (the data path alone;
a model adds the same compute to every side). The first epoch (which starts the workers) is
timed apart from the later ones; --epochs later epochs are timed and their median reported.
``make_jpeg_folder`` writes the data set: Fashion-MNIST images enlarged to 96x96 and tinted per
class, as JPEG (quality 90), in one sub-folder per class.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Clock, emit, set_threads  # noqa: E402

JPEG_SIZE = 96
BATCH = 64


def make_jpeg_folder(root: Path, count: int, seed: int = 0) -> Path:
    """``count`` JPEG files (count / 10 per class) of JPEG_SIZE x JPEG_SIZE RGB under root/<class>/."""
    import numpy as np
    from PIL import Image

    from convlab.data import load_data

    bundle = load_data("fashion-mnist", val_split=0)
    labels = bundle.labels("train")
    images = bundle._images  # uint8 (N, 1, 28, 28) in file order: train first
    rng = np.random.default_rng(seed)
    tints = rng.uniform(0.4, 1.0, size=(len(bundle.classes), 3))  # a colour per class
    for label, name in enumerate(bundle.classes):
        folder = root / name.replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        members = (labels == label).nonzero().flatten()[: count // len(bundle.classes)]
        for number, index in enumerate(members.tolist()):
            gray = Image.fromarray(images[index, 0].numpy()).resize((JPEG_SIZE, JPEG_SIZE), Image.BICUBIC)
            rgb = (np.asarray(gray, dtype=np.float64)[..., None] * tints[label]).astype(np.uint8)
            Image.fromarray(rgb).save(folder / f"{number:05d}.jpg", quality=90)
    return root


def epochs_reference(folder: Path, size: int, epochs: int) -> tuple[list[tuple[float, float]], int]:
    import reference

    loader = reference.imagefolder_loader(folder, size, BATCH, num_workers=2)
    times = []
    for _ in range(epochs + 1):
        clock = Clock().start()
        seen = sum(len(labels) for _, labels in loader)
        times.append(clock.stop())
    return times, seen


def epochs_convlab(folder: Path, size: int, epochs: int) -> tuple[list[tuple[float, float]], int, dict]:
    from convlab.data import load_data

    clock = Clock().start()
    bundle = load_data(str(folder), image_size=(size, size), in_chans=3, val_split=0)
    load_seconds = clock.stop()[0]
    times = []
    for epoch in range(epochs + 1):
        clock = Clock().start()
        seen = sum(len(labels) for _, labels in bundle.loader("train", BATCH, shuffle=True, epoch=epoch))
        times.append(clock.stop())
    return times, seen, {"load_seconds": load_seconds, "bundle": type(bundle).__name__}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--side", choices=("reference", "convlab-decode", "convlab-cache"), required=True)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument(
        "--cache", type=Path, required=True, help="$CONVLAB_FOLDER_CACHE for the convlab sides"
    )
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    set_threads(args.threads)
    os.environ["CONVLAB_NUM_WORKERS"] = "2"  # as the reference's DataLoader(num_workers=2)
    extra = {}
    if args.side == "reference":
        times, seen = epochs_reference(args.folder, args.size, args.epochs)
    else:
        # The decode side looks for its cache in an empty folder, so it decodes; the cache side in the real one.
        os.environ["CONVLAB_FOLDER_CACHE"] = str(
            args.cache if args.side == "convlab-cache" else args.cache / "none"
        )
        times, seen, extra = epochs_convlab(args.folder, args.size, args.epochs)
        expected = "CachedFolderBundle" if args.side == "convlab-cache" else "FolderBundle"
        if extra["bundle"] != expected:
            raise SystemExit(f"{args.side}: load_data gave a {extra['bundle']}, expected a {expected}")
    later = times[1:]
    emit(
        {
            "side": args.side,
            "images": seen,
            "first_epoch_seconds": times[0][0],
            "seconds_per_epoch": statistics.median(wall for wall, _ in later),
            "cpu_seconds_per_epoch": statistics.median(cpu for _, cpu in later),
            "images_per_s": seen / statistics.median(wall for wall, _ in later),
            **extra,
        }
    )


if __name__ == "__main__":
    main()
