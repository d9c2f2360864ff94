"""LeNet-5 (LeCun et al. 1998): the modern reading and the 1998 original with its sparse C3 table.

Layer names follow the paper: C1, S2, C3, S4, C5 convolution/subsampling, F6, output.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from convlab.choices import ACTIVATIONS
from convlab.errors import ConvlabError, unknown_name_error
from convlab.layers import make_activation
from convlab.models._registry import Option, activation_option, register_model

PAPER = "LeCun et al., Gradient-Based Learning Applied to Document Recognition (Proc. IEEE 1998)"

LENET5_OPTIONS = {
    "activation": activation_option("tanh"),
    "pool": Option("avg", '"avg" (the paper\'s averaging, without its trainable coefficient) or "max"'),
}
LENET5_1998_OPTIONS = {
    "activation": Option(
        "scaled_tanh", 'the paper\'s 1.7159 tanh(2a/3) ("scaled_tanh") or any zoo activation'
    ),
}

# LeCun et al. 1998, Table I: which S2 feature maps (rows) each C3 feature map (columns) reads.
# The first six C3 maps take 3 contiguous S2 maps, the next nine 4, and the last one all six:
# breaking the symmetry forces the maps to learn different features, with fewer connections.
C3_CONNECTIONS = [
    # 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15   <- C3 map
    " X . . . X X X . . X X  X  X  .  X  X",  # S2 map 0
    " X X . . . X X X . . X  X  X  X  .  X",  # S2 map 1
    " X X X . . . X X X . .  X  .  X  X  X",  # S2 map 2
    " . X X X . . X X X X .  .  X  .  X  X",  # S2 map 3
    " . . X X X . . X X X X  .  X  X  .  X",  # S2 map 4
    " . . . X X X . . X X X  X  .  X  X  X",  # S2 map 5
]


def connection_table(rows: list[str]) -> list[list[int]]:
    """For each output map (column), the input maps (rows) marked X that it reads."""
    marks = [row.split() for row in rows]
    return [[i for i, row in enumerate(marks) if row[j] == "X"] for j in range(len(marks[0]))]


class ScaledTanh(nn.Module):
    """f(a) = 1.7159 tanh(2a/3), LeCun's squashing function (1998, Appendix A).

    The constants make f(1) = 1 and f(-1) = -1 with maximal second derivative there, so
    targets of +-1 sit where the curve still has slope, not in saturation.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


def _activation(name: str) -> nn.Module:
    if name == "scaled_tanh":
        return ScaledTanh()
    if name not in ACTIVATIONS:
        raise unknown_name_error("activation", name, [*ACTIVATIONS, "scaled_tanh"])
    return make_activation(name)


class Subsampling(nn.Module):
    """LeNet's trainable subsampling (S2, S4): the sum of each 2x2 window times a learned coefficient,
    plus a learned bias, per feature map (2 parameters per map). The activation comes after it.
    """

    def __init__(self, channels: int, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.full((channels,), 1.0 / kernel_size**2))  # starts as the mean
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The window's sum, as an average times its area: ONNX export drops avg_pool2d's divisor_override.
        window_sum = F.avg_pool2d(x, self.kernel_size) * (self.kernel_size * self.kernel_size)
        return window_sum * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, kernel_size={self.kernel_size}"


