"""Squeeze-and-excitation (Hu et al. 2018): reweight channels by a gate computed from their means."""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcitation(nn.Module):
    """Global average pool -> 1x1 conv (reduce) -> ReLU -> 1x1 conv (expand) -> sigmoid -> scale.

    ``fc1``/``fc2`` are 1x1 convolutions, the key names torchvision and timm use, so their
    checkpoints map onto it.
    """

    def __init__(self, channels: int, reduction: int = 16, squeeze_channels: int | None = None) -> None:
        super().__init__()
        squeeze_channels = squeeze_channels or max(8, channels // reduction)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = torch.sigmoid(self.fc2(torch.relu(self.fc1(scale))))
        return x * scale
