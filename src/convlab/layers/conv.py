"""Convolution building blocks: conv-norm-act, the depthwise-separable convolution, and a convolution
that covers its input (LeNet-5's C5)."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlab.layers.activations import make_activation


class CoveringConv2d(nn.Conv2d):
    """A convolution whose kernel may cover its whole input, computed then as one matrix product.

    LeNet-5's C5 has 5x5 kernels on S4's 5x5 maps: "this amounts to a full connection", yet it is
    a convolution because a larger input would give it larger maps (LeCun et al. 1998, II.B). It
    is written so here, with nn.Conv2d's parameters and state_dict. When the (unpadded) input is
    exactly the kernel's size, there is one output position per map, and the layer is
    ``linear(flatten(x), flatten(weight))``: the same sums (to float rounding), which a matrix
    product computes 3.6x faster than oneDNN's convolution at a 1x1 output (forward and backward
    of C5 at batch 64: 0.38 against 1.38 ms on 2 cores, docs/performance.md). Any other input size
    convolves as usual.
    """

    def covers(self, x: Tensor) -> bool:
        return (
            x.dim() == 4
            and tuple(x.shape[-2:]) == tuple(self.weight.shape[-2:])
            and self.padding in ((0, 0), "valid")
            and self.dilation == (1, 1)
            and self.groups == 1
            and x.device.type != "meta"
        )  # the inspector traces the convolution, as the paper draws it

    def forward(self, x: Tensor) -> Tensor:
        if not self.covers(x):
            return super().forward(x)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # NHWC: flatten input and kernel in (row, column, channel) order, which for channels_last
            # tensors is a view, where (channel, row, column) order copies both every step, forward and
            # backward, and hands S4 an NCHW gradient (+7-12% on LeNet-5's channels_last training step).
            flat_x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
            flat_weight = self.weight.permute(0, 2, 3, 1).reshape(self.weight.shape[0], -1)
        else:
            flat_x, flat_weight = x.flatten(1), self.weight.flatten(1)
        return F.linear(flat_x, flat_weight, self.bias).view(x.shape[0], -1, 1, 1)


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps the size at stride 1: (K-1)/2, with the kernel's dilated span."""
    return dilation * (kernel_size - 1) // 2


class ConvNormAct(nn.Sequential):
    """Convolution -> batch norm -> activation, the unit most CNNs are stacked from.

    Children are numbered 0, 1, 2 like torchvision's ``Conv2dNormActivation`` (MobileNet,
    ConvNeXt layouts); pass ``names=("conv", "bn", "relu")`` to name them as GoogLeNet's and
    Inception's ``BasicConv2d`` do. The names only decide the state_dict keys, which is what
    lets torchvision checkpoints load into convlab models unchanged.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool | None = None,
        norm: bool = True,
        activation: str | None = "relu",
        bn_eps: float = 1e-5,
        names: tuple[str, str, str] | None = None,
    ) -> None:
        if padding is None:
            if isinstance(kernel_size, tuple):
                padding = tuple(same_padding(k, dilation) for k in kernel_size)
            else:
                padding = same_padding(kernel_size, dilation)
        if bias is None:
            bias = not norm  # a bias right before batch norm is cancelled by its mean subtraction
        layers = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=bias)
        ]
        if norm:
            layers.append(nn.BatchNorm2d(out_channels, eps=bn_eps))
        if activation is not None:
            layers.append(make_activation(activation))
        if names is None:
            super().__init__(*layers)
        else:
            super().__init__(OrderedDict(zip(names, layers)))
        self.out_channels = out_channels


class DepthwiseSeparableConv(nn.Module):
    """A KxK depthwise convolution (one filter per channel) followed by a 1x1 pointwise one.

    Separates spatial from cross-channel correlation (Xception, MobileNet). With 20 input
    and 40 output channels at 3x3 it has (3*3+1)*20 + (1*1*20+1)*40 = 1,040 parameters
    where a standard convolution has ((3*3)*20+1)*40 = 7,240 (notes 004).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        norm: bool = True,
        activation: str | None = "relu",
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        self.depthwise = ConvNormAct(
            in_channels,
            in_channels,
            kernel_size,
            stride,
            dilation=dilation,
            groups=in_channels,
            bias=bias,
            norm=norm,
            activation=activation,
        )
        self.pointwise = ConvNormAct(
            in_channels, out_channels, 1, bias=bias, norm=norm, activation=activation
        )

    def forward(self, x):
        return self.pointwise(self.depthwise(x))
