"""VGG (Simonyan & Zisserman 2014): all six columns of Table 1, plus batch-norm variants.

Layouts and state_dict keys are torchvision's, so its vgg11/13/16/19(_bn) weights load unchanged.
``vgg_mini`` is VGG's recipe (stacks of 3x3 convolutions between max pools) shrunk for 28x28 and
32x32 images, with batch norm and NiN's global-average-pooling head: the zoo's fast small-image net.
"""

from __future__ import annotations

import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers import make_activation
from convlab.models._registry import Option, activation_option, register_model

PAPER = "Simonyan, Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition (ICLR 2015)"

# Simonyan & Zisserman 2014, Table 1, one column per configuration, one line per stage.
# "convK-N" is a KxK convolution with N maps (stride 1, size-preserving padding) followed by ReLU.
# fmt: off
VGG_CONFIGS: dict[str, list[str]] = {
    "A": [
        "conv3-64", "maxpool",
        "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
    ],
    "A-LRN": [
        "conv3-64", "LRN", "maxpool",
        "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
    ],
    "B": [
        "conv3-64", "conv3-64", "maxpool",
        "conv3-128", "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
    ],
    "C": [
        "conv3-64", "conv3-64", "maxpool",
        "conv3-128", "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "conv1-256", "maxpool",
        "conv3-512", "conv3-512", "conv1-512", "maxpool",
        "conv3-512", "conv3-512", "conv1-512", "maxpool",
    ],
    "D": [
        "conv3-64", "conv3-64", "maxpool",
        "conv3-128", "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "conv3-512", "maxpool",
    ],
    "E": [
        "conv3-64", "conv3-64", "maxpool",
        "conv3-128", "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "conv3-512", "conv3-512", "maxpool",
    ],
}

# Not a column of the paper: four 2x-halved stages of 16-128 maps for 28x28/32x32 inputs, 6.2M
# multiply-adds at 28x28 (VGG-11 at 32x32: 276M). The widths are the ones that paid on Fashion-MNIST
# on 2 CPU cores; the variants tried are in docs/performance.md#smaller-measured-choices.
MINI_CONFIG: list[str] = [
    "conv3-16", "maxpool",
    "conv3-32", "conv3-32", "maxpool",
    "conv3-64", "conv3-64", "maxpool",
    "conv3-128",
]
# fmt: on

VGG_OPTIONS = {
    "activation": activation_option("relu"),
    "dropout": Option(0.5, "dropout after FC6 and FC7 (Simonyan & Zisserman 2014, Sec. 3.1)"),
}
VGG_MINI_OPTIONS = {
    "width": Option(1, "multiplies every stage's maps (2: 32-256 maps, 4x the multiply-adds)"),
    "activation": activation_option("relu"),
    "dropout": Option(0.0, "dropout before the classifier"),
    "ceil_pool": Option(
        False,
        "pooling rounds odd sizes up: the 7x7 maps of 28x28 inputs pool to 4x4, keeping their last row and "
        "column, where False (VGG's floor) pools them to 3x3 and drops them",
    ),
    "batch_norm": Option(
        True,
        "batch normalisation after every convolution; False gives the same stack without it, to see "
        "what it buys (docs/experiments.md)",
    ),
}


