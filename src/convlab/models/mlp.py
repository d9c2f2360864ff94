"""The multi-layer perceptron on flattened images: the baseline LeCun et al. 1998 compare CNNs against.

Every pixel is an input, so the first layer alone has in_chans*H*W*hidden weights (notes 002).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers import make_activation
from convlab.models._registry import Option, activation_option, register_model

MLP_OPTIONS = {
    "activation": activation_option("relu"),
    "hidden": Option((300,), "hidden widths: (1000,), (500, 150), ...; () gives a linear classifier"),
    "input_size": Option(28, "side of the square input in pixels"),
    "dropout": Option(0.0, "dropout after each hidden activation"),
}


class MLP(nn.Module):
    """Flatten -> (Linear -> activation -> dropout) per hidden width -> Linear to the classes."""

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        num_classes: int,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        width = in_features
        for index, units in enumerate(hidden, start=1):
            layers[f"fc{index}"] = nn.Linear(width, units)
            layers[f"act{index}"] = make_activation(activation)
            if dropout > 0:
                layers[f"drop{index}"] = nn.Dropout(dropout)
            width = units
        layers["output"] = nn.Linear(width, num_classes)
        self.layers = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.flatten(x))


def _check_hidden(hidden: Sequence[int]) -> tuple[int, ...]:
    if isinstance(hidden, int):
        hidden = (hidden,)
    elif isinstance(hidden, str):  # "500,150" as typed on a command line
        hidden = [part for part in hidden.split(",") if part.strip()]
    try:
        widths = tuple(int(units) for units in hidden)
    except (TypeError, ValueError):
        raise ConvlabError(
            f"hidden must be a sequence of layer widths such as (300,) or (500, 150), got {hidden!r}."
        ) from None
    if any(units < 1 for units in widths):
        raise ConvlabError(f"hidden layer widths must be positive integers, got {hidden!r}.")
    return widths


@register_model(
    family="mlp",
    year=1998,
    paper="LeCun et al., Gradient-Based Learning Applied to Document Recognition (Proc. IEEE 1998)",
    input_size=(1, 28, 28),
    num_classes=10,
    options=MLP_OPTIONS,
)
def mlp(
    num_classes: int,
    in_chans: int,
    *,
    activation: str,
    hidden: Sequence[int],
    input_size: int,
    dropout: float,
) -> MLP:
    """Multi-layer perceptron on the flattened image (LeCun's MNIST baselines, e.g. 784-300-10).

    The first layer takes in_chans*input_size**2 values.
    """
    widths = _check_hidden(hidden)
    if int(input_size) < 1:
        raise ConvlabError(f"input_size must be a positive image side in pixels, got {input_size!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ConvlabError(f"dropout must be a probability in [0, 1), got {dropout!r}.")
    make_activation(activation)  # fail early, with the list of names, before building anything
    in_features = in_chans * int(input_size) ** 2
    return MLP(in_features, widths, num_classes, activation=activation, dropout=dropout)
