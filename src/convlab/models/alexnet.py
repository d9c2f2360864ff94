"""AlexNet (Krizhevsky et al. 2012) and its successor ZFNet (Zeiler & Fergus 2014).

Three readings: torchvision's single-tower ``alexnet`` (its weights load unchanged), the notes'
CaffeNet table with local response normalisation (``alexnet_lrn``), and ``zfnet``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers import make_activation
from convlab.models._registry import Option, activation_option, register_model

KRIZHEVSKY = "Krizhevsky et al., ImageNet Classification with Deep Convolutional Neural Networks (NIPS 2012)"
ZEILER = "Zeiler, Fergus, Visualizing and Understanding Convolutional Networks (ECCV 2014)"

# torchvision's single tower follows Krizhevsky's "One weird trick" (2014) widths 64-192-384-256-256.
TORCHVISION_CONVS = [
    # out, kernel, stride, padding, 3x3/2 max-pool after
    (64, 11, 4, 2, True),
    (192, 5, 1, 2, True),
    (384, 3, 1, 1, False),
    (256, 3, 1, 1, False),
    (256, 3, 1, 1, True),
]

# The notes' layer table (Krizhevsky et al. 2012, Fig. 2, both GPUs' maps together; CaffeNet order).
# Sizes at 227x227: 55x55x96, 27x27x96, 27x27x256, 13x13x256, 13x13x384, 13x13x384, 13x13x256, 6x6x256.
ALEXNET_LAYERS = [
    # name, out, kernel, stride, padding
    ("conv1", 96, 11, 4, 0),
    "pool1",
    "norm1",
    ("conv2", 256, 5, 1, 2),
    "pool2",
    "norm2",
    ("conv3", 384, 3, 1, 1),
    ("conv4", 384, 3, 1, 1),
    ("conv5", 256, 3, 1, 1),
    "pool5",
]
# On two GPUs these layers only read the maps on their own GPU (Krizhevsky et al. 2012, Sec. 3.5).
TWO_GPU_GROUPED = {"conv2", "conv4", "conv5"}
# The layers whose biases start at 1 (Krizhevsky et al. 2012, Sec. 5; see _gaussian_init).
ALEXNET_BIAS_ONES = {"conv2", "conv4", "conv5", "fc6", "fc7"}

# Zeiler & Fergus 2014, Fig. 3. Sizes at 224x224: 110x110x96, 55x55x96, 26x26x256, 13x13x256, 13x13x384,
# 13x13x384, 13x13x256, 6x6x256. The figure gives no paddings; conv1 padding 1 and Caffe's ceil-mode
# pooling are what make those sizes come out.
ZFNET_LAYERS = [
    ("conv1", 96, 7, 2, 1),  # 7x7 stride 2 instead of AlexNet's 11x11 stride 4: fewer dead/aliased filters
    "pool1",
    "norm1",
    ("conv2", 256, 5, 2, 0),
    "pool2",
    "norm2",
    ("conv3", 384, 3, 1, 1),
    ("conv4", 384, 3, 1, 1),
    ("conv5", 256, 3, 1, 1),
    "pool5",
]


ALEXNET_OPTIONS = {
    "activation": activation_option("relu"),
    "dropout": Option(0.5, "dropout rate in the classifier (Krizhevsky et al. 2012, Sec. 4.2)"),
}
ALEXNET_LRN_OPTIONS = {
    **ALEXNET_OPTIONS,
    "groups": Option(1, "groups of conv2, conv4 and conv5: 2 splits them as the two-GPU original"),
    "norm_first": Option(False, "LRN before pooling, as Krizhevsky et al.'s paper (CaffeNet pools first)"),
}


def local_response_norm() -> nn.LocalResponseNorm:
    """LRN over 5 adjacent maps with k=2, alpha=1e-4, beta=0.75 (Krizhevsky et al. 2012, Sec. 3.3).

    torch, like Caffe, divides alpha by the window size; the paper's formula does not.
    """
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


class AlexNet(nn.Module):
    """Convolutional features -> adaptive average pool to 6x6 -> fully connected classifier.

    The adaptive pool is the identity at the design input size and lets larger inputs through.
    """

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ConvlabError(f"dropout must be a probability in [0, 1), got {dropout!r}.")


def _named_features(
    table: list, in_chans: int, activation: str, groups: int = 1, norm_first: bool = False
) -> nn.Sequential:
    """conv -> activation, 3x3/2 max pooling and LRN, named as in the paper (conv1, pool1, norm1...)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels = in_chans
    for row in table:
        if isinstance(row, tuple):
            name, out, kernel, stride, padding = row
            conv_groups = groups if name in TWO_GPU_GROUPED else 1
            layers[name] = nn.Conv2d(channels, out, kernel, stride, padding, groups=conv_groups)
            layers[f"act{name[-1]}"] = make_activation(activation)
            channels = out
        elif row.startswith("pool"):
            # Caffe rounds pooled sizes up; that is what gives Zeiler & Fergus's 55 and 13.
            layers[row] = nn.MaxPool2d(3, 2, ceil_mode=True)
        else:
            layers[row] = local_response_norm()
    if norm_first:  # Krizhevsky et al.'s own order: conv -> ReLU -> norm -> pool
        names = list(layers)
        for index, name in enumerate(names):
            if name.startswith("norm"):
                names[index - 1], names[index] = names[index], names[index - 1]
        layers = OrderedDict((name, layers[name]) for name in names)
    return nn.Sequential(layers)


