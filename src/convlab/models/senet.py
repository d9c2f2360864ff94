"""SE-ResNet (Hu et al. 2018): ResNet bottlenecks whose residual branch is rescaled by squeeze-and-excitation.

Keys follow timm's ``seresnet50``: ResNet-50's, plus ``layerS.B.se.fc1`` / ``se.fc2`` in every block.
"""

from __future__ import annotations

from convlab.models._registry import Option, activation_option, register_model
from convlab.models.resnet import BOTTLENECK_RESNET_OPTIONS, ZERO_INIT_RESIDUAL, ResNet, imagenet_resnet

SE_RESNET_OPTIONS = {
    "activation": activation_option("relu"),
    "se_reduction": Option(
        16, "the SE gate's reduction ratio r (Table 6 compares 2 to 32; 16 is its choice)"
    ),
    "stride_in": BOTTLENECK_RESNET_OPTIONS["stride_in"],
    "zero_init_residual": ZERO_INIT_RESIDUAL,
}


@register_model(
    family="senet",
    year=2018,
    paper="Hu, Shen, Sun, Squeeze-and-Excitation Networks (CVPR 2018)",
    options=SE_RESNET_OPTIONS,
)
def se_resnet50(num_classes: int, in_chans: int, **options) -> ResNet:
    """SE-ResNet-50: ResNet-50 with an SE gate (reduction 16) on each bottleneck, 28.1M parameters.

    The SE gate keeps its own ReLU and sigmoid whatever ``activation`` is: the sigmoid is the gate
    itself. The authors' released Caffe models stride in the first 1x1 of a downsampling block:
    ``stride_in="1x1"``.
    """
    return imagenet_resnet(50, num_classes, in_chans, **options)
