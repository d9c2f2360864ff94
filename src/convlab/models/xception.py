"""Xception (Chollet 2017): Inception taken to the extreme, residual stacks of depthwise-separable convs."""

from __future__ import annotations

import torch
from torch import nn

from convlab.layers.activations import make_activation
from convlab.layers.conv import ConvNormAct, DepthwiseSeparableConv
from convlab.models._registry import activation_option, register_model

# Chollet 2017, Figure 5. The stem is two unpadded 3x3 convolutions (channels, stride). Every block is a
# residual unit of separable convolutions, each given by its output channels; "pool" blocks end with a
# 3x3 stride-2 max pool and take a 1x1 stride-2 convolution (+ BN) as shortcut, the others an identity.
ENTRY_FLOW = {
    "stem": [(32, 2), (64, 1)],
    "blocks": [
        {"separable": [128, 128], "pool": True},
        {"separable": [256, 256], "pool": True},
        {"separable": [728, 728], "pool": True},
    ],
}
MIDDLE_FLOW = {"blocks": [{"separable": [728, 728, 728], "pool": False}] * 8}  # "repeated 8 times"
EXIT_FLOW = {
    "blocks": [{"separable": [728, 1024], "pool": True}],
    "separable": [1536, 2048],  # two separable convolutions + ReLU after the last block, then global pooling
}


def _activation(name: str) -> nn.Module:
    """An activation that leaves its input intact: a block's first ReLU reads the tensor its shortcut adds."""
    activation = make_activation(name)
    if hasattr(activation, "inplace"):
        activation.inplace = False
    return activation


class SeparableConvBN(nn.Sequential):
    """Depthwise 3x3 then pointwise 1x1 with nothing in between (Chollet 2017, Sec. 3), then batch norm.

    The paper found no activation between the depthwise and pointwise steps works best
    (Figure 10); both convolutions are bias-free because the batch norm supplies the shift.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            DepthwiseSeparableConv(in_channels, out_channels, 3, norm=False, activation=None, bias=False),
            nn.BatchNorm2d(out_channels),
        )


class XceptionBlock(nn.Module):
    """[act -> separable conv -> BN] x k (-> 3x3 max pool /2) + shortcut (1x1 conv /2 + BN, or identity)."""

    def __init__(
        self, in_channels: int, separable: list[int], pool: bool, activation: str, activate_input: bool = True
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for index, width in enumerate(separable):
            if index > 0 or activate_input:
                layers.append(_activation(activation))
            layers.append(SeparableConvBN(channels, width))
            channels = width
        if pool:
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=2, bias=False), nn.BatchNorm2d(channels)
            )
        else:
            self.shortcut = nn.Identity()
        self.residual = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class Xception(nn.Module):
    """Entry flow (stem + 3 pooling blocks) -> middle flow (8 blocks at 728) -> exit flow -> pool -> fc.

    The total stride is 32, the stem is unpadded, and every later layer keeps at least one
    pixel, so the smallest input is 7x7 (the stem takes it to 3x3, then 1x1); 299x299 ends at 10x10.
    """

    def __init__(self, num_classes: int, in_chans: int = 3, activation: str = "relu") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_chans
        for out_channels, stride in ENTRY_FLOW["stem"]:
            layers.append(ConvNormAct(channels, out_channels, 3, stride, padding=0, activation=activation))
            channels = out_channels
        for index, block in enumerate(ENTRY_FLOW["blocks"]):
            # the first block follows the stem's activation, so it does not apply one again
            layers.append(XceptionBlock(channels, **block, activation=activation, activate_input=index > 0))
            channels = layers[-1].out_channels
        self.entry_flow = nn.Sequential(*layers)

        layers = []
        for block in MIDDLE_FLOW["blocks"]:
            layers.append(XceptionBlock(channels, **block, activation=activation))
            channels = layers[-1].out_channels
        self.middle_flow = nn.Sequential(*layers)

        layers = []
        for block in EXIT_FLOW["blocks"]:
            layers.append(XceptionBlock(channels, **block, activation=activation))
            channels = layers[-1].out_channels
        for width in EXIT_FLOW["separable"]:
            layers += [SeparableConvBN(channels, width), make_activation(activation)]
            channels = width
        self.exit_flow = nn.Sequential(*layers)

        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)  # the paper's optional fully-connected layers are left out

        for module in self.modules():  # He init; a batch norm follows every convolution, so scale is reset
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.exit_flow(self.middle_flow(self.entry_flow(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model(
    family="xception",
    year=2017,
    paper="Chollet, Xception: Deep Learning with Depthwise Separable Convolutions (CVPR 2017)",
    input_size=(3, 299, 299),
    num_classes=1000,
    torchvision=None,
    options={"activation": activation_option("relu")},
)
def xception(num_classes: int, in_chans: int, **options) -> Xception:
    """Xception: 36 conv layers (34 depthwise-separable) in 14 modules, 12 of them residual; 22.9M parameters.

    Same parameters as Keras's ``Xception`` (22,910,480 counting batch norm's moving mean and
    variance as Keras does; 22,855,952 trainable). Runs on inputs down to 7x7.
    """
    return Xception(num_classes, in_chans, **options)
