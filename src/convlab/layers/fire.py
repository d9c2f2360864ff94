"""SqueezeNet's fire module (Iandola et al. 2016): a 1x1 squeeze layer feeding parallel 1x1 and 3x3 expands."""

from __future__ import annotations

import torch
from torch import nn

from convlab.layers.activations import make_activation

__all__ = ["Fire"]


class Fire(nn.Module):
    """Squeeze to few channels with 1x1 convs, then expand with 1x1 and 3x3 convs side by side.

    Keeping ``squeeze`` below ``expand1x1 + expand3x3`` limits the input channels of the 3x3 filters,
    SqueezeNet's strategy 2 for saving parameters (section 3.1). Output: ``expand1x1 + expand3x3`` channels.
    """

    def __init__(
        self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, kernel_size=1)
        self.squeeze_activation = make_activation(activation)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = make_activation(activation)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = make_activation(activation)
        self.out_channels = expand1x1 + expand3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))],
            dim=1,
        )
