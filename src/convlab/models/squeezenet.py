"""SqueezeNet (Iandola et al. 2016): AlexNet-level accuracy from fire modules and a convolutional classifier.

State-dict compatible with torchvision's ``squeezenet1_0`` and ``squeezenet1_1``.
"""

from __future__ import annotations

import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers.activations import make_activation
from convlab.layers.fire import Fire
from convlab.models._registry import Option, activation_option, register_model

# "M" is a 3x3/2 max pool; (squeeze, expand1x1, expand3x3) a fire module's widths.
SQUEEZENET_CONFIGS: dict[str, dict] = {
    # Iandola et al. 2016, Table 1: conv1 96 x 7x7/2, fire2..fire9, pools after conv1, fire4 and fire8.
    "squeezenet1_0": {
        "stem": (96, 7),
        "layers": [
            "M",
            (16, 64, 64),
            (16, 64, 64),
            (32, 128, 128),
            "M",
            (32, 128, 128),
            (48, 192, 192),
            (48, 192, 192),
            (64, 256, 256),
            "M",
            (64, 256, 256),
        ],
    },
    # SqueezeNet v1.1 (the authors' repository): 64 x 3x3/2 stem and earlier pools, 2.4x less computation
    # than v1.0 at the same accuracy.
    "squeezenet1_1": {
        "stem": (64, 3),
        "layers": [
            "M",
            (16, 64, 64),
            (16, 64, 64),
            "M",
            (32, 128, 128),
            (32, 128, 128),
            "M",
            (48, 192, 192),
            (48, 192, 192),
            (64, 256, 256),
            (64, 256, 256),
        ],
    },
}

SQUEEZENET_OPTIONS = {
    "activation": activation_option("relu"),
    "dropout": Option(0.5, "dropout after fire9 (section 3.3)"),
}


class SqueezeNet(nn.Module):
    """Stem conv, fire modules and max pools (``features``), then dropout, a 1x1 conv to the classes,
    the activation and global average pooling (``classifier``): no fully connected layer at all.
    """

    def __init__(
        self,
        config: dict,
        num_classes: int = 1000,
        in_chans: int = 3,
        activation: str = "relu",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        stem_channels, stem_kernel = config["stem"]
        layers: list[nn.Module] = [
            nn.Conv2d(in_chans, stem_channels, kernel_size=stem_kernel, stride=2),
            make_activation(activation),
        ]
        channels = stem_channels
        for spec in config["layers"]:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
            else:
                layers.append(Fire(channels, *spec, activation=activation))
                channels = layers[-1].out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),  # 50% after fire9 (section 3.3)
            nn.Conv2d(channels, num_classes, kernel_size=1),
            make_activation(activation),
            nn.AdaptiveAvgPool2d((1, 1)),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's init: He-uniform convolutions, but N(0, 0.01) for the class conv; zero biases.
        final_conv = self.classifier[1]
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                if module is final_conv:
                    nn.init.normal_(module.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def _squeezenet(name: str, num_classes: int, in_chans: int, *, activation: str, dropout: float) -> SqueezeNet:
    if not 0.0 <= dropout < 1.0:
        raise ConvlabError(f"dropout must be in [0, 1), got {dropout!r}.")
    make_activation(activation)  # fail on an unknown name before building anything
    return SqueezeNet(SQUEEZENET_CONFIGS[name], num_classes, in_chans, activation, dropout)


_PAPER = "Iandola et al., SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size (2016)"


@register_model(
    family="squeezenet", year=2016, paper=_PAPER, torchvision="squeezenet1_0", options=SQUEEZENET_OPTIONS
)
def squeezenet1_0(num_classes: int, in_chans: int, **options) -> SqueezeNet:
    """SqueezeNet 1.0: 8 fire modules and a 1x1-conv classifier, AlexNet accuracy with 1.2M params.

    1,248,424 parameters (1000 classes). Runs from 21x21 inputs up (the third pool needs a 2x2 grid), so
    28x28 and 32x32 work.
    """
    return _squeezenet("squeezenet1_0", num_classes, in_chans, **options)


@register_model(
    family="squeezenet", year=2016, paper=_PAPER, torchvision="squeezenet1_1", options=SQUEEZENET_OPTIONS
)
def squeezenet1_1(num_classes: int, in_chans: int, **options) -> SqueezeNet:
    """SqueezeNet 1.1: 3x3 stem and earlier pooling, 2.4x less computation than 1.0 at the same accuracy.

    1,235,496 parameters (1000 classes). Runs from 17x17 inputs up, so 28x28 and 32x32 work.
    """
    return _squeezenet("squeezenet1_1", num_classes, in_chans, **options)
