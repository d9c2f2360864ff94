"""MobileNetV2's inverted residual block (Sandler et al. 2018): expand, filter depthwise, project linearly."""

from __future__ import annotations

import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers.conv import ConvNormAct


class InvertedResidual(nn.Module):
    """1x1 expansion (t x channels) -> 3x3 depthwise -> 1x1 linear projection, plus a skip when shapes allow.

    The inverse of ResNet's bottleneck: the block is thin at its ends and wide in the middle,
    and the projection has no activation because a ReLU on a low-dimensional manifold
    destroys information (Sandler et al. 2018, section 3.2, Table 1). The layers sit in
    ``self.conv`` numbered as torchvision numbers them (``conv.0.0`` ... ``conv.3``).
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, expand_ratio: float, activation: str = "relu6"
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConvlabError(f"An inverted residual block's stride must be 1 or 2, got {stride}.")
        hidden = int(round(in_channels * expand_ratio))
        layers: list[nn.Module] = []
        if expand_ratio != 1:  # with t = 1 the expansion would be a 1x1 conv to the same width: skipped
            layers.append(ConvNormAct(in_channels, hidden, 1, activation=activation))
        layers += [
            ConvNormAct(hidden, hidden, 3, stride, groups=hidden, activation=activation),  # depthwise 3x3
            nn.Conv2d(hidden, out_channels, 1, bias=False),  # linear bottleneck: no activation
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)