class SparseConv2d(nn.Module):
    """A convolution in which output map j sees only the input maps listed in ``table[j]``.

    Written as one small Conv2d per output map over its own inputs, so the model holds
    exactly the weights the paper counts (a masked full convolution would hold them all).
    """

    def __init__(self, table: list[list[int]], kernel_size: int) -> None:
        super().__init__()
        self.maps = nn.ModuleList(nn.Conv2d(len(inputs), 1, kernel_size) for inputs in table)
        for j, inputs in enumerate(table):
            # Derived from the table, so kept out of the state_dict; a buffer so .to(device) moves it.
            self.register_buffer(f"inputs_{j}", torch.tensor(inputs), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [conv(x.index_select(1, getattr(self, f"inputs_{j}"))) for j, conv in enumerate(self.maps)]
        return torch.cat(outputs, dim=1)


class LeNet5(nn.Module):
    """C1 -> S2 -> C3 -> S4 -> C5 -> F6 -> output, with an activation after every layer but the last."""

    def __init__(
        self, features: OrderedDict[str, nn.Module], classifier: OrderedDict[str, nn.Module]
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(features)
        self.flatten = nn.Flatten()  # C5 leaves 120 maps of 1x1 at a 32x32 input
        self.classifier = nn.Sequential(classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


def _lecun_1998_init(model: nn.Module) -> None:
    """Weights and biases uniform in +-2.4/F_i, F_i the unit's fan-in (LeCun et al. 1998, Appendix C)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()
        elif isinstance(module, Subsampling):
            fan_in = module.kernel_size**2
        else:
            continue
        bound = 2.4 / fan_in
        nn.init.uniform_(module.weight, -bound, bound)
        nn.init.uniform_(module.bias, -bound, bound)


def _register(options: dict[str, Option]):
    return register_model(
        family="lenet", year=1998, paper=PAPER, input_size=(1, 32, 32), num_classes=10, options=options
    )


@_register(LENET5_OPTIONS)
def lenet5(num_classes: int, in_chans: int, *, activation: str, pool: str) -> LeNet5:
    """LeNet-5 as usually built today: full C3, parameter-free 2x2 pooling, 61,706 parameters.

    Needs a 32x32 input: C5's 5x5 kernel exactly covers S4's 5x5 maps.
    """
    pools = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
    if pool not in pools:
        raise ConvlabError(f"pool must be 'avg' or 'max', got {pool!r}.")
    features = OrderedDict(
        [
            ("c1", nn.Conv2d(in_chans, 6, 5)),  # 5*5*1*6 + 6 = 156 parameters, 28x28x6 at 32x32
            ("c1_act", _activation(activation)),
            ("s2", pools[pool](2, 2)),
            ("c3", nn.Conv2d(6, 16, 5)),  # every C3 map reads all six S2 maps: 2,416 parameters
            ("c3_act", _activation(activation)),
            ("s4", pools[pool](2, 2)),
            ("c5", nn.Conv2d(16, 120, 5)),  # 5*5*16*120 + 120 = 48,120 parameters, 1x1x120 at 32x32
            ("c5_act", _activation(activation)),
        ]
    )
    classifier = OrderedDict(
        [
            ("f6", nn.Linear(120, 84)),  # 84 = a 7x12 bitmap per character in the paper's RBF output
            ("f6_act", _activation(activation)),
            ("output", nn.Linear(84, num_classes)),
        ]
    )
    return LeNet5(features, classifier)


@_register(LENET5_1998_OPTIONS)
def lenet5_1998(num_classes: int, in_chans: int, *, activation: str) -> LeNet5:
    """The original LeNet-5: sparse C3 (Table I), trainable subsampling S2/S4, 60,850 parameters.

    Weights start uniform in +-2.4/fan-in as in the paper.
    The output is a plain Linear layer instead of the paper's Euclidean RBF units (its 10
    biases are why this counts 60,850 where the paper says about 60,000), so it trains with
    cross-entropy like every other model here.
    """
    _activation(activation)  # fail early on an unknown name
    features = OrderedDict(
        [
            ("c1", nn.Conv2d(in_chans, 6, 5)),  # 156 parameters
            ("c1_act", _activation(activation)),
            ("s2", Subsampling(6)),  # 6 coefficients + 6 biases = 12 parameters
            ("s2_act", _activation(activation)),
            ("c3", SparseConv2d(connection_table(C3_CONNECTIONS), 5)),  # 6*76 + 9*101 + 151 = 1,516
            ("c3_act", _activation(activation)),
            ("s4", Subsampling(16)),  # 32 parameters
            ("s4_act", _activation(activation)),
            ("c5", nn.Conv2d(16, 120, 5)),  # 48,120 parameters
            ("c5_act", _activation(activation)),
        ]
    )
    classifier = OrderedDict(
        [
            ("f6", nn.Linear(120, 84)),  # 10,164 parameters
            ("f6_act", _activation(activation)),
            ("output", nn.Linear(84, num_classes)),
        ]
    )
    model = LeNet5(features, classifier)
    _lecun_1998_init(model)
    return model
