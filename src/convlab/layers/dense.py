"""DenseNet's blocks (Huang et al. 2017): the bottleneck dense layer, the dense block and the transition layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convlab.layers.activations import make_activation

__all__ = ["DenseBlock", "DenseLayer", "Transition"]


class DenseLayer(nn.Module):
    """BN-ReLU-Conv(1x1) -> BN-ReLU-Conv(3x3): ``growth_rate`` new feature maps from everything before it.

    The 1x1 bottleneck first reduces the concatenated input to ``bn_size * growth_rate`` channels
    (4k in DenseNet-B, Huang et al. 2017, section 3). Pre-activation order, as in the paper.
    """

    def __init__(
        self,
        in_channels: int,
        growth_rate: int,
        bn_size: int = 4,
        dropout: float = 0.0,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        width = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = make_activation(activation)
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.relu2 = make_activation(activation)
        self.conv2 = nn.Conv2d(width, growth_rate, kernel_size=3, padding=1, bias=False)
        self.dropout = dropout  # the paper drops after each conv only when training without augmentation
        self.out_channels = growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.relu1(self.norm1(x)))
        x = self.conv2(self.relu2(self.norm2(x)))
        return F.dropout(x, p=self.dropout, training=self.training) if self.dropout > 0 else x


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers, each fed the concatenation of the block input and all earlier outputs.

    Output: ``in_channels + num_layers * growth_rate`` channels at the input's size. Layers are named
    ``denselayer1``, ``denselayer2``, ... as in torchvision.
    """

    def __init__(
        self,
        num_layers: int,
        in_channels: int,
        growth_rate: int,
        bn_size: int = 4,
        dropout: float = 0.0,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = DenseLayer(
                in_channels + i * growth_rate, growth_rate, bn_size, dropout, activation
            )
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


class Transition(nn.Sequential):
    """Between dense blocks: BN-ReLU-Conv(1x1) to ``out_channels`` then 2x2 average pooling (halves the size).

    DenseNet-C compresses here: ``out_channels = floor(compression * in_channels)``, 0.5 in the paper.
    """

    def __init__(self, in_channels: int, out_channels: int, activation: str = "relu") -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = make_activation(activation)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)
        self.out_channels = out_channels
