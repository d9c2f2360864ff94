"""Inception modules: GoogLeNet's four-branch module and auxiliary head, Inception v3's blocks A-E and its head.

Every block concatenates its branches along channels and exposes ``out_channels`` (the sum of the branch widths).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers.activations import make_activation
from convlab.layers.conv import ConvNormAct

__all__ = [
    "InceptionA",
    "InceptionAux",
    "InceptionB",
    "InceptionC",
    "InceptionD",
    "InceptionE",
    "InceptionModule",
    "InceptionV3Aux",
    "basic_conv",
    "check_inception_options",
    "imagenet_to_inception_input",
]


def basic_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    stride: int = 1,
    padding: int | tuple[int, int] | None = None,
    activation: str = "relu",
) -> ConvNormAct:
    """GoogLeNet/Inception's ``BasicConv2d``: bias-free conv -> batch norm (eps 0.001) -> activation.

    Children are named ``conv``/``bn``/``relu`` so the keys match torchvision's. ``padding=None`` keeps the
    size ("same"); Inception v3's valid convolutions pass ``padding=0``.
    """
    return ConvNormAct(
        in_channels,
        out_channels,
        kernel_size,
        stride,
        padding,
        activation=activation,
        bn_eps=0.001,
        names=("conv", "bn", "relu"),
    )


class InceptionModule(nn.Module):
    """GoogLeNet's inception module with dimension reductions (Szegedy et al. 2014, Figure 2b).

    Four parallel branches on the same input: 1x1; 1x1 reduce -> 3x3; 1x1 reduce -> "5x5"; 3x3 max pool ->
    1x1 projection. torchvision's third branch uses a 3x3 convolution where the paper has 5x5;
    ``branch3_kernel=5`` gives the paper's module (different weight shapes, so torchvision weights no longer fit).
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3_reduce: int,
        ch3x3: int,
        ch5x5_reduce: int,
        ch5x5: int,
        pool_proj: int,
        branch3_kernel: int = 3,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if branch3_kernel not in (3, 5):
            raise ConvlabError(
                f"branch3_kernel must be 3 (torchvision's layout) or 5 (the paper's), got {branch3_kernel!r}."
            )
        self.branch1 = basic_conv(in_channels, ch1x1, 1, activation=activation)
        self.branch2 = nn.Sequential(
            basic_conv(in_channels, ch3x3_reduce, 1, activation=activation),
            basic_conv(ch3x3_reduce, ch3x3, 3, activation=activation),
        )
        self.branch3 = nn.Sequential(
            basic_conv(in_channels, ch5x5_reduce, 1, activation=activation),
            basic_conv(ch5x5_reduce, ch5x5, branch3_kernel, activation=activation),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            basic_conv(in_channels, pool_proj, 1, activation=activation),
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


class InceptionAux(nn.Module):
    """GoogLeNet's auxiliary classifier (Szegedy et al. 2014, section 5), used in training only.

    The paper average-pools 5x5/3 (14x14 -> 4x4); like torchvision this pools adaptively to 4x4, which is
    the same grid at 224 input and also works on small images. Then a 1x1 conv to 128, a 1024-unit fully
    connected layer, 70% dropout and the classifier.
    """

    def __init__(
        self, in_channels: int, num_classes: int, activation: str = "relu", dropout: float = 0.7
    ) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((4, 4))
        self.conv = basic_conv(in_channels, 128, 1, activation=activation)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.act = make_activation(activation)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc2(self.dropout(self.act(self.fc1(x))))


def _avg_pool_3x3_same(x: torch.Tensor) -> torch.Tensor:
    # The pooling branch of blocks A, C and E (stride 1, zero padding counted in the average, as torchvision).
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


class InceptionA(nn.Module):
    """Inception v3's 35x35 block (Szegedy et al. 2015, Figure 5): the 5x5 branch of v1 and a 3x3-3x3 stack.

    Output: 64 + 64 + 96 + ``pool_features`` channels.
    """

    def __init__(self, in_channels: int, pool_features: int, activation: str = "relu") -> None:
        super().__init__()
        self.branch1x1 = basic_conv(in_channels, 64, 1, activation=activation)
        self.branch5x5_1 = basic_conv(in_channels, 48, 1, activation=activation)
        self.branch5x5_2 = basic_conv(48, 64, 5, activation=activation)
        self.branch3x3dbl_1 = basic_conv(in_channels, 64, 1, activation=activation)
        self.branch3x3dbl_2 = basic_conv(64, 96, 3, activation=activation)
        self.branch3x3dbl_3 = basic_conv(96, 96, 3, activation=activation)
        self.branch_pool = basic_conv(in_channels, pool_features, 1, activation=activation)
        self.out_channels = 64 + 64 + 96 + pool_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(_avg_pool_3x3_same(x))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], dim=1)


