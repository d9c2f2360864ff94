"""Transfer learning on a folder of photos, one side in its own process (started by benchmarks/run.py).

The data is what a user brings: a folder of JPEG photos of varied sizes (``make_photo_folder``: Fashion-MNIST
garments enlarged to 200-500 pixels a side in both orientations, each photo tinted and lit at random so
that colour tells nothing of the class; train/ and val/ folders of 10 classes). The network is an
ImageNet-shaped one with "pretrained" weights: a torchvision ResNet-18 or MobileNetV2 state dict of 1,000
classes written once (random weights, seed 0: no download here; the arithmetic is what is measured) and
loaded by both sides, then given a new 10-class head.

Sides:
  reference  the torchvision transfer-learning tutorial: ImageFolder + RandomResizedCrop(224) +
             RandomHorizontalFlip + ToTensor + Normalize (ImageNet statistics), DataLoader(batch 32,
             shuffle, num_workers=2), torchvision's model with its classifier replaced, SGD momentum 0.9,
             lr 0.01 (the tutorial's 0.001 is for ImageNet weights), float32; the val loader Resize(256) + CenterCrop(224). feature-extract sets
             requires_grad=False on every parameter but the new head's (the tutorial's "ConvNet as fixed
             feature extractor") and still runs the whole network every step.
  convlab    `convlab.train(model=..., data=FOLDER, pretrained=STATE_DICT, transfer=..., augment=
             "random-resized-crop,flip", batch_size=32, optimizer="momentum", lr=0.01)`: everything
             else its defaults (the folder decoded once into its cache, batched augmentation, the
             precision and layout --amp auto picks and prints, cached backbone features for
             feature-extract).

Modes (--mode):
  finetune         images/s of training: the reference over --images images after 2 warm-up batches;
                   convlab over the second of two epochs of 2 x --images (the first builds the cache)
  feature-extract  seconds per epoch after the first (the first: convlab's cache and feature pass)
  accuracy         --epochs epochs of fine-tuning from the same weights; val top-1 of each side
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Clock, emit, set_threads  # noqa: E402

BATCH = 32
# The tutorial fine-tunes at 0.001 from ImageNet weights; these "pretrained" weights are random, and learn at 0.01.
LR, MOMENTUM = 0.01, 0.9
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SMALLEST, LARGEST = 200, 500  # photo sides, pixels


def make_photo_folder(root: Path, count: int, val_fraction: float = 0.2, seed: int = 0) -> Path:
    """``count`` JPEG photos (count / 10 per class) under root/{train,val}/<class>/: Fashion-MNIST garments
    enlarged to a random width and height in [SMALLEST, LARGEST], tinted and lit per photo, quality 90."""
    import numpy as np
    from PIL import Image

    from convlab.data import load_data

    if (root / "done").is_file():
        return root
    bundle = load_data("fashion-mnist", val_split=0)
    labels = bundle.labels("train")
    images = bundle._images  # uint8 (N, 1, 28, 28) in file order: train first
    rng = np.random.default_rng(seed)
    per_class = count // len(bundle.classes)
    for label, name in enumerate(bundle.classes):
        members = (labels == label).nonzero().flatten()[:per_class]
        for number, index in enumerate(members.tolist()):
            split = "val" if number < int(per_class * val_fraction) else "train"
            folder = root / split / name.replace("/", "-")
            folder.mkdir(parents=True, exist_ok=True)
            width, height = (int(side) for side in rng.integers(SMALLEST, LARGEST + 1, size=2))
            gray = Image.fromarray(images[index, 0].numpy()).resize((width, height), Image.BICUBIC)
            tint = rng.uniform(0.3, 1.0, size=3)
            light = rng.uniform(0, 60, size=3)
            pixels = np.asarray(gray, dtype=np.float32)[..., None] * tint + light
            pixels += rng.normal(0, 6, size=pixels.shape)  # sensor noise: photos do not compress to nothing
            photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            photo.save(folder / f"{number:05d}.jpg", quality=90)
    (root / "done").write_text("")
    return root


def write_source(path: Path, model: str) -> Path:
    """The "pretrained" weights both sides start from: torchvision's ``model`` at 1,000 classes, seed 0."""
    import torch
    import torchvision

    if not path.is_file():
        torch.manual_seed(0)
        torch.save(torchvision.models.get_model(model, num_classes=1000).state_dict(), path)
    return path


# -- the reference: the transfer-learning tutorial ------------------------------------------------------


