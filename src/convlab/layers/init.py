"""Weight initialisation schemes, applied to every convolution and linear layer.

``default`` keeps what each architecture does itself (torchvision's choices, which follow
the papers). The others are the classic schemes: ``kaiming`` (He et al. 2015, for ReLU),
``xavier`` (Glorot & Bengio 2010, for tanh/sigmoid) and ``lecun`` (Gaussian with std
1/sqrt(n_inputs), LeCun et al. 1998, the rule the notes give to avoid saturation).
Biases start at zero; batch-norm weights at one.
"""

from __future__ import annotations

import math

from torch import nn

from convlab.choices import INIT_SCHEMES
from convlab.errors import unknown_name_error

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def init_weights(model: nn.Module, scheme: str = "default") -> nn.Module:
    """Re-initialise ``model`` in place with ``scheme`` and return it."""
    if scheme not in INIT_SCHEMES:
        raise unknown_name_error("init scheme", scheme, INIT_SCHEMES)
    if scheme == "default":
        return model
    for module in model.modules():
        if isinstance(module, _WEIGHTED):
            weight = module.weight
            if scheme == "kaiming":
                nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu")
            elif scheme == "xavier":
                nn.init.xavier_uniform_(weight)
            else:  # lecun: std = 1/sqrt(fan_in), fan_in = in_channels/groups * kernel area
                fan_in = weight[0].numel()
                nn.init.normal_(weight, 0.0, 1.0 / math.sqrt(fan_in))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            if module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
    return model
