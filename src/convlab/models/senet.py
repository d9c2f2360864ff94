"""SE-ResNet (Hu et al. 2018): ResNet bottlenecks whose residual branch is rescaled by squeeze-and-excitation.

Keys follow timm's ``seresnet50``: ResNet-50's, plus ``layerS.B.se.fc1`` / ``se.fc2`` in every block.
"""

from __future__ import annotations

from torch import nn

from convlab.models._registry import register_model
from convlab.models.resnet import imagenet_resnet


@register_model(
    family="senet",
    year=2018,
    paper="Hu, Shen, Sun, Squeeze-and-Excitation Networks (CVPR 2018)",
    torchvision=None,
)
def se_resnet50(
    num_classes: int = 1000,
    in_chans: int = 3,
    *,
    activation: str = "relu",
    se_reduction: int = 16,
    stride_in: str = "3x3",
    zero_init_residual: bool = False,
) -> nn.Module:
    """SE-ResNet-50: ResNet-50 with an SE gate (reduction 16) on each bottleneck, 28.1M parameters.

    ``se_reduction`` is the paper's ratio r (Table 6 compares 2 to 32; 16 is its choice). The SE
    gate keeps its own ReLU and sigmoid whatever ``activation`` is: the sigmoid is the gate itself.
    The authors' released Caffe models stride in the first 1x1 of a downsampling block: ``stride_in="1x1"``.
    """
    return imagenet_resnet(
        50,
        num_classes,
        in_chans,
        activation=activation,
        stride_in=stride_in,
        se_reduction=se_reduction,
        zero_init_residual=zero_init_residual,
    )
