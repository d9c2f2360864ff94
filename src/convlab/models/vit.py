"""Vision Transformer (Dosovitskiy et al. 2021): image patches as words, a transformer encoder on top."""

from __future__ import annotations

import math

import torch
from torch import nn

from convlab.layers.transformer import PatchEmbedding, TransformerEncoder
from convlab.models._registry import Option, activation_option, register_model

# Dosovitskiy et al. 2021, Table 1: ViT-Base has 12 layers, hidden size 768, MLP size 3072 and 12 heads.
VIT_B_16_OPTIONS = {
    "activation": activation_option("gelu"),
    "image_size": Option(224, "side of the square input images"),
    "patch_size": Option(16, "side of the square patches that become tokens"),
    "depth": Option(12, "transformer layers"),
    "width": Option(768, "hidden size D of every token"),
    "heads": Option(12, "attention heads (must divide width)"),
    "mlp_dim": Option(3072, "hidden size of each layer's MLP"),
    "dropout": Option(0.0, "dropout after the embeddings, the attention and the MLP"),
    "attention_dropout": Option(0.0, "dropout on the attention weights"),
}


class VisionTransformer(nn.Module):
    """Patch embedding -> [class token; patches] + positions -> encoder -> head on the class token."""

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        depth: int,
        width: int,
        heads: int,
        mlp_dim: int,
        num_classes: int,
        in_chans: int = 3,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        self.conv_proj = PatchEmbedding(image_size, patch_size, in_chans, width)
        # A learned "[class]" token whose final state represents the image (Eq. 1, as BERT's)
        self.class_token = nn.Parameter(torch.zeros(1, 1, width))
        self.encoder = TransformerEncoder(
            self.conv_proj.num_patches + 1,
            depth,
            width,
            heads,
            mlp_dim,
            dropout=dropout,
            attention_dropout=attention_dropout,
            activation=activation,
        )
        self.heads = nn.Sequential()
        self.heads.add_module("head", nn.Linear(width, num_classes))

        # Patch projection: truncated normal with std 1/sqrt(fan_in) (LeCun), as the reference code
        fan_in = in_chans * patch_size * patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        # Zero head: every class starts equally likely, as the paper's fine-tuning head (Sec. 3.1)
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.conv_proj(x)
        class_token = self.class_token.expand(tokens.shape[0], -1, -1)
        tokens = self.encoder(torch.cat([class_token, tokens], dim=1))
        return self.heads(tokens[:, 0])


@register_model(
    family="vit",
    year=2021,
    paper="Dosovitskiy et al., An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale "
    "(ICLR 2021)",
    input_size=(3, 224, 224),
    num_classes=1000,
    torchvision="vit_b_16",
    options=VIT_B_16_OPTIONS,
)
def vit_b_16(num_classes: int, in_chans: int, **options) -> VisionTransformer:
    """ViT-Base/16: 12 pre-norm transformer layers on 16x16 patches, 86.6M parameters.

    The other options give a small ViT instead, e.g. ``image_size=32, patch_size=4, depth=6,
    width=256, heads=8, mlp_dim=512`` for CIFAR-10. The input must be image_size x image_size.
    """
    return VisionTransformer(num_classes=num_classes, in_chans=in_chans, **options)
