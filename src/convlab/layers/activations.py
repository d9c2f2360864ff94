"""The activation functions named in the lecture notes, selectable by name.

identity, sigmoid (logistic), tanh, arctan, relu, leaky_relu (slope 0.01), prelu, elu,
softplus. torch has all but arctan, so only that one is written here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from convlab.choices import ACTIVATIONS
from convlab.errors import unknown_name_error


class Arctan(nn.Module):
    """f(z) = arctan(z): tanh's shape with slower saturation (range -pi/2..pi/2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.atan(x)


# One factory per name in convlab.choices.ACTIVATIONS (tests/layers check that they match).
FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "arctan": Arctan,
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),  # slope 0.01 as in the notes
    "prelu": nn.PReLU,  # one learned slope per layer (He et al. 2015), initialised at 0.25
    "elu": lambda: nn.ELU(alpha=1.0, inplace=True),
    "softplus": nn.Softplus,
    "relu6": lambda: nn.ReLU6(inplace=True),  # robust under low precision (MobileNet)
    "gelu": nn.GELU,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (each call a new module, so PReLU slopes are per layer)."""
    try:
        factory = FACTORIES[name]
    except KeyError:
        raise unknown_name_error("activation", name, ACTIVATIONS) from None
    return factory()
