"""Receptive fields and jumps in input pixels, followed through modules and functional ops."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from convlab.analysis import stacked_receptive_field, summary

# CaffeNet effective receptive fields (notes 001): conv1 .. pool5.
CAFFENET_FIELDS = [11, 19, 51, 67, 99, 131, 163, 195]
# The same eight layers in torchvision's AlexNet layout (an nn.Sequential numbered in order).
TORCHVISION_ALEXNET_LAYERS = [f"features.{n}" for n in (0, 2, 3, 5, 6, 8, 10, 12)]


def fields(result, names):
    return [result.layer(name).receptive_field[0] for name in names]


def test_torchvision_alexnet_fields_match_caffenet():
    with torch.device("meta"):
        model = torchvision.models.alexnet()
    result = summary(model, (3, 224, 224))
    assert fields(result, TORCHVISION_ALEXNET_LAYERS) == CAFFENET_FIELDS
    assert result.layer("features.12").jump == (32, 32)  # 4 (conv1) x 2 x 2 x 2 (three pools)


def test_zoo_alexnets_fields_match_caffenet():
    caffenet = summary("alexnet_lrn")
    names = [
        f"features.{n}" for n in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")
    ]
    assert fields(caffenet, names) == CAFFENET_FIELDS
    assert caffenet.layer("features.norm1").receptive_field == (19, 19)  # LRN mixes channels, not positions

    torchvision_layout = summary("alexnet")
    assert fields(torchvision_layout, TORCHVISION_ALEXNET_LAYERS) == CAFFENET_FIELDS


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("layers", [1, 2, 3, 4])
def test_stacked_convolutions_see_1_plus_l_times_k_minus_1(layers, kernel):
    model = nn.Sequential(*[nn.Conv2d(2, 2, kernel, padding=kernel // 2) for _ in range(layers)])
    result = summary(model, (2, 32, 32))
    assert result.layers[-1].receptive_field == (1 + layers * (kernel - 1),) * 2
    assert result.layers[-1].receptive_field[0] == stacked_receptive_field(layers, kernel)
    assert result.layers[-1].jump == (1, 1)


def test_two_and_three_3x3_see_like_one_5x5_and_7x7_with_fewer_weights():
    channels = 8
    two = summary(
        nn.Sequential(
            nn.Conv2d(channels, channels, 3, bias=False), nn.Conv2d(channels, channels, 3, bias=False)
        ),
        (channels, 16, 16),
    )
    three = summary(
        nn.Sequential(*[nn.Conv2d(channels, channels, 3, bias=False) for _ in range(3)]), (channels, 16, 16)
    )
    assert two.layers[-1].receptive_field == (5, 5) and two.totals.params == 18 * channels**2  # vs 25 C^2
    assert three.layers[-1].receptive_field == (7, 7) and three.totals.params == 27 * channels**2  # vs 49 C^2


def test_dilated_3x3_sees_5x5_with_9_weights():
    result = summary(nn.Conv2d(1, 1, 3, dilation=2, bias=False), (1, 9, 9))
    row = result.layers[0]
    assert row.receptive_field == (5, 5)
    assert row.params == 9
    assert row.dilation == (2, 2)
    assert row.output_shape == (1, 5, 5)


def test_strides_multiply_the_jump():
    model = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 3))
    result = summary(model, (1, 33, 33))
    assert [row.jump for row in result.layers] == [(2, 2), (4, 4), (4, 4)]
    assert [row.receptive_field for row in result.layers] == [(3, 3), (7, 7), (15, 15)]


class TwoPaths(nn.Module):
    """An Inception-like block: a 3x3 path and a 5x5 path joined by torch.cat, then a residual +."""

    def __init__(self):
        super().__init__()
        self.small = nn.Conv2d(4, 4, 3, padding=1)
        self.large = nn.Conv2d(4, 4, 5, padding=2)
        self.merge = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return x + self.merge(torch.cat([self.small(x), self.large(x)], dim=1))


def test_where_paths_meet_the_largest_field_wins():
    result = summary(TwoPaths(), (4, 16, 16))
    assert result.layer("small").receptive_field == (3, 3)
    assert result.layer("large").receptive_field == (5, 5)
    assert result.layer("merge").receptive_field == (5, 5)  # through torch.cat, a functional op


def test_functional_pooling_inside_a_block_gets_a_row_and_moves_the_field():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            return self.conv(F.max_pool2d(x, kernel_size=3, stride=2))

    result = summary(nn.Sequential(Block()), (1, 17, 17))
    pool = result.layer("0.max_pool2d")
    assert pool.kernel == (3, 3) and pool.stride == (2, 2) and pool.params == 0
    assert pool.receptive_field == (3, 3) and pool.jump == (2, 2)
    assert result.layer("0.conv").receptive_field == (3 + 2 * 2,) * 2


def test_channels_last_permutes_keep_the_spatial_layout():
    class ConvNeXtLike(nn.Module):  # depthwise 7x7, then per-position linear layers in NHWC
        def __init__(self):
            super().__init__()
            self.depthwise = nn.Conv2d(8, 8, 7, padding=3, groups=8)
            self.norm = nn.LayerNorm(8)
            self.expand = nn.Linear(8, 32)
            self.reduce = nn.Linear(32, 8)

        def forward(self, x):
            y = self.depthwise(x).permute(0, 2, 3, 1)
            y = self.reduce(self.expand(self.norm(y)))
            return x + y.permute(0, 3, 1, 2)

    result = summary(nn.Sequential(ConvNeXtLike(), nn.Conv2d(8, 8, 3, padding=1)), (8, 14, 14))
    assert result.layer("0.expand").receptive_field == (7, 7)
    assert result.layer("0.expand").jump == (1, 1)
    assert result.layer("0.expand").macs == 14 * 14 * 8 * 32  # one linear per position (per token)
    assert result.layer("1").receptive_field == (9, 9)


def test_flatten_and_global_pooling_see_the_whole_input():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    result = summary(model, (1, 10, 10))
    assert result.layer("1").receptive_field == (3 + 7, 3 + 7)  # an 8x8 map of fields 3, jump 1
    assert result.layer("3").receptive_field == (10, 10)
    assert result.layer("3").jump is None  # no spatial layout after flatten


def test_vgg16_pool5_field_is_212():
    result = summary("vgg16")
    assert result.layer("features.30").receptive_field == (212, 212)  # the usual figure for VGG-16 pool5
    assert result.layer("features.30").jump == (32, 32)


def test_reflect_padding_adds_border_not_field():
    model = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect") for _ in range(2)])
    result = summary(model, (1, 8, 8))
    assert [row.receptive_field for row in result.layers] == [(3, 3), (5, 5)]
    assert result.layers[0].padding == (1, 1)  # the module's padding, though it convolves the F.pad output