def reference_loaders(folder: Path, workers: int = 2):
    import torch
    from torchvision import datasets, transforms

    train = transforms.Compose(
        [
            transforms.RandomResizedCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    val = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    loader = lambda split, transform, shuffle: torch.utils.data.DataLoader(  # noqa: E731
        datasets.ImageFolder(str(folder / split), transform),
        batch_size=BATCH,
        shuffle=shuffle,
        num_workers=workers,
        persistent_workers=True,
    )
    return loader("train", train, True), loader("val", val, False)


def reference_model(model_name: str, source: Path, transfer: str):
    import torch
    import torchvision
    from torch import nn

    model = torchvision.models.get_model(model_name, num_classes=1000)
    model.load_state_dict(torch.load(source, weights_only=True))
    if transfer == "feature-extract":
        for parameter in model.parameters():
            parameter.requires_grad = False
    if model_name.startswith("resnet"):
        model.fc = nn.Linear(model.fc.in_features, 10)
    else:  # mobilenet_v2: classifier = Dropout, Linear
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, 10)
    head = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.SGD(head, lr=LR, momentum=MOMENTUM)


def reference_epoch(model, loader, optimizer, max_images: int | None = None, warmup_batches: int = 0):
    """The tutorial's train_model inner loop over one epoch (or ``max_images`` after warm-up): images, seconds."""
    import torch
    from torch import nn

    criterion = nn.CrossEntropyLoss()
    model.train()
    seen, clock = 0, None
    for batch, (inputs, labels) in enumerate(loader):
        if batch == warmup_batches:
            clock = Clock().start()
        optimizer.zero_grad()
        with torch.set_grad_enabled(True):
            loss = criterion(model(inputs), labels)
            loss.backward()
            optimizer.step()
        if batch >= warmup_batches:
            seen += len(labels)
        if max_images is not None and seen >= max_images:
            break
    wall, cpu = clock.stop()
    return seen, wall, cpu


def reference_accuracy(model, loader) -> float:
    import torch

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for inputs, labels in loader:
            correct += (model(inputs).argmax(1) == labels).sum().item()
            total += len(labels)
    return correct / total


def run_reference(args) -> dict:
    train_loader, val_loader = reference_loaders(args.folder)
    transfer = "feature-extract" if args.mode == "feature-extract" else "finetune"
    model, optimizer = reference_model(args.model, args.source, transfer)
    if args.mode == "accuracy":
        seconds = 0.0
        for _ in range(args.epochs):
            _, wall, _ = reference_epoch(model, train_loader, optimizer)
            seconds += wall
        return {"val_top1": reference_accuracy(model, val_loader), "train_seconds": seconds}
    if args.mode == "feature-extract":
        first = reference_epoch(model, train_loader, optimizer)
        later = reference_epoch(model, train_loader, optimizer)
        return {
            "first_epoch_seconds": first[1],
            "seconds_per_epoch": later[1],
            "cpu_seconds_per_epoch": later[2],
            "images": later[0],
            "images_per_s": later[0] / later[1],
        }
    seen, wall, cpu = reference_epoch(model, train_loader, optimizer, args.images, warmup_batches=2)
    return {"images": seen, "seconds": wall, "cpu_seconds": cpu, "images_per_s": seen / wall}


# -- convlab --------------------------------------------------------------------------------------------


def run_convlab(args) -> dict:
    import os

    import convlab

    os.environ["CONVLAB_FOLDER_CACHE"] = str(args.cache)
    epochs = {"finetune": 2, "feature-extract": 3, "accuracy": args.epochs}[args.mode]
    with tempfile.TemporaryDirectory(prefix="convlab-finetune-") as out:
        started = time.perf_counter()
        convlab.train(
            model=args.model,
            data=str(args.folder),
            pretrained=str(args.source),
            transfer="finetune" if args.mode == "accuracy" else args.mode,
            augment=["random-resized-crop", "flip"],
            epochs=epochs,
            limit=2 * args.images if args.mode == "finetune" else None,  # the timed epoch: 2 x --images
            batch_size=BATCH,
            optimizer="momentum",
            lr=LR,
            momentum=MOMENTUM,
            schedule="constant",
            threads=args.threads,
            out=str(Path(out) / "run"),
        )
        total = time.perf_counter() - started
        with open(Path(out) / "run" / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        log = (Path(out) / "run" / "train.log").read_text()
    chosen = next((line for line in log.splitlines() if "precision" in line), "")
    per_s = [float(row["images_per_s"]) for row in rows]
    if args.mode == "accuracy":
        return {"val_top1": float(rows[-1]["val_top1"]), "total_seconds": total, "precision": chosen}
    if args.mode == "feature-extract":
        seconds = [float(row["seconds"]) for row in rows]
        return {
            "first_epoch_seconds": seconds[0],
            "seconds_per_epoch": min(seconds[1:]),
            "images_per_s": max(per_s[1:]),
            "total_seconds": total,
            "precision": chosen,
            "log": [line for line in log.splitlines() if "cache" in line],
        }
    return {
        "images_per_s": per_s[-1],
        "first_epoch_images_per_s": per_s[0],
        "seconds_per_epoch": [float(row["seconds"]) for row in rows],
        "total_seconds": total,
        "precision": chosen,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--side", choices=("reference", "convlab"), required=True)
    parser.add_argument("--mode", choices=("finetune", "feature-extract", "accuracy"), default="finetune")
    parser.add_argument("--model", default="resnet18", choices=("resnet18", "mobilenet_v2"))
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument(
        "--cache", type=Path, required=True, help="convlab's folder cache (CONVLAB_FOLDER_CACHE)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=320, help="finetune: reference images timed")
    parser.add_argument("--epochs", type=int, default=2, help="accuracy: epochs of each side")
    args = parser.parse_args()
    set_threads(args.threads)
    result = run_reference(args) if args.side == "reference" else run_convlab(args)
    emit({"side": args.side, "mode": args.mode, "model": args.model, **result})


if __name__ == "__main__":
    main()
