"""Checkpoints to export: zoo models with lived-in weights, recorded as trained on scikit-learn's digits.

Kaiming initialisation and batch-norm statistics gathered on real digits give logits of size 1 to 10,
like a trained network's, so a 1e-4 agreement is a real test (default init gives logits near 0).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import convlab
from convlab.checkpoint import save_checkpoint


def digits(channels: int, size: int):
    """scikit-learn's 8x8 digits (bundled, no download) at ``size`` x ``size`` with ``channels`` channels."""
    from convlab.data import load_data

    return load_data("digits", image_size=(size, size), in_chans=channels)


def write_checkpoint(
    path: Path,
    name: str,
    channels: int,
    size: int,
    *,
    trained: bool = True,
    data: dict | None = None,
    **options,
) -> Path:
    bundle = digits(channels, size)
    torch.manual_seed(0)
    model = convlab.create_model(name, num_classes=10, in_chans=channels, init="kaiming", **options)
    images, _ = next(iter(bundle.loader("train", 16)))
    model.train()
    with torch.no_grad():
        for _ in range(3):  # batch-norm running statistics of real images, as after training
            model(images)
    record = {
        "classes": list(bundle.classes),
        "input": {
            "channels": channels,
            "size": [size, size],
            "mean": list(bundle.mean),
            "std": list(bundle.std),
        },
        "data": data if data is not None else {"name": "digits", "val_split": 0.1, "seed": 0},
    }
    if trained:
        record.update(epoch=1, metrics={"val_top1": 0.1})
    return save_checkpoint(path, model, record)


@pytest.fixture
def make_checkpoint(tmp_path):
    """``make_checkpoint(name, channels, size, folder="run", file="best.safetensors", trained=True, data=None)``."""
    folders = []

    def make(name="lenet5", channels=1, size=32, *, folder="run", file="best.safetensors", **kwargs) -> Path:
        folders.append(tmp_path / folder)
        return write_checkpoint(tmp_path / folder / file, name, channels, size, **kwargs)

    yield make
    for folder in folders:  # VGG-11's files are 0.5 GB each; pytest would keep three sessions of them
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def lenet_onnx(tmp_path_factory):
    """One LeNet-5 checkpoint and its ONNX export, shared by the runtime tests: ``(checkpoint, result)``."""
    from convlab.exporting import export

    checkpoint = write_checkpoint(tmp_path_factory.mktemp("lenet") / "best.safetensors", "lenet5", 1, 32)
    return checkpoint, export(checkpoint)
