"""ResNet (He et al. 2015): the ImageNet ResNet-18/34/50/101/152, the CIFAR ResNet-20/32/44/56/110, and
the plain CIFAR networks plain-20/32/44/56 (the same layers without shortcuts, Figure 6) for the
degradation experiment: deeper plain networks train worse, even on the training set.

The ImageNet models have torchvision's state_dict keys, so its checkpoints load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from convlab.layers.activations import make_activation
from convlab.layers.residual import BasicBlock, Bottleneck, PlainBlock
from convlab.models._registry import Option, activation_option, register_model

PAPER = "He, Zhang, Ren, Sun, Deep Residual Learning for Image Recognition (CVPR 2016)"

# He et al. 2015, Table 1: the block of each depth and how many of them conv2_x .. conv5_x stack.
IMAGENET_BLOCKS: dict[int, tuple[type[nn.Module], list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}
IMAGENET_WIDTHS = [64, 128, 256, 512]  # Table 1: 3x3 widths of conv2_x .. conv5_x
IMAGENET_STRIDES = [1, 2, 2, 2]  # conv2_x follows the max pool; each later stage halves the map

# He et al. 2015, section 4.2: depth 6n + 2 on CIFAR-10, n blocks per stage; depth -> n.
CIFAR_BLOCKS_PER_STAGE: dict[int, int] = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}
CIFAR_WIDTHS = [16, 32, 64]  # "the numbers of filters are {16, 32, 64} respectively"
CIFAR_STRIDES = [1, 2, 2]  # feature maps 32x32, 16x16, 8x8
CIFAR_INPUT = (3, 32, 32)  # CIFAR-10 images, 10 classes

# The options every ResNet entry point takes, with their defaults (create_model's table).
ZERO_INIT_RESIDUAL = Option(False, "start each block's last batch norm at zero (Goyal et al. 2017)")
BASIC_RESNET_OPTIONS = {"activation": activation_option("relu"), "zero_init_residual": ZERO_INIT_RESIDUAL}
BOTTLENECK_RESNET_OPTIONS = {
    "activation": activation_option("relu"),
    "stride_in": Option(
        "3x3", 'which conv of a downsampling bottleneck strides: "3x3" (torchvision) or "1x1" (paper)'
    ),
    "zero_init_residual": ZERO_INIT_RESIDUAL,
}
CIFAR_RESNET_OPTIONS = {
    "activation": activation_option("relu"),
    "shortcut": Option(
        "A", 'shortcut where a stage widens: "A" zero padding (the paper\'s CIFAR choice) or "B" 1x1'
    ),
    "zero_init_residual": ZERO_INIT_RESIDUAL,
}
# A plain network has no shortcut to choose and no residual branch to start at zero.
PLAIN_OPTIONS = {"activation": activation_option("relu")}


def make_stages(
    block: type[nn.Module],
    in_channels: int,
    widths: list[int],
    blocks_per_stage: list[int],
    strides: list[int],
    **block_options,
) -> list[nn.Sequential]:
    """One stage of residual blocks per width; each stage's first block strides and changes the channels."""
    stages, channels = [], in_channels
    for width, num_blocks, stride in zip(widths, blocks_per_stage, strides, strict=True):
        blocks = [block(channels, width, stride, **block_options)]
        channels = width * block.expansion
        blocks += [block(channels, width, 1, **block_options) for _ in range(num_blocks - 1)]
        stages.append(nn.Sequential(*blocks))
    return stages


