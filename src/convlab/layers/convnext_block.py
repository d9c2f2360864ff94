"""ConvNeXt's block (Liu et al. 2022): 7x7 depthwise conv, LayerNorm, inverted MLP, layer scale, drop path."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import StochasticDepth

from convlab.layers.activations import make_activation


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) map: each pixel's C values normalised together."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # channels last, where layer_norm normalises the trailing dimension
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    """Reorder a tensor's dimensions (a module so it can sit inside an nn.Sequential)."""

    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class ConvNeXtBlock(nn.Module):
    """x + drop_path(gamma * MLP(LN(dwconv7x7(x)))), Liu et al. 2022, Figure 4.

    The two 1x1 convolutions of the inverted MLP (dim -> 4 dim -> dim) are written as
    nn.Linear on channels-last pixels, which computes the same thing faster. The children of
    ``self.block`` are numbered as torchvision numbers them (``block.0`` the depthwise conv,
    ``block.2`` the norm, ``block.3``/``block.5`` the MLP), so its checkpoints load unchanged.
    """

    def __init__(
        self, dim: int, layer_scale: float = 1e-6, drop_path: float = 0.0, activation: str = "gelu"
    ) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim),  # large kernel, one filter per channel
            Permute(0, 2, 3, 1),
            nn.LayerNorm(dim, eps=1e-6),  # one norm per block: the paper's "fewer normalization layers"
            nn.Linear(dim, 4 * dim),  # inverted bottleneck: expand 4x like a transformer's MLP
            make_activation(activation),  # a single activation per block (GELU in the paper)
            nn.Linear(4 * dim, dim),
            Permute(0, 3, 1, 2),
        )
        # Layer scale (Touvron et al. 2021): each branch starts near zero, so deep stacks train stably
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), float(layer_scale)))
        # Stochastic depth (Huang et al. 2016): drops the branch per sample in training, identity in eval
        self.stochastic_depth = StochasticDepth(drop_path, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.stochastic_depth(self.layer_scale * self.block(x))