class InceptionB(nn.Module):
    """Inception v3's grid reduction 35x35 -> 17x17 (Szegedy et al. 2015, Figure 10).

    Stride-2 convolutions next to a stride-2 max pool, so the grid shrinks while the width grows, without
    the representational bottleneck of pooling first. Output: 384 + 96 + ``in_channels``.
    """

    def __init__(self, in_channels: int, activation: str = "relu") -> None:
        super().__init__()
        self.branch3x3 = basic_conv(in_channels, 384, 3, stride=2, padding=0, activation=activation)
        self.branch3x3dbl_1 = basic_conv(in_channels, 64, 1, activation=activation)
        self.branch3x3dbl_2 = basic_conv(64, 96, 3, activation=activation)
        self.branch3x3dbl_3 = basic_conv(96, 96, 3, stride=2, padding=0, activation=activation)
        self.out_channels = 384 + 96 + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([self.branch3x3(x), branch3x3dbl, branch_pool], dim=1)


class InceptionC(nn.Module):
    """Inception v3's 17x17 block (Szegedy et al. 2015, Figure 6): 7x7 convolutions factorised into 1x7 and 7x1.

    ``channels_7x7`` is the width inside the factorised branches. Output: 4 x 192 = 768 channels.
    """

    def __init__(self, in_channels: int, channels_7x7: int, activation: str = "relu") -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = basic_conv(in_channels, 192, 1, activation=activation)
        self.branch7x7_1 = basic_conv(in_channels, c7, 1, activation=activation)
        self.branch7x7_2 = basic_conv(c7, c7, (1, 7), activation=activation)
        self.branch7x7_3 = basic_conv(c7, 192, (7, 1), activation=activation)
        self.branch7x7dbl_1 = basic_conv(in_channels, c7, 1, activation=activation)
        self.branch7x7dbl_2 = basic_conv(c7, c7, (7, 1), activation=activation)
        self.branch7x7dbl_3 = basic_conv(c7, c7, (1, 7), activation=activation)
        self.branch7x7dbl_4 = basic_conv(c7, c7, (7, 1), activation=activation)
        self.branch7x7dbl_5 = basic_conv(c7, 192, (1, 7), activation=activation)
        self.branch_pool = basic_conv(in_channels, 192, 1, activation=activation)
        self.out_channels = 4 * 192

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = conv(branch7x7dbl)
        branch_pool = self.branch_pool(_avg_pool_3x3_same(x))
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], dim=1)


class InceptionD(nn.Module):
    """Inception v3's grid reduction 17x17 -> 8x8: stride-2 3x3 convs beside a stride-2 max pool.

    Output: 320 + 192 + ``in_channels``.
    """

    def __init__(self, in_channels: int, activation: str = "relu") -> None:
        super().__init__()
        self.branch3x3_1 = basic_conv(in_channels, 192, 1, activation=activation)
        self.branch3x3_2 = basic_conv(192, 320, 3, stride=2, padding=0, activation=activation)
        self.branch7x7x3_1 = basic_conv(in_channels, 192, 1, activation=activation)
        self.branch7x7x3_2 = basic_conv(192, 192, (1, 7), activation=activation)
        self.branch7x7x3_3 = basic_conv(192, 192, (7, 1), activation=activation)
        self.branch7x7x3_4 = basic_conv(192, 192, 3, stride=2, padding=0, activation=activation)
        self.out_channels = 320 + 192 + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = conv(branch7x7x3)
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch7x7x3, branch_pool], dim=1)


