"""Convolution arithmetic of the notes (002, 003, 000): output sizes, padding, dilation, parameters."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convlab.analysis import DoesNotFitError, conv_arithmetic, stacked_receptive_field, summary
from convlab.errors import ConvlabError
from tests.helpers import count_parameters


@pytest.mark.parametrize(("stride", "output"), [(1, 5), (2, 3)])
def test_7x7_input_3x3_kernel(stride, output):
    result = conv_arithmetic(7, 3, stride=stride)
    assert result.output_size == output
    assert result.fits
    assert result.formula == f"(7 - 3 + 2*0)/{stride} + 1 = {output}"


def test_stride_3_does_not_fit_and_says_what_would():
    with pytest.raises(DoesNotFitError) as caught:
        conv_arithmetic(7, 3, stride=3)
    message = str(caught.value)
    assert message.startswith("(7 - 3 + 2*0)/3 + 1 = 2.33: does not fit")
    assert "padding 1 gives (7 - 3 + 2*1)/3 + 1 = 3" in message
    assert "stride 2 gives (7 - 3 + 2*0)/2 + 1 = 3" in message
    assert "stride 4 gives (7 - 3 + 2*0)/4 + 1 = 2" in message
    assert isinstance(caught.value, ConvlabError)


def test_inexact_arithmetic_floors_like_pytorch():
    result = conv_arithmetic(7, 3, stride=3, exact=False)
    assert not result.fits
    assert float(result.exact_output) == pytest.approx(2.333, abs=0.001)
    assert result.output_size == 2
    assert F.conv2d(torch.zeros(1, 1, 7, 7), torch.zeros(1, 1, 3, 3), stride=3).shape[-1] == 2


def test_padding_1_keeps_7x7():
    result = conv_arithmetic(7, 3, stride=1, padding=1)
    assert result.output_size == 7
    assert not any("same-size padding" in line for line in result.explain())  # (K - 1)/2 = 1 already


def test_32x32x3_ten_5x5_filters_stride_1_pad_2():
    result = conv_arithmetic(32, 5, stride=1, padding=2, in_channels=3, out_channels=10)
    assert result.output_size == 32
    assert result.weights_per_filter + 1 == 76  # 5*5*3 + 1: a filter spans the whole input depth
    assert result.params == 760  # not 260: notes 002 forget the depth
    assert "parameters: (5*5*3 + 1)*10 = 760" in result.explain()
    assert "output volume: 32x32x10" in result.explain()
    conv = nn.Conv2d(3, 10, 5, stride=1, padding=2)
    assert count_parameters(conv) == 760
    assert conv(torch.zeros(1, 3, 32, 32)).shape == (1, 10, 32, 32)


def test_dilation_2_spans_5_with_9_weights():
    result = conv_arithmetic(7, 3, dilation=2, in_channels=1, out_channels=1)
    assert result.kernel_span == result.receptive_field == 5
    assert result.weights_per_filter == 9
    assert result.output_size == 3


@pytest.mark.parametrize(
    ("layers", "kernel", "field"), [(1, 3, 3), (2, 3, 5), (3, 3, 7), (4, 3, 9), (2, 5, 9)]
)
def test_stacked_receptive_field(layers, kernel, field):
    assert stacked_receptive_field(layers, kernel) == field


def test_kernel_larger_than_padded_input_is_an_error():
    with pytest.raises(ConvlabError, match="padded input must be at least 5 wide"):
        conv_arithmetic(3, 5)


@pytest.mark.parametrize(("name", "value"), [("stride", 0), ("padding", -1), ("dilation", 0)])
def test_bad_arguments_name_the_value(name, value):
    with pytest.raises(ConvlabError, match=f"{name} must be an integer"):
        conv_arithmetic(7, 3, **{name: value})


@pytest.mark.parametrize(
    ("grid", "pooled"),
    [
        ([[1, 2, 3, 4], [5, 6, 7, 8], [4, 3, 2, 1], [0, 1, 2, 3]], [[6, 8], [4, 3]]),  # notes 000
        ([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], [[6, 8], [3, 4]]),  # notes 002
    ],
)
def test_max_pooling_2x2_stride_2_has_no_parameters(grid, pooled):
    x = torch.tensor(grid, dtype=torch.float32).view(1, 1, 4, 4)
    assert F.max_pool2d(x, 2, 2).view(2, 2).tolist() == pooled
    result = summary(nn.MaxPool2d(2, 2), (1, 4, 4))
    assert result.totals.params == 0
    assert result.layers[0].output_shape == (1, 2, 2)
    assert conv_arithmetic(4, 2, stride=2).output_size == 2