def init_resnet_weights(model: nn.Module, zero_init_residual: bool) -> None:
    """He initialisation of convolutions (fan_out, as torchvision), BN at (1, 0), optionally zero residuals."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    if zero_init_residual:  # every block starts as act(shortcut(x)): helps large batches (Goyal et al.)
        for module in model.modules():
            if isinstance(module, (BasicBlock, Bottleneck)):
                module.zero_init_last_bn()


class ResNet(nn.Module):
    """ImageNet ResNet: 7x7/2 conv, 3x3/2 max pool, four residual stages, global average pool, fc.

    ``block_options`` go to every block (activation, stride_in, se_reduction, shortcut).
    """

    def __init__(
        self,
        block: type[nn.Module],
        blocks_per_stage: list[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        activation: str = "relu",
        zero_init_residual: bool = False,
        **block_options,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act = make_activation(activation)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1, self.layer2, self.layer3, self.layer4 = make_stages(  # conv2_x .. conv5_x
            block,
            64,
            IMAGENET_WIDTHS,
            blocks_per_stage,
            IMAGENET_STRIDES,
            activation=activation,
            **block_options,
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # any input size from 32x32 up ends in one vector
        self.fc = nn.Linear(IMAGENET_WIDTHS[-1] * block.expansion, num_classes)
        init_resnet_weights(self, zero_init_residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class CifarResNet(nn.Module):
    """CIFAR ResNet (section 4.2): 3x3 conv 16, three stages of n basic blocks (16/32/64), average pool, fc.

    ``block`` PlainBlock gives the plain network of the same depth (no shortcuts).
    """

    def __init__(
        self,
        blocks_per_stage: int,
        num_classes: int = 10,
        in_chans: int = 3,
        *,
        activation: str = "relu",
        shortcut: str = "A",
        zero_init_residual: bool = False,
        block: type[nn.Module] = BasicBlock,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, CIFAR_WIDTHS[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(CIFAR_WIDTHS[0])
        self.act = make_activation(activation)
        self.layer1, self.layer2, self.layer3 = make_stages(
            block,
            CIFAR_WIDTHS[0],
            CIFAR_WIDTHS,
            [blocks_per_stage] * len(CIFAR_WIDTHS),
            CIFAR_STRIDES,
            activation=activation,
            shortcut=shortcut,
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(CIFAR_WIDTHS[-1], num_classes)
        init_resnet_weights(self, zero_init_residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def imagenet_resnet(depth: int, num_classes: int, in_chans: int, **options) -> ResNet:
    """The ImageNet ResNet of ``depth`` layers (Table 1's column)."""
    block, blocks_per_stage = IMAGENET_BLOCKS[depth]
    return ResNet(block, blocks_per_stage, num_classes, in_chans, **options)


def cifar_resnet(depth: int, num_classes: int, in_chans: int, **options) -> CifarResNet:
    """The CIFAR ResNet of ``depth`` = 6n + 2 layers (section 4.2)."""
    return CifarResNet(CIFAR_BLOCKS_PER_STAGE[depth], num_classes, in_chans, **options)


def plain_cifar_net(depth: int, num_classes: int, in_chans: int, **options) -> CifarResNet:
    """The plain network of ``depth`` = 6n + 2 layers: the CIFAR ResNet's layers without its shortcuts."""
    return CifarResNet(CIFAR_BLOCKS_PER_STAGE[depth], num_classes, in_chans, block=PlainBlock, **options)


def _imagenet(torchvision: str, options: dict[str, Option]):
    return register_model(family="resnet", year=2015, paper=PAPER, torchvision=torchvision, options=options)


def _cifar(options: dict[str, Option] = CIFAR_RESNET_OPTIONS):
    return register_model(
        family="resnet", year=2015, paper=PAPER, input_size=CIFAR_INPUT, num_classes=10, options=options
    )


@_imagenet("resnet18", BASIC_RESNET_OPTIONS)
def resnet18(num_classes: int, in_chans: int, **options) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2], 11.7M parameters, 1.8 G multiply-adds at 224."""
    return imagenet_resnet(18, num_classes, in_chans, **options)


@_imagenet("resnet34", BASIC_RESNET_OPTIONS)
def resnet34(num_classes: int, in_chans: int, **options) -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3], 21.8M parameters, 3.6 G multiply-adds at 224."""
    return imagenet_resnet(34, num_classes, in_chans, **options)


