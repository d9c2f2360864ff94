"""Residual blocks (He et al. 2015): the basic and bottleneck blocks and their shortcuts, and the plain
block (the basic block without its shortcut) that the paper's degradation experiment compares them with.

A block computes out = act(F(x) + shortcut(x)); an optional squeeze-and-excitation gate
(Hu et al. 2018) rescales F(x) before the addition, which turns a ResNet into an SE-ResNet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers.activations import make_activation
from convlab.layers.se import SqueezeExcitation

# He et al. 2015, section 3.3: "(A) zero-padding shortcuts ... parameter-free", "(B) projection shortcuts".
SHORTCUTS = ("A", "B")
# Where a downsampling bottleneck strides: the paper's first 1x1 (v1) or torchvision's 3x3 (v1.5).
STRIDE_IN = ("3x3", "1x1")


class PadChannelsShortcut(nn.Module):
    """Option A shortcut: identity, subsampled by ``stride``, with the extra channels filled with zeros.

    Parameter-free, the paper's choice for its CIFAR networks (He et al. 2015, section 4.2). Taking
    every ``stride``-th pixel is what a stride-``stride`` 1x1 identity convolution would sample.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"zero padding can only add channels, not go from {in_channels} to {out_channels}"
            )
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # (W, H, C) pads: zeros after the channels


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The identity where shapes agree, else option ``kind``: "A" zero padding or "B" 1x1 projection + BN."""
    if kind not in SHORTCUTS:
        raise ConvlabError(
            f"Unknown shortcut '{kind}'; accepted: A (zero-padding identity), B (1x1 projection)."
        )
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "A":
        return PadChannelsShortcut(in_channels, out_channels, stride)
    # Numbered children give torchvision's keys: downsample.0 (conv) and downsample.1 (bn).
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def make_se(channels: int, se_reduction: int | None) -> nn.Module:
    """A squeeze-and-excitation gate with reduction ``se_reduction``, or the identity for None."""
    if se_reduction is None:
        return nn.Identity()
    if isinstance(se_reduction, bool) or not isinstance(se_reduction, int) or se_reduction < 1:
        raise ConvlabError(f"se_reduction must be a positive integer or None, got {se_reduction!r}.")
    return SqueezeExcitation(channels, reduction=se_reduction)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (He et al. 2015, Figure 2 / Figure 5 left).

    The first convolution carries the stride; ``width`` is the output channel count.
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        *,
        activation: str = "relu",
        shortcut: str = "B",
        se_reduction: int | None = None,
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(width, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.se = make_se(out_channels, se_reduction)
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride)
        self.act2 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.se(out)
        out += self.downsample(x)
        return self.act2(out)

    def zero_init_last_bn(self) -> None:
        """Start the residual branch at zero, so the block begins as act(shortcut(x)) (Goyal et al. 2017)."""
        nn.init.zeros_(self.bn2.weight)


class PlainBlock(nn.Module):
    """A basic block without its shortcut: out = act(bn(conv(act(bn(conv(x)))))) (He et al. 2015, section 4.2).

    The "plain" networks of the paper's Figure 6 stack these: same layers and parameters as a ResNet with
    option A shortcuts, so any difference in how well they train comes from the shortcuts alone.
    ``shortcut`` is accepted and ignored, so that one stage builder makes plain and residual stages alike.
    """

    expansion = 1

    def __init__(
        self, in_channels: int, width: int, stride: int = 1, *, activation: str = "relu", shortcut: str = "A"
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) and a shortcut (He et al. 2015, Figure 5 right).

    ``stride_in`` says which convolution of a downsampling block strides: "3x3" (torchvision's
    v1.5, slightly more accurate) or "1x1" (the paper's v1, fewer multiply-adds). Keys are the same.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        *,
        activation: str = "relu",
        shortcut: str = "B",
        stride_in: str = "3x3",
        se_reduction: int | None = None,
    ) -> None:
        super().__init__()
        if stride_in not in STRIDE_IN:
            raise ConvlabError(
                f"Unknown stride_in '{stride_in}'; accepted: 3x3 (torchvision v1.5), 1x1 (the paper's v1)."
            )
        stride_1x1, stride_3x3 = (stride, 1) if stride_in == "1x1" else (1, stride)
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride_1x1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(width, width, 3, stride_3x3, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = make_activation(activation)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.se = make_se(out_channels, se_reduction)
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride)
        self.act3 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = self.se(out)
        out += self.downsample(x)
        return self.act3(out)

    def zero_init_last_bn(self) -> None:
        """Start the residual branch at zero, so the block begins as act(shortcut(x)) (Goyal et al. 2017)."""
        nn.init.zeros_(self.bn3.weight)


__all__ = ["SHORTCUTS", "STRIDE_IN", "BasicBlock", "Bottleneck", "PadChannelsShortcut", "make_shortcut"]
