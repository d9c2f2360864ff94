"""Network in Network (Lin, Chen, Yan 2013): mlpconv blocks and a global-average-pooling head, no FC layer.

The CIFAR-10 model of the paper's released Caffe definition: three mlpconv blocks, 32x32 input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers import make_activation
from convlab.models._registry import Option, activation_option, register_model

# Lin et al. 2013, CIFAR-10 model: per mlpconv block, the KxK convolution's kernel and maps, then the
# widths of its two 1x1 layers ("cccp" in the Caffe files), and the pooling that follows it.
NIN_CIFAR10 = [
    # kernel, conv maps, 1x1 widths, pooling after
    (5, 192, (160, 96), "max"),
    (5, 192, (192, 192), "avg"),
    (3, 192, (192, "classes"), "global"),
]

NIN_OPTIONS = {
    "activation": activation_option("relu"),
    "dropout": Option(0.5, "dropout after the first two mlpconv blocks"),
}


class MlpConv(nn.Module):
    """A KxK convolution followed by a small MLP (1x1 convolutions) applied at every position.

    The MLP makes each local patch's feature a non-linear function of the patch, where a
    single convolution is a generalised linear model (Lin et al. 2013, Fig. 1b).
    """

    def __init__(
        self,
        in_channels: int,
        conv_channels: int,
        kernel_size: int,
        mlp_widths: Sequence[int],
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, conv_channels, kernel_size, padding=kernel_size // 2),
            make_activation(activation),
        )
        mlp: list[nn.Module] = []
        width = conv_channels
        for units in mlp_widths:
            mlp += [nn.Conv2d(width, units, 1), make_activation(activation)]
            width = units
        self.mlp = nn.Sequential(*mlp)
        self.out_channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.conv(x))


class NiN(nn.Module):
    """mlpconv -> pool -> dropout, twice; a third mlpconv gives one map per class, averaged globally."""

    def __init__(self, num_classes: int, in_chans: int, activation: str, dropout: float) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ConvlabError(f"dropout must be a probability in [0, 1), got {dropout!r}.")
        stages: list[nn.Module] = []
        channels = in_chans
        for kernel, conv_maps, widths, pooling in NIN_CIFAR10:
            widths = tuple(num_classes if units == "classes" else units for units in widths)
            block = MlpConv(channels, conv_maps, kernel, widths, activation)
            stages.append(block)
            channels = block.out_channels
            if pooling != "global":
                # 3x3 stride 2, rounded up as Caffe does: 32 -> 16 -> 8.
                pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
                stages += [pool(3, 2, ceil_mode=True), nn.Dropout(dropout)]
        self.features = nn.Sequential(*stages)
        # Global average pooling: each class map's mean is that class's score; no FC layer to overfit.
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # The paper's Caffe files set Gaussian stds by hand; He et al.'s rule is the principled
                # version of that for a ReLU stack without normalisation.
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.global_pool(self.features(x)))


@register_model(
    family="nin",
    year=2013,
    paper="Lin, Chen, Yan, Network In Network (ICLR 2014)",
    input_size=(3, 32, 32),
    num_classes=10,
    options=NIN_OPTIONS,
)
def nin(num_classes: int, in_chans: int, **options) -> NiN:
    """Network in Network for CIFAR-10: three mlpconv blocks and global average pooling, 0.97M parameters.

    As in the paper's model, the last 1x1 layer (one map per class) is followed by the
    activation too, so class scores are averages of rectified maps. Dropout follows the first
    two blocks.
    """
    return NiN(num_classes, in_chans, **options)
