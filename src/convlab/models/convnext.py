"""ConvNeXt (Liu et al. 2022): a ResNet modernised step by step with the design choices of transformers."""

from __future__ import annotations

from torch import nn

from convlab.layers.convnext_block import ConvNeXtBlock, LayerNorm2d
from convlab.models._registry import Option, activation_option, register_model

# Liu et al. 2022, Section 3 (model variants): blocks per stage B and channels per stage C of ConvNeXt-T
CONVNEXT_TINY = {"depths": (3, 3, 9, 3), "dims": (96, 192, 384, 768)}

CONVNEXT_OPTIONS = {
    "activation": activation_option("gelu"),
    # 0.1 for ConvNeXt-T on ImageNet-1K (Liu et al. 2022, Appendix A.1), torchvision's default too
    "drop_path": Option(0.1, "stochastic depth rate of the last block (training only)"),
    "layer_scale": Option(1e-6, "initial value of the per-channel residual scale"),
}


class ConvNeXt(nn.Module):
    """Patchify stem (4x4 /4) -> 4 stages of ConvNeXt blocks, LN + 2x2 stride-2 downsampling between them.

    ``features`` alternates stages and downsampling layers (features.0 stem, features.1 stage 1,
    features.2 downsample, ...), the layout and key names of torchvision's ConvNeXt.
    """

    def __init__(
        self,
        depths: tuple[int, ...],
        dims: tuple[int, ...],
        num_classes: int,
        in_chans: int = 3,
        activation: str = "gelu",
        drop_path: float = 0.0,
        layer_scale: float = 1e-6,
    ) -> None:
        super().__init__()
        # "Patchify" stem: non-overlapping 4x4 patches, like a ViT's patch embedding (Section 2.2)
        stem = nn.Sequential(
            nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0], eps=1e-6)
        )
        layers: list[nn.Module] = [stem]
        total_blocks = sum(depths)
        block_index = 0
        for stage, (depth, dim) in enumerate(zip(depths, dims)):
            blocks = []
            for _ in range(depth):
                # Stochastic depth grows linearly from 0 at the first block to drop_path at the last one
                rate = drop_path * block_index / max(total_blocks - 1, 1)
                blocks.append(ConvNeXtBlock(dim, layer_scale, rate, activation))
                block_index += 1
            layers.append(nn.Sequential(*blocks))
            if stage + 1 < len(dims):
                # Separate downsampling layers, with a LayerNorm that keeps training stable (Sec. 2.6)
                downsample = nn.Conv2d(dim, dims[stage + 1], kernel_size=2, stride=2)
                layers.append(nn.Sequential(LayerNorm2d(dim, eps=1e-6), downsample))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1), nn.Linear(dims[-1], num_classes)
        )

        for module in self.modules():  # truncated normal, std 0.02, as the paper's code (and DeiT)
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


@register_model(
    family="convnext",
    year=2022,
    paper="Liu et al., A ConvNet for the 2020s (CVPR 2022)",
    input_size=(3, 224, 224),
    num_classes=1000,
    torchvision="convnext_tiny",
    options=CONVNEXT_OPTIONS,
)
def convnext_tiny(num_classes: int, in_chans: int, **options) -> ConvNeXt:
    """ConvNeXt-T: depths (3, 3, 9, 3), widths 96-768, 7x7 depthwise convs and LayerNorm, 28.6M parameters.

    The total stride is 32, so inputs must be at least 32x32.
    """
    return ConvNeXt(**CONVNEXT_TINY, num_classes=num_classes, in_chans=in_chans, **options)
