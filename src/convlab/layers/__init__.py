"""Shared building blocks from the lectures, reused across the model families."""

from convlab.layers.activations import ACTIVATIONS, make_activation
from convlab.layers.conv import ConvNormAct, DepthwiseSeparableConv, same_padding
from convlab.layers.init import INIT_SCHEMES, init_weights
from convlab.layers.residual import BasicBlock, Bottleneck, PadChannelsShortcut, make_shortcut
from convlab.layers.se import SqueezeExcitation

__all__ = [
    "ACTIVATIONS", "INIT_SCHEMES", "BasicBlock", "Bottleneck", "ConvNormAct", "DepthwiseSeparableConv", "PadChannelsShortcut", "SqueezeExcitation",
    "init_weights", "make_activation", "make_shortcut", "same_padding",
]
