"""The multi-branch and dense blocks: output widths are the sums the papers give, sizes as designed."""

import pytest
import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers.dense import DenseBlock, DenseLayer, Transition
from convlab.layers.fire import Fire
from convlab.layers.inception import (
    InceptionA,
    InceptionAux,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
    InceptionModule,
    InceptionV3Aux,
    basic_conv,
    imagenet_to_inception_input,
)
from tests.helpers import count_parameters


def test_basic_conv_is_bias_free_conv_bn_relu_with_torchvision_names():
    unit = basic_conv(3, 8, 3)
    assert list(unit.state_dict()) == [
        "conv.weight",
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
    ]
    assert unit.bn.eps == 0.001 and isinstance(unit.relu, nn.ReLU)
    assert unit(torch.randn(1, 3, 9, 9)).shape == (1, 8, 9, 9)  # "same" padding by default


def test_inception_3a_concatenates_its_four_branches():
    # GoogLeNet inception (3a), Szegedy et al. 2014, Table 1: 64 + 128 + 32 + 32 = 256 channels at 28x28
    module = InceptionModule(192, 64, 96, 128, 16, 32, 32)
    assert module.out_channels == 256
    assert module(torch.randn(2, 192, 28, 28)).shape == (2, 256, 28, 28)
    assert module.branch3[1].conv.kernel_size == (3, 3)  # torchvision's layout by default


def test_inception_paper_5x5_branch_keeps_the_size():
    module = InceptionModule(192, 64, 96, 128, 16, 32, 32, branch3_kernel=5)
    assert module.branch3[1].conv.weight.shape == (32, 16, 5, 5)
    assert module(torch.randn(1, 192, 7, 7)).shape == (1, 256, 7, 7)
    with pytest.raises(ConvlabError, match="branch3_kernel"):
        InceptionModule(192, 64, 96, 128, 16, 32, 32, branch3_kernel=7)


@pytest.mark.parametrize("grid", [14, 2])
def test_googlenet_aux_head_gives_class_scores_from_any_grid(grid):
    head = InceptionAux(512, num_classes=10).eval()
    assert head(torch.randn(2, 512, grid, grid)).shape == (2, 10)
    assert head.fc1.in_features == 128 * 4 * 4


@pytest.mark.parametrize(
    "block_class, options, in_channels, size, out_channels, out_size",
    [
        (InceptionA, {"pool_features": 32}, 192, 35, 64 + 64 + 96 + 32, 35),
        (InceptionB, {}, 288, 35, 384 + 96 + 288, 17),  # grid reduction
        (InceptionC, {"channels_7x7": 128}, 768, 17, 4 * 192, 17),
        (InceptionD, {}, 768, 17, 320 + 192 + 768, 8),  # grid reduction
        (InceptionE, {}, 1280, 8, 320 + 768 + 768 + 192, 8),
    ],
    ids=["A", "B", "C", "D", "E"],
)
def test_inception_v3_blocks_widths_and_grids(
    block_class, options, in_channels, size, out_channels, out_size
):
    # Szegedy et al. 2015, Table 1: 35x35x288 -> 17x17x768 -> 8x8x1280 -> 8x8x2048 (shapes only: meta device)
    with torch.device("meta"):
        block = block_class(in_channels, **options)
        out = block(torch.empty(1, in_channels, size, size))
    assert block.out_channels == out_channels
    assert out.shape == (1, out_channels, out_size, out_size)


def test_inception_c_factorises_7x7_into_1x7_and_7x1():
    block = InceptionC(768, channels_7x7=128)
    assert block.branch7x7_2.conv.kernel_size == (1, 7) and block.branch7x7_3.conv.kernel_size == (7, 1)
    # a 1x7 + 7x1 pair costs 2 * 7 = 14 weights per channel pair where a 7x7 costs 49
    assert block.branch7x7_2.conv.weight.numel() == 128 * 128 * 7


@pytest.mark.parametrize("grid", [17, 3])
def test_inception_v3_aux_head_on_the_design_grid_and_below(grid):
    head = InceptionV3Aux(768, num_classes=10).eval()
    assert head(torch.randn(2, 768, grid, grid)).shape == (2, 10)


def test_fire_module_outputs_both_expands():
    # SqueezeNet fire2, Iandola et al. 2016, Table 1: squeeze 16, expand 64 + 64
    fire = Fire(96, squeeze=16, expand1x1=64, expand3x3=64)
    assert fire.out_channels == 128
    assert fire(torch.randn(2, 96, 55, 55)).shape == (2, 128, 55, 55)
    # squeeze 96*16+16, expand1x1 16*64+64, expand3x3 16*9*64+64
    assert count_parameters(fire) == 1_552 + 1_088 + 9_280 == 11_920


def test_dense_layer_adds_growth_rate_maps_through_a_4k_bottleneck():
    layer = DenseLayer(64, growth_rate=32, bn_size=4)
    assert layer.conv1.weight.shape == (128, 64, 1, 1)
    assert layer(torch.randn(2, 64, 8, 8)).shape == (2, 32, 8, 8)


def test_dense_block_concatenates_every_layer_output():
    block = DenseBlock(num_layers=6, in_channels=64, growth_rate=32)
    assert block.out_channels == 64 + 6 * 32 == 256
    assert block.denselayer6.norm1.num_features == 64 + 5 * 32
    x = torch.randn(2, 64, 8, 8)
    out = block(x)
    assert out.shape == (2, 256, 8, 8)
    assert torch.equal(out[:, :64], x)  # the block's input passes through unchanged


def test_transition_compresses_and_halves_the_grid():
    transition = Transition(256, 128)
    assert transition(torch.randn(2, 256, 8, 8)).shape == (2, 128, 4, 4)
    assert list(dict(transition.named_children())) == ["norm", "relu", "conv", "pool"]


def test_imagenet_to_inception_input_maps_pixels_to_minus_one_one():
    pixels = torch.rand(2, 3, 4, 4)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = imagenet_to_inception_input((pixels - mean) / std)
    torch.testing.assert_close(out, pixels * 2 - 1)