def _named_classifier(num_classes: int, activation: str, dropout: float) -> nn.Sequential:
    """FC6 4096 -> FC7 4096 -> FC8, dropout on FC6's and FC7's outputs (Krizhevsky et al. 2012, Sec. 4.2)."""
    return nn.Sequential(
        OrderedDict(
            [
                ("fc6", nn.Linear(256 * 6 * 6, 4096)),
                ("act6", make_activation(activation)),
                ("drop6", nn.Dropout(dropout)),
                ("fc7", nn.Linear(4096, 4096)),
                ("act7", make_activation(activation)),
                ("drop7", nn.Dropout(dropout)),
                ("fc8", nn.Linear(4096, num_classes)),
            ]
        )
    )


def _gaussian_init(model: nn.Module, ones: set[str]) -> None:
    """Weights N(0, 0.01); biases 1 in the layers named in ``ones`` and 0 elsewhere.

    Krizhevsky et al. 2012, Sec. 5: bias 1 in conv2, conv4, conv5 and the hidden FC layers gives
    the ReLUs positive inputs early on; Zeiler & Fergus 2014 (training details) use zero biases.
    """
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.constant_(module.bias, 1.0 if name.rsplit(".", 1)[-1] in ones else 0.0)


def _named_alexnet(
    table: list,
    bias_ones: set[str],
    num_classes: int,
    in_chans: int,
    *,
    activation: str,
    dropout: float,
    groups: int = 1,
    norm_first: bool = False,
) -> AlexNet:
    """An AlexNet from a named layer table, weights N(0, 0.01) and biases 1 in the layers of ``bias_ones``."""
    _check_dropout(dropout)
    if not isinstance(groups, int) or groups < 1 or 32 % groups:
        raise ConvlabError(
            f"groups must divide the 96, 256 and 384 maps of conv2, conv4 and conv5 (1, 2, 4, 8, 16 or 32; "
            f"2 is the two-GPU original), got {groups!r}."
        )
    features = _named_features(table, in_chans, activation, groups=groups, norm_first=norm_first)
    model = AlexNet(features, _named_classifier(num_classes, activation, dropout))
    _gaussian_init(model, ones=bias_ones)
    return model


@register_model(
    family="alexnet",
    year=2012,
    paper=KRIZHEVSKY,
    input_size=(3, 224, 224),
    torchvision="alexnet",
    options=ALEXNET_OPTIONS,
)
def alexnet(num_classes: int, in_chans: int, *, activation: str, dropout: float) -> AlexNet:
    """AlexNet as a single tower, torchvision's layout (64-192-384-256-256, 61.1M parameters).

    The state_dict keys are torchvision's, so ``torchvision.models.alexnet`` weights load as they are.
    """
    _check_dropout(dropout)
    layers: list[nn.Module] = []
    channels = in_chans
    for out, kernel, stride, padding, pool_after in TORCHVISION_CONVS:
        layers += [nn.Conv2d(channels, out, kernel, stride, padding), make_activation(activation)]
        if pool_after:
            layers.append(nn.MaxPool2d(3, 2))
        channels = out
    classifier = nn.Sequential(  # torchvision applies dropout to the inputs of FC6 and FC7
        nn.Dropout(dropout),
        nn.Linear(256 * 6 * 6, 4096),
        make_activation(activation),
        nn.Dropout(dropout),
        nn.Linear(4096, 4096),
        make_activation(activation),
        nn.Linear(4096, num_classes),
    )
    return AlexNet(nn.Sequential(*layers), classifier)


@register_model(
    family="alexnet", year=2012, paper=KRIZHEVSKY, input_size=(3, 227, 227), options=ALEXNET_LRN_OPTIONS
)
def alexnet_lrn(num_classes: int, in_chans: int, **options) -> AlexNet:
    """AlexNet as in the notes' table: 227x227 input, 96-256-384-384-256 maps with LRN (CaffeNet).

    ``groups=2`` rebuilds the two-GPU original's split convolutions (conv2, conv4, conv5 read only
    their own half of the maps, halving their weights: 60,965,224 parameters instead of 62,378,344).
    Norm layers come after pooling as in CaffeNet and the notes (``norm_first=True``: before, as in
    the paper). Weights start as in the paper: N(0, 0.01), biases 1 in conv2, conv4, conv5, fc6, fc7.
    """
    return _named_alexnet(ALEXNET_LAYERS, ALEXNET_BIAS_ONES, num_classes, in_chans, **options)


@register_model(family="alexnet", year=2013, paper=ZEILER, input_size=(3, 224, 224), options=ALEXNET_OPTIONS)
def zfnet(num_classes: int, in_chans: int, **options) -> AlexNet:
    """ZFNet: AlexNet with a 7x7 stride-2 first layer and stride-2 conv2, as visualisation suggested.

    Single tower with dense connections throughout (Zeiler & Fergus 2014, Fig. 3); weights start
    N(0, 0.01) with zero biases as in the paper.
    """
    return _named_alexnet(ZFNET_LAYERS, set(), num_classes, in_chans, **options)
