"""All-CNN (Springenberg et al. 2014): models A, B, C with each max pooling replaced by a strided convolution.

``pool="max"`` gives the base models of the paper's Table 1 instead, for the comparison it makes.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers import make_activation
from convlab.models._registry import Option, activation_option, register_model

PAPER = "Springenberg et al., Striving for Simplicity: The All Convolutional Net (ICLR 2015 workshop)"

# Springenberg et al. 2014, Table 1 (the notes' table, seed 001), one column per model, for 32x32 RGB input.
# "convK-N": KxK convolution with N maps and ReLU, size-preserving; "valid": without padding (8x8 -> 6x6).
# "pool": 3x3 max pooling stride 2 in the base models; in All-CNN a 3x3 stride-2 convolution with as
# many maps as its input (Table 2), so the network learns its own downsampling.
# fmt: off
ALL_CNN_CONFIGS: dict[str, list[str]] = {
    "A": [
        "conv5-96",
        "pool",
        "conv5-192",
        "pool",
        "conv3-192 valid", "conv1-192", "conv1-classes",
    ],
    "B": [
        "conv5-96", "conv1-96",
        "pool",
        "conv5-192", "conv1-192",
        "pool",
        "conv3-192 valid", "conv1-192", "conv1-classes",
    ],
    "C": [
        "conv3-96", "conv3-96",
        "pool",
        "conv3-192", "conv3-192",
        "pool",
        "conv3-192 valid", "conv1-192", "conv1-classes",
    ],
}
# fmt: on

ALL_CNN_OPTIONS = {
    "activation": activation_option("relu"),
    "pool": Option(
        "conv", '"conv" (All-CNN\'s strided 3x3 convolutions) or "max" (the base model\'s max pooling)'
    ),
    "dropout": Option(
        True, "20% dropout on the input and 50% after each (replaced) pooling, as the paper trains"
    ),
}


class AllCNN(nn.Module):
    """Convolutions only; the last one gives one map per class, averaged over the 6x6 positions."""

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.global_pool(self.features(x)))


def make_all_cnn(
    config: list[str], num_classes: int, in_chans: int, activation: str, pool: str, dropout: bool
) -> AllCNN:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if dropout:
        layers["drop_input"] = nn.Dropout(0.2)  # "20% for dropping out inputs" (Sec. 3.2.1)
    channels, convs, pools = in_chans, 0, 0
    for entry in config:
        if entry == "pool":
            pools += 1
            if pool == "conv":
                convs += 1
                layers[f"conv{convs}"] = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
                layers[f"act{convs}"] = make_activation(activation)
            else:  # padding 1 gives the same sizes as the strided convolution: 32 -> 16 -> 8
                layers[f"pool{pools}"] = nn.MaxPool2d(3, 2, padding=1)
            if dropout:
                layers[f"drop{pools}"] = nn.Dropout(0.5)  # "and 50% otherwise", after each (replaced) pooling
            continue
        spec, _, padding = entry.partition(" ")
        kernel, width = spec.removeprefix("conv").split("-")
        kernel = int(kernel)
        width = num_classes if width == "classes" else int(width)
        convs += 1
        layers[f"conv{convs}"] = nn.Conv2d(channels, width, kernel, padding=0 if padding else kernel // 2)
        # Table 1 puts a ReLU after every convolution, the class layer included.
        layers[f"act{convs}"] = make_activation(activation)
        channels = width
    model = AllCNN(nn.Sequential(layers))
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            # No init is given in the paper; He et al.'s rule suits a deep ReLU stack without normalisation.
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return model


def _all_cnn(
    config: str, num_classes: int, in_chans: int, *, activation: str, pool: str, dropout: bool
) -> AllCNN:
    if pool not in ("conv", "max"):
        raise ConvlabError(
            f"pool must be 'conv' (All-CNN's 3x3 stride-2 convolutions) or 'max' (the base model's "
            f"3x3 stride-2 max pooling), got {pool!r}."
        )
    return make_all_cnn(ALL_CNN_CONFIGS[config], num_classes, in_chans, activation, pool, bool(dropout))


def _register():
    return register_model(
        family="allcnn",
        year=2014,
        paper=PAPER,
        input_size=(3, 32, 32),
        num_classes=10,
        options=ALL_CNN_OPTIONS,
    )


@_register()
def allcnn_a(num_classes: int, in_chans: int, **options) -> AllCNN:
    """All-CNN-A: 5x5 convolutions, strided 3x3 convolutions for pooling, global average over 6x6."""
    return _all_cnn("A", num_classes, in_chans, **options)


@_register()
def allcnn_b(num_classes: int, in_chans: int, **options) -> AllCNN:
    """All-CNN-B: model A with a 1x1 convolution after each 5x5 one, pooling as strided convolution."""
    return _all_cnn("B", num_classes, in_chans, **options)


@_register()
def allcnn_c(num_classes: int, in_chans: int, **options) -> AllCNN:
    """All-CNN-C: pairs of 3x3 convolutions and strided 3x3 convolutions, 1.37M parameters.

    The paper's best model on CIFAR-10.
    """
    return _all_cnn("C", num_classes, in_chans, **options)
