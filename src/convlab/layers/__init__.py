"""Shared building blocks from the lectures, reused across the model families."""

from convlab.layers.activations import ACTIVATIONS, make_activation
from convlab.layers.conv import ConvNormAct, DepthwiseSeparableConv, same_padding
from convlab.layers.init import INIT_SCHEMES, init_weights
from convlab.layers.se import SqueezeExcitation

__all__ = [
    "ACTIVATIONS", "INIT_SCHEMES", "ConvNormAct", "DepthwiseSeparableConv", "SqueezeExcitation",
    "init_weights", "make_activation", "same_padding",
]
