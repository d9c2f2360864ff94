"""ConvNeXt-T: parameter count, torchvision compatibility, smallest input, stochastic depth, options."""

import pytest
import torch
import torchvision
from torch import nn

from convlab.models import create_model
from tests.helpers import count_parameters


def test_convnext_tiny_has_torchvisions_28_6_million_parameters():
    with torch.device("meta"):
        model = create_model("convnext_tiny")
    assert count_parameters(model) == 28_589_128
    stages = [model.features[i] for i in (1, 3, 5, 7)]
    assert [len(stage) for stage in stages] == [3, 3, 9, 3]  # Liu et al. 2022: B = (3, 3, 9, 3)
    assert [stage[0].block[0].in_channels for stage in stages] == [96, 192, 384, 768]
    assert model.features[1][0].block[0].kernel_size == (7, 7)


def test_convnext_tiny_matches_torchvision():
    reference = torchvision.models.convnext_tiny(weights=None).eval()
    model = create_model("convnext_tiny").eval()
    ours, theirs = model.state_dict(), reference.state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert "features.1.0.layer_scale" in ours and "classifier.2.weight" in ours
    model.load_state_dict(theirs, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-4)


def test_convnext_tiny_trains_on_32x32_its_smallest_input():
    model = create_model("convnext_tiny", num_classes=10)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # Total stride 32: at 28x28 the last 2x2 stride-2 downsampling finds a 1x1 map and fails
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
        model(torch.randn(2, 3, 28, 28))


def test_stochastic_depth_grows_linearly_and_is_identity_in_eval():
    model = create_model("convnext_tiny", num_classes=10, drop_path=0.5).eval()
    rates = [block.stochastic_depth.p for stage in (1, 3, 5, 7) for block in model.features[stage]]
    assert len(rates) == 18
    assert rates[0] == 0.0 and rates[-1] == 0.5
    assert rates[9] == pytest.approx(0.5 * 9 / 17)
    with torch.device("meta"):
        assert create_model("convnext_tiny").features[7][2].stochastic_depth.p == 0.1  # paper's default for T
    plain = create_model("convnext_tiny", num_classes=10, drop_path=0.0).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))


def test_convnext_options():
    model = create_model("convnext_tiny", activation="relu", layer_scale=0.5, in_chans=1)
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 18  # one activation per block
    assert not any(isinstance(m, nn.GELU) for m in model.modules())
    assert torch.all(model.features[1][0].layer_scale == 0.5)
    assert model.features[0][0].weight.shape == (96, 1, 4, 4)