@_imagenet("resnet50", BOTTLENECK_RESNET_OPTIONS)
def resnet50(num_classes: int, in_chans: int, **options) -> ResNet:
    """ResNet-50: bottlenecks [3, 4, 6, 3], 25.6M parameters, 4.1 G multiply-adds at 224 (3.8 G as v1)."""
    return imagenet_resnet(50, num_classes, in_chans, **options)


@_imagenet("resnet101", BOTTLENECK_RESNET_OPTIONS)
def resnet101(num_classes: int, in_chans: int, **options) -> ResNet:
    """ResNet-101: bottlenecks [3, 4, 23, 3], 44.5M parameters, 7.8 G multiply-adds at 224 (7.6 G as v1)."""
    return imagenet_resnet(101, num_classes, in_chans, **options)


@_imagenet("resnet152", BOTTLENECK_RESNET_OPTIONS)
def resnet152(num_classes: int, in_chans: int, **options) -> ResNet:
    """ResNet-152: bottlenecks [3, 8, 36, 3], 60.2M parameters, 11.5 G multiply-adds at 224 (11.3 G as v1)."""
    return imagenet_resnet(152, num_classes, in_chans, **options)


@_cifar()
def resnet20(num_classes: int, in_chans: int, **options) -> CifarResNet:
    """CIFAR ResNet-20: 3 basic blocks per stage at widths 16/32/64, 0.27M parameters."""
    return cifar_resnet(20, num_classes, in_chans, **options)


@_cifar()
def resnet32(num_classes: int, in_chans: int, **options) -> CifarResNet:
    """CIFAR ResNet-32: 5 basic blocks per stage at widths 16/32/64, 0.46M parameters."""
    return cifar_resnet(32, num_classes, in_chans, **options)


@_cifar()
def resnet44(num_classes: int, in_chans: int, **options) -> CifarResNet:
    """CIFAR ResNet-44: 7 basic blocks per stage at widths 16/32/64, 0.66M parameters."""
    return cifar_resnet(44, num_classes, in_chans, **options)


@_cifar()
def resnet56(num_classes: int, in_chans: int, **options) -> CifarResNet:
    """CIFAR ResNet-56: 9 basic blocks per stage at widths 16/32/64, 0.85M parameters."""
    return cifar_resnet(56, num_classes, in_chans, **options)


@_cifar()
def resnet110(num_classes: int, in_chans: int, **options) -> CifarResNet:
    """CIFAR ResNet-110: 18 basic blocks per stage at widths 16/32/64, 1.7M parameters."""
    return cifar_resnet(110, num_classes, in_chans, **options)


@_cifar(PLAIN_OPTIONS)
def plain20(num_classes: int, in_chans: int, **options) -> CifarResNet:
    """Plain-20: ResNet-20 without shortcuts (Figure 6), 0.27M parameters, as ResNet-20."""
    return plain_cifar_net(20, num_classes, in_chans, **options)


@_cifar(PLAIN_OPTIONS)
def plain32(num_classes: int, in_chans: int, **options) -> CifarResNet:
    """Plain-32: ResNet-32 without shortcuts (Figure 6), 0.46M parameters, as ResNet-32."""
    return plain_cifar_net(32, num_classes, in_chans, **options)


@_cifar(PLAIN_OPTIONS)
def plain44(num_classes: int, in_chans: int, **options) -> CifarResNet:
    """Plain-44: ResNet-44 without shortcuts (Figure 6), 0.66M parameters, as ResNet-44."""
    return plain_cifar_net(44, num_classes, in_chans, **options)


@_cifar(PLAIN_OPTIONS)
def plain56(num_classes: int, in_chans: int, **options) -> CifarResNet:
    """Plain-56: ResNet-56 without shortcuts (Figure 6), 0.85M parameters, as ResNet-56."""
    return plain_cifar_net(56, num_classes, in_chans, **options)
