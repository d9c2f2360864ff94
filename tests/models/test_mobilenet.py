"""MobileNet v1 and v2: parameter counts, width multipliers, small inputs, torchvision compatibility."""

import pytest
import torch
import torchvision
from torch import nn

from convlab.errors import ConvlabError
from convlab.models import create_model
from tests.helpers import count_parameters


def mobilenet_v1_parameters(alpha: float = 1.0, num_classes: int = 1000) -> int:
    """Howard et al. 2017, Table 1, counted by hand: each conv is followed by BN (a scale and a shift)."""
    channels = int(32 * alpha)
    total = 3 * 3 * 3 * channels + 2 * channels  # Conv / s2, 3x3x3x32
    for out_channels in [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]:
        out_channels = int(out_channels * alpha)
        total += 3 * 3 * channels + 2 * channels  # Conv dw, 3x3 per channel
        total += channels * out_channels + 2 * out_channels  # Conv 1x1
        channels = out_channels
    return total + channels * num_classes + num_classes  # FC


def test_mobilenet_v1_has_the_4_2_million_parameters_of_table_1():
    model = create_model("mobilenet_v1")
    assert count_parameters(model) == mobilenet_v1_parameters() == 4_231_976
    assert len(model.features) == 14  # the stem and 13 depthwise-separable layers


@pytest.mark.parametrize(("alpha", "millions"), [(0.75, 2.6), (0.5, 1.3), (0.25, 0.5)])
def test_mobilenet_v1_width_multiplier_matches_table_6(alpha, millions):
    model = create_model("mobilenet_v1", width_multiplier=alpha)
    assert count_parameters(model) == mobilenet_v1_parameters(alpha)
    assert round(count_parameters(model) / 1e6, 1) == millions
    assert model.fc.in_features == int(1024 * alpha)


def test_mobilenet_v1_trains_on_32x32_and_28x28():
    model = create_model("mobilenet_v1", num_classes=10, width_multiplier=0.25)
    for size in (32, 28):
        logits = model(torch.randn(2, 3, size, size))
        assert logits.shape == (2, 10)
        logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # 32x32 has shrunk to 1x1 after the five stride-2 layers
    assert model.features(torch.randn(2, 3, 32, 32)).shape == (2, 256, 1, 1)


def test_mobilenet_v1_activation_option_replaces_every_relu():
    model = create_model("mobilenet_v1", activation="tanh", in_chans=1)
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 1 + 13 * 2
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert model.features[0][0].weight.shape == (32, 1, 3, 3)


def test_mobilenet_v2_parameter_count_and_layout():
    model = create_model("mobilenet_v2")
    assert count_parameters(model) == 3_504_872
    assert len(model.features) == 19  # stem, 17 inverted residual blocks, 1x1 conv to 1280
    assert sum(isinstance(m, nn.ReLU6) for m in model.modules()) == 35
    assert sum(block.use_residual for block in model.features[1:18]) == 10


@pytest.mark.parametrize("width_mult", [1.0, 0.5])
def test_mobilenet_v2_matches_torchvision(width_mult):
    reference = torchvision.models.mobilenet_v2(weights=None, width_mult=width_mult).eval()
    for module in reference.modules():  # non-trivial batch-norm statistics, so eval mode really uses them
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    model = create_model("mobilenet_v2", width_mult=width_mult).eval()
    ours, theirs = model.state_dict(), reference.state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    model.load_state_dict(theirs, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-4)


def test_mobilenet_v2_trains_on_32x32_and_28x28():
    model = create_model("mobilenet_v2", num_classes=10, width_mult=0.35)
    assert model.features[-1].out_channels == 1280  # the last layer is not thinned (Sec. 6.1)
    for size in (32, 28):
        logits = model(torch.randn(2, 3, size, size))
        assert logits.shape == (2, 10)
        logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_mobilenet_v2_options():
    relu = create_model("mobilenet_v2", activation="relu", dropout=0.5, in_chans=1)
    assert sum(isinstance(m, nn.ReLU) for m in relu.modules()) == 35
    assert not any(isinstance(m, nn.ReLU6) for m in relu.modules())
    assert relu.classifier[0].p == 0.5
    assert relu.features[0][0].weight.shape == (32, 1, 3, 3)
    with pytest.raises(ConvlabError, match="width_mult must be a positive number.*got 0"):
        create_model("mobilenet_v2", width_mult=0)
