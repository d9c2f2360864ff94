"""Inception v3 (Szegedy et al. 2015): factorised convolutions, efficient grid reduction, one auxiliary head.

State-dict compatible with torchvision's ``inception_v3`` (the layout of Google's released model).
"""

from __future__ import annotations

import torch
from torch import nn

from convlab.layers.inception import (
    InceptionA,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
    InceptionV3Aux,
    basic_conv,
    check_inception_options,
    imagenet_to_inception_input,
)
from convlab.models._registry import Option, activation_option, register_model

# Szegedy et al. 2015, Table 1, as released (and in torchvision): 3 x Figure 5 at 35x35, a grid reduction,
# 4 x Figure 6 at 17x17 (the table says 5), a grid reduction, 2 x Figure 7 at 8x8.
# (name, block, options); each block's input width is the previous block's output width.
INCEPTION_V3_BLOCKS: list[tuple[str, type[nn.Module], dict[str, int]]] = [
    ("Mixed_5b", InceptionA, {"pool_features": 32}),
    ("Mixed_5c", InceptionA, {"pool_features": 64}),
    ("Mixed_5d", InceptionA, {"pool_features": 64}),
    ("Mixed_6a", InceptionB, {}),
    ("Mixed_6b", InceptionC, {"channels_7x7": 128}),
    ("Mixed_6c", InceptionC, {"channels_7x7": 160}),
    ("Mixed_6d", InceptionC, {"channels_7x7": 160}),
    ("Mixed_6e", InceptionC, {"channels_7x7": 192}),
    ("Mixed_7a", InceptionD, {}),
    ("Mixed_7b", InceptionE, {}),
    ("Mixed_7c", InceptionE, {}),
]
AUX_AFTER = "Mixed_6e"  # the auxiliary head reads the last 17x17 grid (section 4)


class InceptionV3(nn.Module):
    """Stem of plain convolutions (299 -> 35x35x192), then the Mixed blocks of ``INCEPTION_V3_BLOCKS``.

    The stem follows the released model: 3x3/2, 3x3, 3x3 padded, pool, 1x1 to 80, 3x3 to 192, pool
    (Table 1 lists 3x3 convs to 80 and 192 and a 3x3 to 288). In training mode with the auxiliary head the
    forward returns ``(logits, aux_logits)``; in eval mode the logits alone, without running the head.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        activation: str = "relu",
        aux_logits: bool = True,
        transform_input: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        check_inception_options(in_chans, transform_input, dropout)
        self.transform_input = transform_input
        self.Conv2d_1a_3x3 = basic_conv(in_chans, 32, 3, stride=2, padding=0, activation=activation)
        self.Conv2d_2a_3x3 = basic_conv(32, 32, 3, padding=0, activation=activation)
        self.Conv2d_2b_3x3 = basic_conv(32, 64, 3, padding=1, activation=activation)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = basic_conv(64, 80, 1, activation=activation)
        self.Conv2d_4a_3x3 = basic_conv(80, 192, 3, padding=0, activation=activation)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)

        channels = 192
        self.AuxLogits = None
        for name, block, options in INCEPTION_V3_BLOCKS:
            module = block(channels, **options, activation=activation)
            self.add_module(name, module)
            channels = module.out_channels
            if name == AUX_AFTER and aux_logits:
                self.AuxLogits = InceptionV3Aux(channels, num_classes, activation)

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's default for this model: truncated normal weights, std 0.1, but 0.01 for the aux
        # head's 5x5 conv and 0.001 for its classifier; biases keep PyTorch's default.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, mean=0.0, std=0.1, a=-2, b=2)
        if self.AuxLogits is not None:
            nn.init.trunc_normal_(self.AuxLogits.conv1.conv.weight, mean=0.0, std=0.01, a=-2, b=2)
            nn.init.trunc_normal_(self.AuxLogits.fc.weight, mean=0.0, std=0.001, a=-2, b=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.transform_input:
            x = imagenet_to_inception_input(x)
        run_aux = self.training and self.AuxLogits is not None
        x = self.maxpool1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        aux = None
        for name, _, _ in INCEPTION_V3_BLOCKS:
            x = self.get_submodule(name)(x)
            if name == AUX_AFTER and run_aux:
                aux = self.AuxLogits(x)
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        return (logits, aux) if run_aux else logits


INCEPTION_V3_OPTIONS = {
    "activation": activation_option("relu"),
    "aux_logits": Option(True, "keep the auxiliary classifier on the 17x17 grid (training: (logits, aux))"),
    "transform_input": Option(
        False, "re-normalise ImageNet-normalised input to torchvision's ported weights' [-1, 1] (RGB only)"
    ),
    "dropout": Option(0.5, "dropout before the classifier, 0.5 as torchvision"),
}


@register_model(
    family="inception_v3",
    year=2015,
    paper="Szegedy et al., Rethinking the Inception Architecture for Computer Vision (CVPR 2016)",
    input_size=(3, 299, 299),
    num_classes=1000,
    torchvision="inception_v3",
    options=INCEPTION_V3_OPTIONS,
)
def inception_v3(num_classes: int, in_chans: int, **options) -> InceptionV3:
    """Inception v3: factorised 7x7 and 3x3 convolutions, efficient grid reduction, 299x299 input.

    Training adds 0.3 x the auxiliary loss. 27,161,264 parameters with the auxiliary head, 23,834,568
    without (1000 classes). The smallest input is 75x75 (torchvision's minimum): below it Mixed_7a's
    valid stride-2 3x3 convolutions find a grid under 3x3.
    """
    return InceptionV3(num_classes, in_chans, **options)
