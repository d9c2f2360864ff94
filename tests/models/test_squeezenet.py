"""SqueezeNet 1.0 and 1.1: parameter counts, the convolutional classifier, small inputs and torchvision compatibility."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from convlab.layers.fire import Fire
from convlab.models import create_model
from tests.helpers import count_parameters

VERSIONS = ["squeezenet1_0", "squeezenet1_1"]


@pytest.mark.parametrize("name, expected", [("squeezenet1_0", 1_248_424), ("squeezenet1_1", 1_235_496)])
def test_parameter_counts(name, expected):
    model = create_model(name)
    assert count_parameters(model) == expected


@pytest.mark.parametrize("name", VERSIONS)
def test_eight_fire_modules_and_a_convolutional_classifier(name):
    model = create_model(name, num_classes=10)
    fires = [m for m in model.modules() if isinstance(m, Fire)]
    assert len(fires) == 8  # fire2 .. fire9
    assert [f.out_channels for f in fires] == [128, 128, 256, 256, 384, 384, 512, 512]
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    final_conv = model.classifier[1]
    assert isinstance(final_conv, nn.Conv2d) and final_conv.weight.shape == (10, 512, 1, 1)
    assert isinstance(model.classifier[2], nn.ReLU) and isinstance(model.classifier[3], nn.AdaptiveAvgPool2d)


@pytest.mark.parametrize("name", VERSIONS)
def test_state_dict_and_eval_outputs_equal_torchvision(name):
    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    ours = create_model(name, num_classes=10).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in tv.state_dict().items()
    }
    assert "features.3.expand3x3.weight" in ours.state_dict() and "classifier.1.weight" in ours.state_dict()
    ours.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", VERSIONS)
@pytest.mark.parametrize("size", [28, 32])
def test_trains_at_small_inputs(name, size):
    model = create_model(name, num_classes=10).train()
    logits = model(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 10)
    F.cross_entropy(logits, torch.tensor([2, 5])).backward()
    assert model.features[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name, smallest", [("squeezenet1_0", 21), ("squeezenet1_1", 17)])
def test_smallest_input(name, smallest):
    with torch.device("meta"):
        model = create_model(name).eval()
        assert model(torch.empty(1, 3, smallest, smallest)).shape == (1, 1000)
        with pytest.raises(RuntimeError):  # the last max pool finds a 1x1 map it cannot pool 3x3
            model(torch.empty(1, 3, smallest - 1, smallest - 1))


def test_activation_in_chans_and_dropout_options():
    model = create_model("squeezenet1_1", num_classes=10, activation="leaky_relu", in_chans=1, dropout=0.3)
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    # stem + 3 per fire module + the classifier's
    assert sum(isinstance(m, nn.LeakyReLU) for m in model.modules()) == 1 + 3 * 8 + 1
    assert model.features[0].weight.shape == (64, 1, 3, 3)
    assert model.classifier[0].p == 0.3
    assert model.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 10)
