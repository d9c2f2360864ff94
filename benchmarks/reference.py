"""The plain alternative convlab is measured against: PyTorch as its tutorials write it.

torchvision.datasets.FashionMNIST / ImageFolder, per-image PIL transforms (Resize, ToTensor,
Normalize), DataLoader(batch_size=64, shuffle=True), and the train/test loops of the
"Quickstart" and "Optimizing Model Parameters" tutorials, nothing tuned. The models are
convlab's own (same code, same initial weights), so only the way of training differs.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# Fashion-MNIST's training-set statistics, as tutorials hard-code them (convlab measures the same).
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
TUTORIAL_BATCH = 64  # the Quickstart tutorial's batch size


def prepare_fashion_mnist(workdir: Path) -> Path:
    """A root for torchvision.datasets.FashionMNIST (``root/FashionMNIST/raw/<idx files>``) holding the very
    files convlab reads (Debian's package or convlab's download), so both sides train on the same bytes."""
    from convlab.data import locate

    source = locate("fashion-mnist")
    if source is None:
        raise SystemExit(
            "Fashion-MNIST is not on this machine: run `make data` or `convlab data download fashion-mnist`."
        )
    raw = Path(workdir) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in FASHION_FILES:
        target = raw / name
        if target.is_file():
            continue
        plain, packed = source / name, source / f"{name}.gz"
        if plain.is_file():
            shutil.copyfile(plain, target)
        else:
            with gzip.open(packed, "rb") as compressed, open(target, "wb") as out:
                shutil.copyfileobj(compressed, out)
    return Path(workdir)


def fashion_transform(image_size: int) -> transforms.Compose:
    steps = (
        [transforms.Resize(image_size)] if image_size != 28 else []
    )  # LeNet-5 takes 32x32, as convlab resizes
    return transforms.Compose(
        [*steps, transforms.ToTensor(), transforms.Normalize(FASHION_MEAN, FASHION_STD)]
    )


def fashion_loader(root: Path, train: bool, image_size: int, batch_size: int = TUTORIAL_BATCH) -> DataLoader:
    data = datasets.FashionMNIST(
        str(root), train=train, download=False, transform=fashion_transform(image_size)
    )
    return DataLoader(data, batch_size=batch_size, shuffle=train)


def imagefolder_loader(
    root: Path, image_size: int, batch_size: int = TUTORIAL_BATCH, num_workers: int = 2
) -> DataLoader:
    """The transfer-learning tutorial's folder pipeline: ImageFolder, Resize + ToTensor + Normalize, workers."""
    transform = transforms.Compose(
        [
            transforms.Resize((image_size, image_size)),
            transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ]
    )
    data = datasets.ImageFolder(str(root), transform=transform)
    return DataLoader(
        data, batch_size=batch_size, shuffle=True, num_workers=num_workers, persistent_workers=num_workers > 0
    )


def train_loop(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    max_images: int | None = None,
) -> int:
    """The Quickstart tutorial's train(): forward, loss, backward, step, zero_grad; returns images seen."""
    model.train()
    seen = 0
    for batch, (X, y) in enumerate(loader):
        pred = model(X)
        loss = loss_fn(pred, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        seen += len(y)
        if batch % 100 == 0:
            loss = loss.item()  # the tutorial prints the loss every 100 batches
        if max_images is not None and seen >= max_images:
            break
    return seen


def test_loop(model: nn.Module, loader: DataLoader, loss_fn: nn.Module) -> tuple[float, float]:
    """The Quickstart tutorial's test(): torch.no_grad, batch by batch; returns (accuracy, mean loss)."""
    model.eval()
    size, num_batches = len(loader.dataset), len(loader)
    test_loss, correct = 0.0, 0.0
    with torch.no_grad():
        for X, y in loader:
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    return correct / size, test_loss / num_batches
