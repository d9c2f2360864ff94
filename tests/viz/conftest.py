"""Fixtures for the visualisation tests: a LeNet-5 checkpoint, test images, and small nets whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import convlab
import convlab.checkpoint

CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
RECORD = {
    "classes": CLASSES,
    "input": {"channels": 1, "size": [32, 32], "mean": [0.5], "std": [0.5]},
    "epoch": 1,
    "metrics": {"val_top1": 0.1},
}


@pytest.fixture
def lenet_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = convlab.create_model("lenet5")
    return convlab.checkpoint.save_checkpoint(tmp_path / "run" / "best.safetensors", model, RECORD)


@pytest.fixture
def digit_images():
    """Two different 1 x 32 x 32 uint8 images: a vertical bar (a "1") and a ring (a "0")."""
    bar = torch.zeros(1, 32, 32, dtype=torch.uint8)
    bar[:, 6:26, 14:18] = 255
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    radius = ((yy - 15.5) ** 2 + (xx - 15.5) ** 2).sqrt()
    ring = ((radius > 7) & (radius < 11)).to(torch.uint8).mul(255).unsqueeze(0)
    return bar, ring


@pytest.fixture
def image_file(tmp_path):
    """An RGB 48 x 40 PNG of a bright square on the left: read_image converts it to 1 x 32 x 32."""
    pixels = np.zeros((40, 48, 3), dtype=np.uint8)
    pixels[10:30, 4:20] = (255, 200, 100)
    path = tmp_path / "square.png"
    Image.fromarray(pixels).save(path)
    return path


class LeftHalfNet(nn.Module):
    """Two class scores computed from the left half of the image only: the right half is cut off first."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = x[..., : x.shape[-1] // 2]
        return self.head(F.relu(self.conv(left)).mean(dim=(2, 3)))


class BrightDarkNet(nn.Module):
    """Class 0 scores how much bright (positive) signal the image holds, class 1 how much dark (negative):
    a 1x1 convolution with weights +1 and -1, ReLU, global average pooling. Grad-CAM for class 0 must
    light up exactly the bright pixels, for class 1 exactly the dark ones."""

    def __init__(self) -> None:
        super().__init__()
        self.detect = nn.Conv2d(1, 2, 1, bias=False)
        with torch.no_grad():
            self.detect.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.detect(x))).flatten(1)


@pytest.fixture
def bright_left_dark_right():
    """Model input 1 x 16 x 16: +1 in a square of the left half, -1 in a square of the right half."""
    image = torch.zeros(1, 16, 16)
    image[:, 4:10, 2:6] = 1.0
    image[:, 6:12, 10:15] = -1.0
    return image
