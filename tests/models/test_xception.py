"""Xception: Keras's parameter count, the flows' shapes at 299x299, small inputs and the activation option."""

import pytest
import torch
from torch import nn

from convlab.models import create_model
from convlab.models.xception import SeparableConvBN, XceptionBlock
from tests.helpers import count_parameters


def test_xception_has_the_parameters_of_keras_xception():
    with torch.device("meta"):
        model = create_model("xception")
    # Keras counts batch norm's moving mean and variance as (non-trainable) parameters; torch keeps buffers
    moving_statistics = sum(
        buffer.numel() for name, buffer in model.named_buffers() if name.endswith(("_mean", "_var"))
    )
    assert count_parameters(model) == 22_855_952  # Keras: "Trainable params: 22,855,952"
    assert count_parameters(model) + moving_statistics == 22_910_480  # Keras: "Total params: 22,910,480"


def test_xception_is_36_convolutions_34_of_them_separable():
    with torch.device("meta"):
        model = create_model("xception")
    separable = [m for m in model.modules() if isinstance(m, SeparableConvBN)]
    shortcuts = [m for name, m in model.named_modules() if name.endswith("shortcut.0")]
    assert len(separable) == 34
    assert 2 + len(separable) == 36  # plus the two stem convolutions (Chollet 2017, Sec. 3)
    assert len(shortcuts) == 4  # 1x1 stride-2 convolutions on the four pooling blocks
    assert len(model.middle_flow) == 8
    # no activation between the depthwise and pointwise steps, no bias before the batch norm
    first = separable[0][0]  # 64 channels from the stem -> 128
    assert list(first.depthwise) == [first.depthwise[0]] and list(first.pointwise) == [first.pointwise[0]]
    assert first.depthwise[0].groups == 64 and first.depthwise[0].bias is None
    assert first.pointwise[0].weight.shape == (128, 64, 1, 1) and first.pointwise[0].bias is None


def test_xception_flow_shapes_at_299():
    with torch.device("meta"):  # shapes only: no weights, no arithmetic
        model = create_model("xception")
        x = torch.empty(1, 3, 299, 299)
        entry = model.entry_flow(x)
        middle = model.middle_flow(entry)
        exit_ = model.exit_flow(middle)
        logits = model(x)
    # Chollet 2017, Figure 5: 19x19x728 feature maps through the middle flow, 2048 channels at the end
    assert entry.shape == middle.shape == (1, 728, 19, 19)
    assert exit_.shape == (1, 2048, 10, 10)
    assert logits.shape == (1, 1000)


def test_xception_trains_on_32x32_and_runs_down_to_7x7():
    model = create_model("xception", num_classes=10)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 7, 7)).shape == (1, 10)  # the unpadded stem: 7 -> 3 -> 1
        with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
            model(torch.randn(1, 3, 6, 6))


def test_residual_blocks_add_their_unactivated_input():
    block = XceptionBlock(728, separable=[728, 728, 728], pool=False, activation="relu").eval()  # middle flow
    x = torch.randn(1, 728, 5, 5)
    kept = x.clone()
    with torch.no_grad():
        y = block(x)
        torch.testing.assert_close(y, block.residual(kept) + kept)
    assert torch.equal(x, kept)  # the block's first ReLU did not overwrite the shortcut's input


def test_xception_activation_option():
    model = create_model("xception", activation="elu", in_chans=1, num_classes=10)
    # two in the stem, one before each separable conv except the first, two after the exit's convs
    assert sum(isinstance(m, nn.ELU) for m in model.modules()) == 2 + (32 - 1) + 2
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert model.entry_flow[0][0].weight.shape == (32, 1, 3, 3)
    assert model.fc.out_features == 10
