"""Residual blocks: parameter counts by hand, the shortcut options, and forward passes that read like Figure 2."""

import pytest
import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers.residual import BasicBlock, Bottleneck, PadChannelsShortcut, make_shortcut
from convlab.layers.se import SqueezeExcitation
from tests.helpers import count_parameters


def test_basic_block_parameters_are_two_3x3_convolutions_and_two_batch_norms():
    block = BasicBlock(64, 64)
    assert count_parameters(block) == 2 * (3 * 3 * 64 * 64) + 2 * (2 * 64) == 73_984
    assert isinstance(block.downsample, nn.Identity)  # same shape: the identity shortcut, no parameters
    assert block(torch.randn(2, 64, 8, 8)).shape == (2, 64, 8, 8)


def test_bottleneck_parameters_and_shape():
    block = Bottleneck(256, 64)  # conv2_x of ResNet-50 after its first block
    expected = 256 * 64 + 3 * 3 * 64 * 64 + 64 * 256 + 2 * (2 * 64) + 2 * 256
    assert count_parameters(block) == expected == 70_400
    assert block(torch.randn(2, 256, 8, 8)).shape == (2, 256, 8, 8)


def test_projection_shortcut_is_a_1x1_convolution_and_batch_norm_with_torchvision_keys():
    block = Bottleneck(256, 128, stride=2)  # first block of conv3_x
    assert block(torch.randn(1, 256, 16, 16)).shape == (1, 512, 8, 8)
    keys = {k for k in block.state_dict() if k.startswith("downsample.")}
    assert keys == {
        "downsample.0.weight",
        "downsample.1.weight",
        "downsample.1.bias",
        "downsample.1.running_mean",
        "downsample.1.running_var",
        "downsample.1.num_batches_tracked",
    }
    assert block.downsample[0].stride == (2, 2) and block.downsample[0].weight.shape == (512, 256, 1, 1)


def test_zero_init_block_is_the_activation_of_its_input():
    # With the last BN's scale at zero the residual branch F(x) is zero, so out = relu(0 + x).
    block = BasicBlock(16, 16)
    block.zero_init_last_bn()
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(block(x), torch.relu(x))
    bottleneck = Bottleneck(64, 16)
    bottleneck.zero_init_last_bn()
    torch.testing.assert_close(bottleneck(x.repeat(1, 4, 1, 1)), torch.relu(x.repeat(1, 4, 1, 1)))


def test_option_a_shortcut_subsamples_and_pads_channels_with_zeros():
    shortcut = PadChannelsShortcut(16, 32, stride=2)
    assert count_parameters(shortcut) == 0 and not shortcut.state_dict()
    x = torch.randn(2, 16, 8, 8)
    out = shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, 16:]) == 0


def test_option_a_block_adds_the_padded_input():
    block = BasicBlock(16, 32, stride=2, shortcut="A")
    assert count_parameters(block) == 3 * 3 * 16 * 32 + 3 * 3 * 32 * 32 + 2 * (2 * 32)  # no shortcut weights
    block.zero_init_last_bn()
    x = torch.randn(2, 16, 8, 8)
    out = block(x)
    torch.testing.assert_close(out[:, :16], torch.relu(x[:, :, ::2, ::2]))
    assert torch.count_nonzero(out[:, 16:]) == 0


def test_gradient_reaches_the_input_through_the_shortcut():
    block = BasicBlock(8, 8)
    block.zero_init_last_bn()
    x = torch.randn(1, 8, 4, 4, requires_grad=True)
    block(x).sum().backward()
    torch.testing.assert_close(x.grad, (x > 0).float())  # d relu(x)/dx: the branch contributes nothing


@pytest.mark.parametrize(("stride_in", "strides"), [("3x3", ((1, 1), (2, 2))), ("1x1", ((2, 2), (1, 1)))])
def test_stride_in_moves_the_stride_between_the_1x1_and_3x3_convolutions(stride_in, strides):
    block = Bottleneck(256, 128, stride=2, stride_in=stride_in)
    assert (block.conv1.stride, block.conv2.stride) == strides
    assert block(torch.randn(1, 256, 8, 8)).shape == (1, 512, 4, 4)


def test_se_gate_adds_its_two_1x1_convolutions():
    plain, gated = Bottleneck(256, 64), Bottleneck(256, 64, se_reduction=16)
    assert isinstance(gated.se, SqueezeExcitation) and isinstance(plain.se, nn.Identity)
    channels = 256
    se_parameters = 2 * channels * channels // 16 + channels // 16 + channels  # fc1 and fc2 with biases
    assert count_parameters(gated) - count_parameters(plain) == se_parameters == 8_464
    assert {"se.fc1.weight", "se.fc1.bias", "se.fc2.weight", "se.fc2.bias"} <= set(gated.state_dict())
    assert isinstance(BasicBlock(64, 64, se_reduction=4).se, SqueezeExcitation)


def test_activation_fills_every_slot_with_its_own_module():
    basic = BasicBlock(8, 8, activation="tanh")
    assert sum(isinstance(m, nn.Tanh) for m in basic.modules()) == 2
    assert not any(isinstance(m, nn.ReLU) for m in basic.modules())
    bottleneck = Bottleneck(32, 8, activation="prelu")
    slopes = [m for m in bottleneck.modules() if isinstance(m, nn.PReLU)]
    assert len(slopes) == 3 and len({id(m.weight) for m in slopes}) == 3  # one learned slope per layer


def test_bad_options_raise_one_clear_error():
    with pytest.raises(ConvlabError, match="shortcut 'C'"):
        make_shortcut("C", 16, 32, 2)
    with pytest.raises(ConvlabError, match="stride_in '2x2'"):
        Bottleneck(64, 16, stride_in="2x2")
    with pytest.raises(ConvlabError, match="se_reduction must be a positive integer"):
        BasicBlock(64, 64, se_reduction=0)
    with pytest.raises(ConvlabError, match="activation 'relux'"):
        BasicBlock(8, 8, activation="relux")
