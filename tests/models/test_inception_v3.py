"""Inception v3: parameter counts, grid sizes of Table 1, the auxiliary head and torchvision compatibility."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from convlab.errors import ConvlabError
from convlab.models import create_model
from tests.helpers import count_parameters, randomise_batch_norms


@pytest.mark.parametrize("aux_logits, expected", [(True, 27_161_264), (False, 23_834_568)])
def test_parameter_counts_equal_torchvision(aux_logits, expected):
    with torch.device("meta"):
        ours = create_model("inception_v3", aux_logits=aux_logits)
        tv = torchvision.models.inception_v3(weights=None, aux_logits=aux_logits, init_weights=False)
    assert count_parameters(ours) == count_parameters(tv) == expected


def test_grids_of_table1_at_299():
    # Szegedy et al. 2015, Table 1: 35x35x288 into the grid reduction, 17x17x768 into the next one,
    # 8x8x2048 into the final pooling.
    with torch.device("meta"):
        model = create_model("inception_v3").eval()
        grids = {}
        for name in ("Mixed_5d", "Mixed_6e", "Mixed_7c"):
            model.get_submodule(name).register_forward_hook(
                lambda m, i, out, name=name: grids.setdefault(name, out)
            )
        logits = model(torch.empty(2, 3, 299, 299))
    assert logits.shape == (2, 1000)
    assert grids["Mixed_5d"].shape == (2, 288, 35, 35)
    assert grids["Mixed_6e"].shape == (2, 768, 17, 17)
    assert grids["Mixed_7c"].shape == (2, 2048, 8, 8)


def test_smallest_input_is_75():
    with torch.device("meta"):
        model = create_model("inception_v3").eval()
        assert model(torch.empty(1, 3, 75, 75)).shape == (1, 1000)
        with pytest.raises(RuntimeError):  # Mixed_7a's valid 3x3 convolutions meet a 2x2 grid
            model(torch.empty(1, 3, 74, 74))


@pytest.fixture(scope="module")
def torchvision_pair():
    torch.manual_seed(0)
    tv = torchvision.models.inception_v3(weights=None, num_classes=10, aux_logits=True, init_weights=False)
    randomise_batch_norms(tv)
    ours = create_model("inception_v3", num_classes=10)
    ours.load_state_dict(tv.state_dict(), strict=True)
    return ours.eval(), tv.eval()


def test_state_dict_keys_and_shapes_equal_torchvision(torchvision_pair):
    ours, tv = torchvision_pair
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in tv.state_dict().items()
    }
    for key in (
        "Conv2d_1a_3x3.conv.weight",
        "Mixed_5b.branch1x1.conv.weight",
        "AuxLogits.conv0.conv.weight",
        "AuxLogits.fc.weight",
        "fc.weight",
    ):
        assert key in ours.state_dict()


def test_eval_outputs_equal_torchvision_at_75(torchvision_pair):
    ours, tv = torchvision_pair
    x = torch.randn(2, 3, 75, 75)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), atol=1e-5, rtol=1e-4)


def test_aux_head_equals_torchvision_on_the_17x17_grid(torchvision_pair):
    ours, tv = torchvision_pair
    grid = torch.randn(2, 768, 17, 17)  # Mixed_6e's output at 299x299 input
    with torch.no_grad():
        torch.testing.assert_close(ours.AuxLogits(grid), tv.AuxLogits(grid), atol=1e-5, rtol=1e-4)


def test_trains_at_75_with_the_auxiliary_loss():
    model = create_model("inception_v3", num_classes=10).train()
    images, labels = torch.randn(2, 3, 75, 75), torch.tensor([1, 8])
    outputs = model(images)
    assert isinstance(outputs, tuple) and len(outputs) == 2
    logits, aux = outputs
    assert logits.shape == aux.shape == (2, 10)
    (F.cross_entropy(logits, labels) + 0.3 * F.cross_entropy(aux, labels)).backward()
    assert model.Conv2d_1a_3x3.conv.weight.grad.abs().sum() > 0
    assert model.AuxLogits.fc.weight.grad.abs().sum() > 0


def test_eval_returns_logits_only_and_never_runs_the_aux_head(torchvision_pair):
    model, _ = torchvision_pair
    calls = []
    handle = model.AuxLogits.register_forward_hook(lambda *args: calls.append("aux"))
    try:
        out = model(torch.randn(1, 3, 75, 75))
    finally:
        handle.remove()
    assert isinstance(out, torch.Tensor) and out.shape == (1, 10)
    assert calls == []


def test_aux_logits_false_and_activation_options():
    model = create_model("inception_v3", num_classes=10, aux_logits=False, activation="tanh", in_chans=1)
    assert model.AuxLogits is None and not any(k.startswith("AuxLogits") for k in model.state_dict())
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    # one tanh per BasicConv2d: stem 5 + A 3x7 + B 4 + C 4x10 + D 6 + E 2x9 = 94
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 94
    assert model.Conv2d_1a_3x3.conv.weight.shape == (32, 1, 3, 3)
    out = model.train()(torch.randn(2, 1, 75, 75))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)


def test_transform_input_equals_torchvision(torchvision_pair):
    ours, tv = torchvision_pair
    with torch.device("meta"):
        assert create_model("inception_v3", transform_input=True).transform_input is True
    x = torch.randn(1, 3, 75, 75)
    ours.transform_input = tv.transform_input = True  # the option is read at every forward
    try:
        with torch.no_grad():
            torch.testing.assert_close(ours(x), tv(x), atol=1e-5, rtol=1e-4)
    finally:
        ours.transform_input = tv.transform_input = False


def test_bad_options_raise_one_line_errors():
    with pytest.raises(ConvlabError, match="transform_input"):
        create_model("inception_v3", in_chans=4, transform_input=True)
    with pytest.raises(ConvlabError, match="dropout"):
        create_model("inception_v3", dropout=-0.1)