class InceptionE(nn.Module):
    """Inception v3's 8x8 block (Szegedy et al. 2015, Figure 7): the 3x3s split into parallel 1x3 and 3x1.

    Widening the filter bank at the coarsest grid promotes high-dimensional representations (the paper's
    principle 2). Output: 320 + 2 x 384 + 2 x 384 + 192 = 2048 channels.
    """

    def __init__(self, in_channels: int, activation: str = "relu") -> None:
        super().__init__()
        self.branch1x1 = basic_conv(in_channels, 320, 1, activation=activation)
        self.branch3x3_1 = basic_conv(in_channels, 384, 1, activation=activation)
        self.branch3x3_2a = basic_conv(384, 384, (1, 3), activation=activation)
        self.branch3x3_2b = basic_conv(384, 384, (3, 1), activation=activation)
        self.branch3x3dbl_1 = basic_conv(in_channels, 448, 1, activation=activation)
        self.branch3x3dbl_2 = basic_conv(448, 384, 3, activation=activation)
        self.branch3x3dbl_3a = basic_conv(384, 384, (1, 3), activation=activation)
        self.branch3x3dbl_3b = basic_conv(384, 384, (3, 1), activation=activation)
        self.branch_pool = basic_conv(in_channels, 192, 1, activation=activation)
        self.out_channels = 320 + 2 * 384 + 2 * 384 + 192

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], dim=1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat(
            [self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], dim=1
        )
        branch_pool = self.branch_pool(_avg_pool_3x3_same(x))
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, branch_pool], dim=1)


class InceptionV3Aux(nn.Module):
    """Inception v3's auxiliary classifier on the last 17x17 grid (Szegedy et al. 2015, Figure 8).

    5x5/3 average pool (17x17 -> 5x5), 1x1 conv to 128, 5x5 conv to 768, classifier. Below the 17x17 grid
    (inputs under 299x299) a 5x5/3 pool leaves too little for the 5x5 conv, so there the head pools
    adaptively to 5x5 instead; at 299 and above it computes exactly torchvision's head.
    """

    def __init__(self, in_channels: int, num_classes: int, activation: str = "relu") -> None:
        super().__init__()
        self.conv0 = basic_conv(in_channels, 128, 1, activation=activation)
        self.conv1 = basic_conv(128, 768, 5, padding=0, activation=activation)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) >= 17:
            x = F.avg_pool2d(x, kernel_size=5, stride=3)
        else:
            x = F.adaptive_avg_pool2d(x, (5, 5))
        x = self.conv1(self.conv0(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return self.fc(x)


def imagenet_to_inception_input(x: torch.Tensor) -> torch.Tensor:
    """Re-normalise an ImageNet-normalised batch ((x - mean) / std) to the [-1, 1] scaling Google's weights expect.

    torchvision's ``transform_input`` for its GoogLeNet and Inception v3 weights ported from TensorFlow.
    """
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x * (std / 0.5) + (mean - 0.5) / 0.5


def check_inception_options(in_chans: int, transform_input: bool, dropout: float) -> None:
    """The options GoogLeNet and Inception v3 share: ``transform_input`` needs RGB input, ``dropout`` a rate."""
    if transform_input and in_chans != 3:
        raise ConvlabError(f"transform_input needs 3 input channels (RGB), got in_chans={in_chans}.")
    if not 0.0 <= dropout < 1.0:
        raise ConvlabError(f"dropout must be in [0, 1), got {dropout!r}.")
