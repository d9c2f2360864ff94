"""MobileNet v1 (Howard et al. 2017) and v2 (Sandler et al. 2018): nets of depthwise-separable convs."""

from __future__ import annotations

import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers.conv import ConvNormAct, DepthwiseSeparableConv
from convlab.layers.inverted_residual import InvertedResidual
from convlab.models._registry import Option, activation_option, register_model

# Howard et al. 2017, Table 1: a 3x3 stride-2 convolution to 32 channels, then 13 depthwise-separable layers
# (3x3 depthwise + 1x1 pointwise) as (output channels, stride). The table's second-to-last "Conv dw / s2"
# maps 7x7 to 7x7, a known typo: that layer has stride 1, as in the authors' released model.
MOBILENET_V1_STEM = 32
MOBILENET_V1_LAYERS = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),  # the table's "5x"
    (1024, 2),
    (1024, 1),
]

# Sandler et al. 2018, Table 2: a 3x3 stride-2 convolution to 32 channels, then bottleneck stages as
# t (expansion factor), c (output channels), n (repeats), s (stride of the first repeat), then a 1x1
# convolution to 1280 channels.
MOBILENET_V2_STEM = 32
MOBILENET_V2_SETTINGS = [
    # t, c, n, s
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]
MOBILENET_V2_LAST = 1280

MOBILENET_V1_OPTIONS = {
    "activation": activation_option("relu"),
    "width_multiplier": Option(
        1.0, "the paper's alpha (1.0, 0.75, 0.5, 0.25 in Table 6): scales every layer"
    ),
}
MOBILENET_V2_OPTIONS = {
    "activation": activation_option("relu6"),
    "width_mult": Option(
        1.0, "scales every layer's channels, rounded to multiples of 8 (0.35 to 1.4 in the paper)"
    ),
    "dropout": Option(0.2, "dropout before the classifier, as torchvision's"),
}


def _check_width(width: float, option: str) -> None:
    if not width > 0:
        raise ConvlabError(f"{option} must be a positive number such as 0.5, 0.75 or 1.0, got {width}.")


def round_channels(channels: float, divisor: int = 8) -> int:
    """Round a scaled channel count to the nearest multiple of ``divisor``, never losing more than 10%.

    MobileNetV2's reference code keeps every width a multiple of 8 (what mobile vector units
    handle best); e.g. 32 * 0.35 = 11.2 -> 16, 24 * 0.75 = 18 -> 24, 1280 * 1.4 = 1792.
    """
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return rounded


class MobileNetV1(nn.Module):
    """Conv 3x3/2 -> 13 depthwise-separable layers (each: dw 3x3, BN, act, 1x1, BN, act) -> avg pool -> fc."""

    def __init__(
        self, num_classes: int, in_chans: int = 3, width_multiplier: float = 1.0, activation: str = "relu"
    ) -> None:
        super().__init__()
        _check_width(width_multiplier, "width_multiplier")
        # Width multiplier alpha thins every layer uniformly (Section 3.3): channels -> int(alpha * channels)
        channels = int(MOBILENET_V1_STEM * width_multiplier)
        layers: list[nn.Module] = [ConvNormAct(in_chans, channels, 3, stride=2, activation=activation)]
        for out_channels, stride in MOBILENET_V1_LAYERS:
            out_channels = int(out_channels * width_multiplier)
            layers.append(DepthwiseSeparableConv(channels, out_channels, 3, stride, activation=activation))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # the paper's 7x7 average pool, at any input size
        self.fc = nn.Linear(channels, num_classes)

        for module in self.modules():  # He init for the ReLU convolutions (batch norm sits after each)
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class MobileNetV2(nn.Module):
    """Conv 3x3/2 -> 17 inverted residual blocks -> 1x1 conv to 1280 -> avg pool -> dropout -> fc.

    ``features`` holds the stem (features.0), the blocks (features.1-17) and the last 1x1
    convolution (features.18), the layout and key names of torchvision's MobileNetV2.
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        width_mult: float = 1.0,
        activation: str = "relu6",
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        _check_width(width_mult, "width_mult")
        channels = round_channels(MOBILENET_V2_STEM * width_mult)
        # Multipliers below one thin every layer except the last convolution (Sandler et al. 2018, Sec. 6.1)
        last_channels = round_channels(MOBILENET_V2_LAST * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvNormAct(in_chans, channels, 3, stride=2, activation=activation)]
        for expansion, width, repeats, first_stride in MOBILENET_V2_SETTINGS:
            out_channels = round_channels(width * width_mult)
            for index in range(repeats):
                stride = first_stride if index == 0 else 1
                layers.append(InvertedResidual(channels, out_channels, stride, expansion, activation))
                channels = out_channels
        layers.append(ConvNormAct(channels, last_channels, 1, activation=activation))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channels, num_classes))

        for module in self.modules():  # the reference implementation's init, which torchvision keeps
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model(
    family="mobilenet",
    year=2017,
    paper="Howard et al., MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications "
    "(arXiv 2017)",
    input_size=(3, 224, 224),
    num_classes=1000,
    torchvision=None,
    options=MOBILENET_V1_OPTIONS,
)
def mobilenet_v1(num_classes: int, in_chans: int, **options) -> MobileNetV1:
    """MobileNet v1: 13 depthwise-separable layers (Table 1), 4.2M parameters at width 1.0.

    The width multiplier alpha cuts parameters and multiply-adds by about alpha squared.
    """
    return MobileNetV1(num_classes, in_chans, **options)


@register_model(
    family="mobilenet",
    year=2018,
    paper="Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks (CVPR 2018)",
    input_size=(3, 224, 224),
    num_classes=1000,
    torchvision="mobilenet_v2",
    options=MOBILENET_V2_OPTIONS,
)
def mobilenet_v2(num_classes: int, in_chans: int, **options) -> MobileNetV2:
    """MobileNetV2: inverted residuals with linear bottlenecks (Table 2), 3.5M parameters."""
    return MobileNetV2(num_classes, in_chans, **options)
