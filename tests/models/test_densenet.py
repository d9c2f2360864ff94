"""DenseNet-121/169/201: parameter counts, channel growth, small inputs, options and torchvision compatibility."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from convlab.errors import ConvlabError
from convlab.models import create_model
from tests.helpers import count_parameters, randomise_batch_norms


@pytest.mark.parametrize(
    "name, expected", [("densenet121", 7_978_856), ("densenet169", 14_149_480), ("densenet201", 20_013_928)]
)
def test_parameter_counts(name, expected):
    with torch.device("meta"):
        model = create_model(name)
    assert count_parameters(model) == expected


def test_densenet121_channels_grow_by_k_and_halve_at_transitions():
    with torch.device("meta"):
        features = create_model("densenet121").features
    # Stem 2k = 64; block i adds layers_i * 32; each transition keeps floor(0.5 * channels).
    assert features.conv0.out_channels == 64
    assert features.denseblock1.out_channels == 64 + 6 * 32 == 256
    assert features.transition1.conv.out_channels == 128
    assert features.denseblock2.out_channels == 128 + 12 * 32 == 512
    assert features.transition2.conv.out_channels == 256
    assert features.denseblock3.out_channels == 256 + 24 * 32 == 1024
    assert features.transition3.conv.out_channels == 512
    assert features.denseblock4.out_channels == 512 + 16 * 32 == 1024
    assert features.norm5.num_features == 1024
    # each layer's 1x1 bottleneck is 4k = 128 wide and sees all maps before it
    assert features.denseblock3.denselayer24.conv1.weight.shape == (128, 256 + 23 * 32, 1, 1)
    assert features.denseblock3.denselayer24.conv2.weight.shape == (32, 128, 3, 3)


def test_default_input_gives_1000_logits():
    with torch.device("meta"):
        assert create_model("densenet121").eval()(torch.empty(2, 3, 224, 224)).shape == (2, 1000)


@pytest.mark.parametrize("name, size", [("densenet121", 64), ("densenet169", 32), ("densenet201", 32)])
def test_state_dict_and_eval_outputs_equal_torchvision(name, size):
    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    randomise_batch_norms(tv)
    ours = create_model(name, num_classes=10).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in tv.state_dict().items()
    }
    ours.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), atol=1e-5, rtol=1e-4)


def test_trains_at_32_and_the_smallest_input_is_29():
    model = create_model("densenet121", num_classes=10).train()
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    F.cross_entropy(logits, torch.tensor([0, 9])).backward()
    assert model.features.conv0.weight.grad.abs().sum() > 0
    with torch.device("meta"):
        model = create_model("densenet121").eval()
        assert model(torch.empty(1, 3, 29, 29)).shape == (1, 1000)
        with pytest.raises(RuntimeError):  # at 28x28 the third transition pools a 1x1 map to nothing
            model(torch.empty(1, 3, 28, 28))


def test_activation_option_reaches_every_slot():
    with torch.device("meta"):
        model = create_model("densenet121", activation="elu")
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    # stem + 2 per dense layer (6 + 12 + 24 + 16 = 58) + 3 transitions + the one after norm5
    assert sum(isinstance(m, nn.ELU) for m in model.modules()) == 1 + 2 * 58 + 3 + 1


def test_growth_rate_compression_dropout_and_in_chans_options():
    with torch.device("meta"):
        model = create_model("densenet121", growth_rate=12, compression=1.0, dropout=0.2, in_chans=1)
    assert model.features.conv0.weight.shape == (24, 1, 7, 7)  # 2k stem
    assert model.features.denseblock1.denselayer1.conv2.out_channels == 12
    assert model.features.transition1.conv.out_channels == 24 + 6 * 12  # no compression
    assert model.features.denseblock1.denselayer1.dropout == 0.2


def test_bad_options_raise_one_line_errors():
    with pytest.raises(ConvlabError, match="compression"):
        create_model("densenet121", compression=0.0)
    with pytest.raises(ConvlabError, match="growth_rate"):
        create_model("densenet121", growth_rate=0)
    with pytest.raises(ConvlabError, match="activation"):
        create_model("densenet121", activation="swishy")