def make_features(
    config: list[str], in_chans: int, activation: str, batch_norm: bool, ceil_pool: bool = False
) -> nn.Sequential:
    """The convolutional stack of one column, as a flat Sequential (torchvision's key numbering).

    ``ceil_pool`` makes each 2x2 pooling of an odd-sized map keep its last row and column (ceil mode).
    """
    layers: list[nn.Module] = []
    channels = in_chans
    for entry in config:
        if entry == "maxpool":
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=ceil_pool))
        elif entry == "LRN":
            # "the parameters for the LRN layer are those of (Krizhevsky et al., 2012)" (Sec. 2.3)
            layers.append(nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0))
        else:
            kernel, width = (int(n) for n in entry.removeprefix("conv").split("-"))
            layers.append(nn.Conv2d(channels, width, kernel, padding=kernel // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(make_activation(activation))
            channels = width
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """Stacked 3x3 convolutions in five max-pooled stages -> FC 4096 -> FC 4096 -> classes."""

    def __init__(
        self, features: nn.Sequential, num_classes: int, activation: str = "relu", dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.features = features
        # 7x7 at 224 after five halvings; adaptive, so 32x32 inputs (1x1 maps) still reach the classifier.
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's choice (He et al. 2015 for the convolutions); the paper pre-trained the deeper
        # columns from A's weights, which an init scheme cannot reproduce.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _vgg(
    config: str, batch_norm: bool, num_classes: int, in_chans: int, *, activation: str, dropout: float
) -> VGG:
    if not 0.0 <= dropout < 1.0:
        raise ConvlabError(f"dropout must be a probability in [0, 1), got {dropout!r}.")
    features = make_features(VGG_CONFIGS[config], in_chans, activation, batch_norm)
    return VGG(features, num_classes, activation=activation, dropout=dropout)


def _register(torchvision: str | None = None):
    return register_model(
        family="vgg",
        year=2014,
        paper=PAPER,
        input_size=(3, 224, 224),
        num_classes=1000,
        torchvision=torchvision,
        options=VGG_OPTIONS,
    )


@_register(torchvision="vgg11")
def vgg11(num_classes: int, in_chans: int, **options) -> VGG:
    """VGG-11, configuration A: 8 convolutions + 3 FC layers, 133M parameters."""
    return _vgg("A", False, num_classes, in_chans, **options)


@_register()
def vgg11_lrn(num_classes: int, in_chans: int, **options) -> VGG:
    """VGG-11 with LRN after the first convolution, configuration A-LRN (it did not help, Table 3)."""
    return _vgg("A-LRN", False, num_classes, in_chans, **options)


@_register(torchvision="vgg13")
def vgg13(num_classes: int, in_chans: int, **options) -> VGG:
    """VGG-13, configuration B: two 3x3 convolutions in every stage, 133M parameters."""
    return _vgg("B", False, num_classes, in_chans, **options)


@_register()
def vgg16_c(num_classes: int, in_chans: int, **options) -> VGG:
    """VGG-16, configuration C: the last convolution of stages 3-5 is 1x1, 134M parameters."""
    return _vgg("C", False, num_classes, in_chans, **options)


@_register(torchvision="vgg16")
def vgg16(num_classes: int, in_chans: int, **options) -> VGG:
    """VGG-16, configuration D: 13 3x3 convolutions + 3 FC layers, 138M parameters."""
    return _vgg("D", False, num_classes, in_chans, **options)


@_register(torchvision="vgg19")
def vgg19(num_classes: int, in_chans: int, **options) -> VGG:
    """VGG-19, configuration E: four 3x3 convolutions in stages 3-5, 144M parameters."""
    return _vgg("E", False, num_classes, in_chans, **options)


# Batch normalisation (Ioffe & Szegedy 2015) after every convolution: not in the paper, but
# torchvision's variants, which train from scratch without the paper's staged initialisation.


@_register(torchvision="vgg11_bn")
def vgg11_bn(num_classes: int, in_chans: int, **options) -> VGG:
    """VGG-11 (configuration A) with batch normalisation after every convolution."""
    return _vgg("A", True, num_classes, in_chans, **options)


@_register(torchvision="vgg13_bn")
def vgg13_bn(num_classes: int, in_chans: int, **options) -> VGG:
    """VGG-13 (configuration B) with batch normalisation after every convolution."""
    return _vgg("B", True, num_classes, in_chans, **options)


@_register()
def vgg16_c_bn(num_classes: int, in_chans: int, **options) -> VGG:
    """VGG-16 (configuration C, 1x1 convolutions) with batch normalisation after every convolution."""
    return _vgg("C", True, num_classes, in_chans, **options)


@_register(torchvision="vgg16_bn")
def vgg16_bn(num_classes: int, in_chans: int, **options) -> VGG:
    """VGG-16 (configuration D) with batch normalisation after every convolution."""
    return _vgg("D", True, num_classes, in_chans, **options)


@_register(torchvision="vgg19_bn")
def vgg19_bn(num_classes: int, in_chans: int, **options) -> VGG:
    """VGG-19 (configuration E) with batch normalisation after every convolution."""
    return _vgg("E", True, num_classes, in_chans, **options)


class MiniVGG(nn.Module):
    """VGG-style convolution stages -> global average pooling -> dropout -> one linear layer.

    The pooled head (Lin et al. 2014, NiN) replaces VGG's two FC-4096 layers, which would hold 98% of
    the parameters of a network this small; it also takes any input size.
    """

    def __init__(self, features: nn.Sequential, width: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(self.features(x)), 1)))


@register_model(
    family="vgg", year=2014, paper=PAPER, input_size=(1, 28, 28), num_classes=10, options=VGG_MINI_OPTIONS
)
def vgg_mini(
    num_classes: int,
    in_chans: int,
    *,
    width: int,
    activation: str,
    dropout: float,
    ceil_pool: bool,
    batch_norm: bool,
) -> MiniVGG:
    """A VGG for 28x28 images: 3x3 conv-BN-ReLU stages of 16-128 maps, global pooling, 145K parameters."""
    if not isinstance(width, int) or width < 1:
        raise ConvlabError(f"width must be a whole number of at least 1, got {width!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ConvlabError(f"dropout must be a probability in [0, 1), got {dropout!r}.")
    config = [
        entry if entry == "maxpool" else f"{entry.rsplit('-', 1)[0]}-{int(entry.rsplit('-', 1)[1]) * width}"
        for entry in MINI_CONFIG
    ]
    if not isinstance(batch_norm, bool):
        raise ConvlabError(f"batch_norm must be true or false, got {batch_norm!r}.")
    if not isinstance(ceil_pool, bool):
        raise ConvlabError(f"ceil_pool must be true or false, got {ceil_pool!r}.")
    features = make_features(config, in_chans, activation, batch_norm=batch_norm, ceil_pool=ceil_pool)
    return MiniVGG(features, 128 * width, num_classes, dropout)
