"""Evaluation fixtures: a tensor-backed data bundle, a small MLP trained on Fashion-MNIST, its run folder, and a
run trained on a folder of photos."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import yaml

import convlab
from convlab.checkpoint import save_checkpoint
from tests.photos import train_photo_run, write_photo_folder

FASHION_LIMIT = 2000  # training images kept (stratified); the val split is 10% of them
TRAIN_STEPS = 300


class TensorBundle:
    """The slice of the DataBundle interface evaluation reads, over tensors already in memory."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str], split: str = "val"):
        self.name = "tensors"
        self.classes = classes
        self.in_chans = images.shape[1]
        self.image_size = tuple(images.shape[-2:])
        self.mean = (0.0,) * self.in_chans
        self.std = (1.0,) * self.in_chans
        self._split, self._images, self._labels = split, images, labels

    def splits(self) -> list[str]:
        return [self._split]

    def size(self, split: str) -> int:
        return len(self._labels)

    def labels(self, split: str) -> torch.Tensor:
        return self._labels

    def loader(
        self, split, batch_size, *, shuffle=False, augment=(), epoch=0, seed=0, device="cpu", drop_last=False
    ):
        return [
            (self._images[i : i + batch_size].to(device), self._labels[i : i + batch_size].to(device))
            for i in range(0, len(self._labels), batch_size)
        ]


@pytest.fixture
def tensor_bundle():
    return TensorBundle


@pytest.fixture(scope="session")
def fashion(fashion_mnist):
    return fashion_mnist(limit=FASHION_LIMIT, val_split=0.1, seed=0)


@pytest.fixture(scope="session")
def trained_mlp(fashion):
    """convlab's 784-300-10 MLP after 300 Adam steps on 1,800 Fashion-MNIST images (about 80% test top-1)."""
    torch.manual_seed(0)
    model = convlab.create_model("mlp", num_classes=10, in_chans=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps, epoch = 0, 0
    while steps < TRAIN_STEPS:
        for images, labels in fashion.loader("train", 64, shuffle=True, epoch=epoch, seed=0):
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            if steps == TRAIN_STEPS:
                break
        epoch += 1
    return model.eval()


@pytest.fixture(scope="session")
def record(fashion):
    """The checkpoint record the training engine writes, for a run on ``fashion``."""
    return {
        "classes": list(fashion.classes),
        "input": {
            "channels": fashion.in_chans,
            "size": list(fashion.image_size),
            "mean": list(fashion.mean),
            "std": list(fashion.std),
        },
        "data": {"name": "fashion-mnist", "source": fashion.source, "val_split": 0.1, "seed": 0},
        "epoch": 3,
        "metrics": {},
        "config": {
            "model": "mlp",
            "data": "fashion-mnist",
            "limit": FASHION_LIMIT,
            "val_split": 0.1,
            "seed": 0,
        },
    }


@pytest.fixture
def run_folder(tmp_path, trained_mlp, record):
    """A training run's folder: the trained MLP's best checkpoint with ``record`` and its config.yaml."""
    run = tmp_path / "run"
    save_checkpoint(run / "best.safetensors", trained_mlp, record)
    (run / "config.yaml").write_text(yaml.safe_dump(record["config"]))
    return run


@pytest.fixture(scope="session")
def photo_run(tmp_path_factory):
    """A run trained on a folder of 3 x 20 photos split into train/val (no test split): convlab's MLP, 2 epochs,
    its classes in the order stripes, plain, dots (not the folders' sorted order)."""
    root = tmp_path_factory.mktemp("photo-run")
    return train_photo_run(write_photo_folder(root / "photos"), root / "run")
