"""One 7x7 convolution or three 3x3 ones: the same receptive field, fewer weights (VGG's argument,
Simonyan & Zisserman 2014, section 2.3). Two networks that differ only there, to train side by side:

    convlab sweep --data fashion-mnist --epochs 3 \\
        --vary model=examples/receptive_field.py:one_7x7,examples/receptive_field.py:three_3x3
    convlab summary examples/receptive_field.py:three_3x3 --input 1x28x28

Each has a 3x3 stem, then two stages of [block, 2x2 max pool], global average pooling and a linear
classifier. The block is one 7x7 convolution, or three 3x3 convolutions, each convolution followed by
batch norm and ReLU: both see 7x7 pixels of their input, but a C -> C block costs 49 C^2 weights one way
and 27 C^2 the other, and the stack has three non-linearities where the single layer has one. (Batch norm
lets both train at the default learning rate; without it the six-convolution stack diverges there.)
"""

from __future__ import annotations

from torch import nn

WIDTHS = (32, 64)  # channels of the two stages


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def block(in_channels: int, out_channels: int, design: str) -> nn.Sequential:
    """A 7x7 receptive field: one 7x7 convolution, or three 3x3 (the first changes the channels)."""
    if design == "7x7":
        return nn.Sequential(*conv_bn_relu(in_channels, out_channels, 7))
    layers: list[nn.Module] = []
    for index in range(3):
        layers += conv_bn_relu(in_channels if index == 0 else out_channels, out_channels, 3)
    return nn.Sequential(*layers)


class ReceptiveFieldNet(nn.Module):
    def __init__(self, design: str, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn_relu(in_chans, WIDTHS[0], 3))
        stages, channels = [], WIDTHS[0]
        for width in WIDTHS:
            stages += [block(channels, width, design), nn.MaxPool2d(2)]
            channels = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


def one_7x7(num_classes: int = 10, in_chans: int = 1) -> ReceptiveFieldNet:
    """Each stage: one 7x7 convolution."""
    return ReceptiveFieldNet("7x7", num_classes, in_chans)


def three_3x3(num_classes: int = 10, in_chans: int = 1) -> ReceptiveFieldNet:
    """Each stage: three 3x3 convolutions (the same 7x7 receptive field)."""
    return ReceptiveFieldNet("3x3", num_classes, in_chans)
