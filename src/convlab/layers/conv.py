"""Convolution building blocks: conv-norm-act and the depthwise-separable convolution."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from convlab.layers.activations import make_activation


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
