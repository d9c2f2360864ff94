"""DenseNet-BC (Huang et al. 2017): dense blocks where every layer sees all earlier feature maps, joined by transitions.

State-dict compatible with torchvision's ``densenet121``, ``densenet169`` and ``densenet201``.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers.activations import make_activation
from convlab.layers.dense import DenseBlock, Transition
from convlab.models._registry import Option, activation_option, register_model

# Huang et al. 2017, Table 1 (ImageNet, growth rate k = 32): dense layers in each of the four blocks.
DENSENET_BLOCKS: dict[str, tuple[int, int, int, int]] = {
    "densenet121": (6, 12, 24, 16),
    "densenet169": (6, 12, 32, 32),
    "densenet201": (6, 12, 48, 32),
}
GROWTH_RATE = 32  # k, Table 1
BN_SIZE = 4  # bottleneck width 4k (section 3, "Bottleneck layers")
COMPRESSION = 0.5  # theta of DenseNet-C (section 3, "Compression")

DENSENET_OPTIONS = {
    "activation": activation_option("relu"),
    "growth_rate": Option(GROWTH_RATE, "k, the new feature maps each dense layer adds"),
    "compression": Option(COMPRESSION, "theta, the transitions' channel factor, in (0, 1]"),
    # Huang et al. 2017, section 4.2: dropout 0.2 only for the data sets without augmentation
    "dropout": Option(0.0, "dropout rate after each dense layer's convolutions"),
}


class DenseNet(nn.Module):
    """7x7/2 conv, 3x3/2 max pool, then dense blocks joined by compressing transitions, BN-ReLU, pool, classifier.

    Every convolution and norm sits under ``features`` with torchvision's names (``conv0``, ``norm0``,
    ``denseblock1.denselayer1.conv1``, ``transition1.conv``, ``norm5``).
    """

    def __init__(
        self,
        block_config: tuple[int, ...],
        num_classes: int = 1000,
        in_chans: int = 3,
        activation: str = "relu",
        growth_rate: int = GROWTH_RATE,
        bn_size: int = BN_SIZE,
        compression: float = COMPRESSION,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        stem_channels = (
            2 * growth_rate
        )  # "the initial convolution layer comprises 2k convolutions" (section 3)
        self.features = nn.Sequential(
            OrderedDict(
                [
                    (
                        "conv0",
                        nn.Conv2d(in_chans, stem_channels, kernel_size=7, stride=2, padding=3, bias=False),
                    ),
                    ("norm0", nn.BatchNorm2d(stem_channels)),
                    ("relu0", make_activation(activation)),
                    ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
                ]
            )
        )
        channels = stem_channels
        for i, num_layers in enumerate(block_config, start=1):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size, dropout, activation)
            self.features.add_module(f"denseblock{i}", block)
            channels = block.out_channels
            if i < len(block_config):
                transition = Transition(channels, math.floor(compression * channels), activation)
                self.features.add_module(f"transition{i}", transition)
                channels = transition.out_channels
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.final_activation = make_activation(activation)  # norm5 is followed by a ReLU before pooling
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's (and the authors' Torch code's) init: He-normal convolutions, zero classifier bias.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_activation(self.features(x))
        return self.classifier(torch.flatten(self.avgpool(x), 1))


def _densenet(
    name: str,
    num_classes: int,
    in_chans: int,
    *,
    activation: str,
    growth_rate: int,
    compression: float,
    dropout: float,
) -> DenseNet:
    if growth_rate < 1:
        raise ConvlabError(f"growth_rate must be a positive number of channels, got {growth_rate!r}.")
    if not 0.0 < compression <= 1.0:
        raise ConvlabError(f"compression must be in (0, 1], got {compression!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ConvlabError(f"dropout must be in [0, 1), got {dropout!r}.")
    make_activation(activation)  # fail on an unknown name before building anything
    return DenseNet(
        DENSENET_BLOCKS[name], num_classes, in_chans, activation, growth_rate, BN_SIZE, compression, dropout
    )


_PAPER = "Huang et al., Densely Connected Convolutional Networks (CVPR 2017)"


@register_model(
    family="densenet", year=2017, paper=_PAPER, torchvision="densenet121", options=DENSENET_OPTIONS
)
def densenet121(num_classes: int, in_chans: int, **options) -> DenseNet:
    """DenseNet-121: dense blocks of 6, 12, 24, 16 bottleneck layers, growth rate 32 (8.0M params).

    7,978,856 parameters (1000 classes). Runs from 29x29 inputs up: 32x32 works, 28x28 pools to
    nothing at the third transition.
    """
    return _densenet("densenet121", num_classes, in_chans, **options)


@register_model(
    family="densenet", year=2017, paper=_PAPER, torchvision="densenet169", options=DENSENET_OPTIONS
)
def densenet169(num_classes: int, in_chans: int, **options) -> DenseNet:
    """DenseNet-169: dense blocks of 6, 12, 32, 32 bottleneck layers, growth rate 32 (14.1M params).

    14,149,480 parameters (1000 classes).
    """
    return _densenet("densenet169", num_classes, in_chans, **options)


@register_model(
    family="densenet", year=2017, paper=_PAPER, torchvision="densenet201", options=DENSENET_OPTIONS
)
def densenet201(num_classes: int, in_chans: int, **options) -> DenseNet:
    """DenseNet-201: dense blocks of 6, 12, 48, 32 bottleneck layers, growth rate 32 (20.0M params).

    20,013,928 parameters (1000 classes).
    """
    return _densenet("densenet201", num_classes, in_chans, **options)
