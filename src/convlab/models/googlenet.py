"""GoogLeNet (Inception v1, Szegedy et al. 2014): nine inception modules, two auxiliary heads, global pooling.

State-dict compatible with torchvision's ``googlenet`` (BasicConv2d units with batch norm instead of the paper's LRN).
"""

from __future__ import annotations

import torch
from torch import nn

from convlab.layers.inception import (
    InceptionAux,
    InceptionModule,
    basic_conv,
    check_inception_options,
    imagenet_to_inception_input,
)
from convlab.models._registry import Option, activation_option, register_model

# Szegedy et al. 2014, Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
INCEPTION_WIDTHS: dict[str, tuple[int, int, int, int, int, int]] = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    """Stem (7x7/2 conv, pool, 1x1 and 3x3 convs, pool) -> 3a, 3b, pool -> 4a..4e, pool -> 5a, 5b -> classifier.

    ``aux1`` reads inception 4a and ``aux2`` inception 4d (Szegedy et al. 2014, Figure 3). In training mode
    with aux heads the forward returns ``(logits, aux1_logits, aux2_logits)``: the main output first, then
    the auxiliary ones from shallow to deep (torchvision returns ``(logits, aux2, aux1)``). In eval mode it
    returns the logits alone and does not run the heads.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        activation: str = "relu",
        aux_logits: bool = True,
        transform_input: bool = False,
        branch3_kernel: int = 3,
        dropout: float = 0.4,
    ) -> None:
        super().__init__()
        check_inception_options(in_chans, transform_input, dropout)
        self.transform_input = transform_input

        def inception(in_channels: int, name: str) -> InceptionModule:
            return InceptionModule(
                in_channels, *INCEPTION_WIDTHS[name], branch3_kernel=branch3_kernel, activation=activation
            )

        self.conv1 = basic_conv(in_chans, 64, 7, stride=2, activation=activation)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = basic_conv(64, 64, 1, activation=activation)
        self.conv3 = basic_conv(64, 192, 3, activation=activation)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception3a = inception(192, "inception3a")
        self.inception3b = inception(self.inception3a.out_channels, "inception3b")
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception4a = inception(self.inception3b.out_channels, "inception4a")
        self.inception4b = inception(self.inception4a.out_channels, "inception4b")
        self.inception4c = inception(self.inception4b.out_channels, "inception4c")
        self.inception4d = inception(self.inception4c.out_channels, "inception4d")
        self.inception4e = inception(self.inception4d.out_channels, "inception4e")
        # Table 1 has a 3x3/2 max pool here; torchvision's 2x2/2 gives the same 7x7 grid and is kept
        # because its weights were trained with it.
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)

        self.inception5a = inception(self.inception4e.out_channels, "inception5a")
        self.inception5b = inception(self.inception5a.out_channels, "inception5b")

        if aux_logits:
            self.aux1 = InceptionAux(self.inception4a.out_channels, num_classes, activation)
            self.aux2 = InceptionAux(self.inception4d.out_channels, num_classes, activation)
        else:
            self.aux1 = self.aux2 = None

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)  # 40% (section 5)
        self.fc = nn.Linear(self.inception5b.out_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's default for this model: N(0, 0.01) weights (truncated at +-2, i.e. 200 std, in effect
        # untruncated); biases keep PyTorch's default.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, mean=0.0, std=0.01, a=-2, b=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.transform_input:
            x = imagenet_to_inception_input(x)
        run_aux = self.training and self.aux1 is not None
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if run_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if run_aux else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        return (logits, aux1, aux2) if run_aux else logits


GOOGLENET_OPTIONS = {
    "activation": activation_option("relu"),
    "aux_logits": Option(True, "keep the two auxiliary classifiers (training returns (logits, aux1, aux2))"),
    "transform_input": Option(
        False, "re-normalise ImageNet-normalised input to torchvision's ported weights' [-1, 1] (RGB only)"
    ),
    "branch3_kernel": Option(
        3, "the third branch's kernel: 3 as torchvision (its weights load), 5 as the paper"
    ),
    "dropout": Option(0.4, "dropout before the classifier: 0.4 as the paper (section 5; torchvision 0.2)"),
}


@register_model(
    family="googlenet",
    year=2014,
    paper="Szegedy et al., Going Deeper with Convolutions (CVPR 2015)",
    input_size=(3, 224, 224),
    num_classes=1000,
    torchvision="googlenet",
    options=GOOGLENET_OPTIONS,
)
def googlenet(num_classes: int, in_chans: int, **options) -> GoogLeNet:
    """GoogLeNet / Inception v1: 22 layers, 9 inception modules, 2 training-only auxiliary classifiers.

    Training adds 0.3 x each auxiliary loss; the auxiliary heads drop 70%. The paper's 5x5 third branch
    (``branch3_kernel=5``) holds 381K more weights than torchvision's 3x3. 6,624,904 parameters without
    the auxiliary heads, 13,004,888 with them (1000 classes). Runs from 15x15 inputs up (torchvision's
    minimum), so 28x28 and 32x32 work.
    """
    return GoogLeNet(num_classes, in_chans, **options)
