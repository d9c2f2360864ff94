"""The Vision Transformer's parts (Dosovitskiy et al. 2021): patch embedding and the pre-norm encoder.

Submodules are named as torchvision's ``VisionTransformer`` names them (``ln_1``, ``self_attention``,
``mlp.0``, ``encoder_layer_0``, ``pos_embedding``), so its checkpoints load unchanged.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers.activations import make_activation


class PatchEmbedding(nn.Conv2d):
    """Cut the image into PxP patches and project each linearly: (N, C, H, W) -> (N, patches, width).

    A PxP convolution with stride P is exactly "flatten each patch, multiply by one matrix"
    (Dosovitskiy et al. 2021, Eq. 1), done in one call. The image size is fixed because the
    position embeddings are learned for one number of patches.
    """

    def __init__(self, image_size: int, patch_size: int, in_channels: int, width: int) -> None:
        if patch_size < 1 or image_size < patch_size or image_size % patch_size:
            raise ConvlabError(
                f"The image size must be a multiple of the patch size, got image_size={image_size} "
                f"and patch_size={patch_size}."
            )
        super().__init__(in_channels, width, kernel_size=patch_size, stride=patch_size)
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_patches = (image_size // patch_size) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if (height, width) != (self.image_size, self.image_size):
            raise ConvlabError(
                f"This Vision Transformer expects {self.image_size}x{self.image_size} images, got "
                f"{height}x{width}; resize the images or build the model with image_size={height}."
            )
        return super().forward(x).flatten(2).transpose(1, 2)  # (N, width, H/P, W/P) -> (N, H/P * W/P, width)


class TransformerEncoderBlock(nn.Module):
    """x + MSA(LN(x)), then x + MLP(LN(x)): the pre-norm encoder layer of Dosovitskiy et al. 2021, Eq. 2-3."""

    def __init__(
        self,
        width: int,
        heads: int,
        mlp_dim: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        if heads < 1 or width % heads:
            raise ConvlabError(
                f"The width must be a multiple of the number of heads, got width={width} and heads={heads}."
            )
        self.ln_1 = nn.LayerNorm(width, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(width, heads, dropout=attention_dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_dim),
            make_activation(activation),  # GELU in the paper
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, width),
            nn.Dropout(dropout),
        )
        for layer in (self.mlp[0], self.mlp[3]):  # the reference (JAX) ViT's MLP init
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + self.dropout(y)
        return x + self.mlp(self.ln_2(x))


class TransformerEncoder(nn.Module):
    """Add learned position embeddings, run ``depth`` encoder blocks, normalise the result."""

    def __init__(
        self,
        seq_length: int,
        depth: int,
        width: int,
        heads: int,
        mlp_dim: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        # One learned vector per position; std 0.02 as BERT, which ViT follows
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, width).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        block = TransformerEncoderBlock
        self.layers = nn.Sequential(
            OrderedDict(
                (f"encoder_layer_{i}", block(width, heads, mlp_dim, dropout, attention_dropout, activation))
                for i in range(depth)
            )
        )
        self.ln = nn.LayerNorm(width, eps=1e-6)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(self.dropout(tokens + self.pos_embedding)))
