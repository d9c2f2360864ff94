"""Shared building blocks from the lectures, reused across the model families."""

from convlab.choices import ACTIVATIONS, INIT_SCHEMES
from convlab.layers.activations import make_activation
from convlab.layers.conv import ConvNormAct, DepthwiseSeparableConv, same_padding
from convlab.layers.convnext_block import ConvNeXtBlock, LayerNorm2d, Permute
from convlab.layers.dense import DenseBlock, DenseLayer, Transition
from convlab.layers.fire import Fire
from convlab.layers.inception import (
    InceptionA,
    InceptionAux,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
    InceptionModule,
    InceptionV3Aux,
)
from convlab.layers.init import init_weights
from convlab.layers.inverted_residual import InvertedResidual
from convlab.layers.residual import BasicBlock, Bottleneck, PadChannelsShortcut, PlainBlock, make_shortcut
from convlab.layers.se import SqueezeExcitation
from convlab.layers.transformer import PatchEmbedding, TransformerEncoder, TransformerEncoderBlock

__all__ = [
    "ACTIVATIONS",
    "INIT_SCHEMES",
    "BasicBlock",
    "PlainBlock",
    "Bottleneck",
    "ConvNeXtBlock",
    "ConvNormAct",
    "DenseBlock",
    "DenseLayer",
    "DepthwiseSeparableConv",
    "Fire",
    "InceptionA",
    "InceptionAux",
    "InceptionB",
    "InceptionC",
    "InceptionD",
    "InceptionE",
    "InceptionModule",
    "InceptionV3Aux",
    "InvertedResidual",
    "LayerNorm2d",
    "PadChannelsShortcut",
    "PatchEmbedding",
    "Permute",
    "SqueezeExcitation",
    "Transition",
    "TransformerEncoder",
    "TransformerEncoderBlock",
    "init_weights",
    "make_activation",
    "make_shortcut",
    "same_padding",
]
