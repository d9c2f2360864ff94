"""GoogLeNet: Table 1 widths, parameter counts, auxiliary heads, small inputs and torchvision compatibility."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers.inception import InceptionModule
from convlab.models import create_model
from convlab.models.googlenet import INCEPTION_WIDTHS
from tests.helpers import count_parameters, randomise_batch_norms


def test_parameter_counts_match_torchvision():
    with torch.device("meta"):
        assert count_parameters(create_model("googlenet", aux_logits=False)) == 6_624_904
        model = create_model("googlenet")
    # each aux head: 1x1 conv to 128 + its BN, fc 2048 -> 1024, fc 1024 -> 1000
    assert (
        count_parameters(model.aux1)
        == 512 * 128 + 2 * 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000
        == 3_188_968
    )
    assert (
        count_parameters(model.aux2)
        == 528 * 128 + 2 * 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000
        == 3_191_016
    )
    assert count_parameters(model) == 6_624_904 + 3_188_968 + 3_191_016 == 13_004_888


def test_nine_inception_modules_with_table1_output_depths():
    with torch.device("meta"):
        model = create_model("googlenet")
    modules = [m for m in model.modules() if isinstance(m, InceptionModule)]
    assert len(modules) == 9
    # Szegedy et al. 2014, Table 1, "depth" of each module's output = #1x1 + #3x3 + #5x5 + pool proj
    assert [m.out_channels for m in modules] == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    assert model.inception3a.out_channels == 64 + 128 + 32 + 32


def test_paper_5x5_branch_adds_16_weights_per_reduce_output_pair():
    with torch.device("meta"):
        paper = create_model("googlenet", aux_logits=False, branch3_kernel=5)
    # Each 3x3 -> 5x5 swap adds (25 - 9) * #5x5reduce * #5x5 weights; Table 1 gives the widths.
    extra = (5 * 5 - 3 * 3) * sum(w[3] * w[4] for w in INCEPTION_WIDTHS.values())
    assert extra == 16 * 23_808 == 380_928
    assert count_parameters(paper) == 6_624_904 + extra == 7_005_832
    assert paper.inception3a.branch3[1].conv.weight.shape == (32, 16, 5, 5)
    # Table 1's params column for 3a reads 159K (K = 1024): its convolution weights are
    # 192*64 + 192*96 + 9*96*128 + 192*16 + 25*16*32 + 192*32 = 163,328 = 159.5K.
    conv_weights = sum(m.weight.numel() for m in paper.inception3a.modules() if isinstance(m, nn.Conv2d))
    assert conv_weights == 163_328
    # The notes' 6.7977M is the sum of that column, whose rounded rows do not all follow from the widths
    # (4c reads 463K where its widths give 497.5K), so the exact figure asserted is the one above.


def test_default_input_gives_1000_logits():
    with torch.device("meta"):
        model = create_model("googlenet").eval()
        assert model(torch.empty(2, 3, 224, 224)).shape == (2, 1000)


@pytest.mark.parametrize("size", [28, 32])
def test_trains_at_small_inputs_with_auxiliary_losses(size):
    model = create_model("googlenet", num_classes=10).train()
    images, labels = torch.randn(2, 3, size, size), torch.tensor([3, 7])
    logits, aux1, aux2 = model(images)
    assert logits.shape == aux1.shape == aux2.shape == (2, 10)
    loss = F.cross_entropy(logits, labels) + 0.3 * (
        F.cross_entropy(aux1, labels) + F.cross_entropy(aux2, labels)
    )
    loss.backward()
    assert model.conv1.conv.weight.grad.abs().sum() > 0
    assert model.aux1.fc2.weight.grad.abs().sum() > 0 and model.aux2.fc2.weight.grad.abs().sum() > 0


def test_training_output_is_main_then_aux_from_shallow_to_deep():
    model = create_model("googlenet", num_classes=10).train()
    seen = {}
    model.aux1.register_forward_hook(lambda m, i, out: seen.setdefault("aux1", out))
    model.aux2.register_forward_hook(lambda m, i, out: seen.setdefault("aux2", out))
    outputs = model(torch.randn(2, 3, 32, 32))
    assert isinstance(outputs, tuple) and len(outputs) == 3
    assert outputs[1] is seen["aux1"] and outputs[2] is seen["aux2"]


def test_eval_returns_logits_only_and_never_runs_aux_heads():
    model = create_model("googlenet", num_classes=10).eval()
    calls = []
    model.aux1.register_forward_hook(lambda *args: calls.append("aux1"))
    model.aux2.register_forward_hook(lambda *args: calls.append("aux2"))
    out = model(torch.randn(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
    assert calls == []


def test_aux_logits_false_removes_the_heads():
    model = create_model("googlenet", num_classes=10, aux_logits=False).train()
    assert not any(key.startswith("aux") for key in model.state_dict())
    out = model(torch.randn(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)


@pytest.fixture(scope="module")
def torchvision_pair():
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(weights=None, num_classes=10, aux_logits=True, init_weights=False)
    randomise_batch_norms(tv)
    ours = create_model("googlenet", num_classes=10)
    return ours, tv


def test_state_dict_keys_and_shapes_equal_torchvision(torchvision_pair):
    ours, tv = torchvision_pair
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in tv.state_dict().items()
    }
    assert "inception3a.branch2.0.conv.weight" in ours.state_dict()
    assert "aux1.conv.conv.weight" in ours.state_dict()


def test_eval_outputs_equal_torchvision(torchvision_pair):
    ours, tv = torchvision_pair
    ours.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), tv.eval()(x), atol=1e-5, rtol=1e-4)


def test_training_outputs_equal_torchvision_reordered(torchvision_pair):
    ours, tv = torchvision_pair
    ours.load_state_dict(tv.state_dict(), strict=True)
    ours.train(), tv.train()
    for model in (ours, tv):  # batch statistics on, dropout off: deterministic training-mode forward
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, aux1, aux2 = ours(x)
        tv_logits, tv_aux2, tv_aux1 = tv(x)
    for a, b in [(logits, tv_logits), (aux1, tv_aux1), (aux2, tv_aux2)]:
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_transform_input_equals_torchvision():
    tv = torchvision.models.googlenet(
        weights=None, num_classes=10, aux_logits=False, transform_input=True, init_weights=False
    ).eval()
    ours = create_model("googlenet", num_classes=10, aux_logits=False, transform_input=True).eval()
    ours.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), atol=1e-5, rtol=1e-4)


def test_activation_option_replaces_every_relu():
    model = create_model("googlenet", num_classes=10, activation="tanh", aux_logits=False)
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    # 3 stem convs + 9 modules x 6 convs, each followed by its own tanh
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 3 + 9 * 6


def test_in_chans_and_dropout_options():
    model = create_model("googlenet", num_classes=10, in_chans=1, dropout=0.2)
    assert model.conv1.conv.weight.shape == (64, 1, 7, 7)
    assert model.dropout.p == 0.2
    assert create_model("googlenet", num_classes=10).dropout.p == 0.4  # Szegedy et al. 2014, section 5
    assert model.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 10)


def test_bad_options_raise_one_line_errors():
    with pytest.raises(ConvlabError, match="branch3_kernel"):
        create_model("googlenet", branch3_kernel=7)
    with pytest.raises(ConvlabError, match="transform_input"):
        create_model("googlenet", in_chans=1, transform_input=True)
    with pytest.raises(ConvlabError, match="dropout"):
        create_model("googlenet", dropout=1.5)
