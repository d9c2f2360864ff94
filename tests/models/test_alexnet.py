"""AlexNet three ways: torchvision's single tower, the notes' CaffeNet table with LRN, and ZFNet."""

import pytest
import torch
import torchvision
from torch import nn

from convlab.errors import ConvlabError
from convlab.models import create_model, get_model_info
from tests.helpers import count_parameters, on_meta


def feature_shapes(model: nn.Module, size: int) -> dict[str, tuple[int, ...]]:
    """(C, H, W) after every named layer of ``model.features``, by a forward pass on the meta device."""
    x = torch.empty(1, 3, size, size, device="meta")
    shapes = {}
    for name, layer in model.features.named_children():
        x = layer(x)
        shapes[name] = tuple(x.shape[1:])
    return shapes


@pytest.mark.parametrize("name", ["alexnet"])
def test_torchvision_weights_load_and_outputs_agree(name):
    assert get_model_info(name).torchvision == name
    reference = getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    ours = on_meta(name, num_classes=10)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    ours.eval()
    x = torch.randn(2, 3, 64, 64)  # the smallest size torchvision's AlexNet accepts is 63
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-4)


def test_alexnet_parameter_count_is_torchvisions():
    assert count_parameters(on_meta("alexnet")) == 61_100_840


def test_alexnet_forward_and_backward_on_a_small_input():
    model = create_model("alexnet", num_classes=10)
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert model.features[0].weight.grad.abs().sum() > 0


def test_notes_table_sizes_at_227():
    shapes = feature_shapes(on_meta("alexnet_lrn"), 227)
    assert shapes["conv1"] == (96, 55, 55)  # (227 - 11)/4 + 1 = 55
    assert shapes["pool1"] == shapes["norm1"] == (96, 27, 27)
    assert shapes["conv2"] == (256, 27, 27)
    assert shapes["pool2"] == (256, 13, 13)
    assert shapes["conv3"] == shapes["conv4"] == (384, 13, 13)
    assert shapes["conv5"] == (256, 13, 13)
    assert shapes["pool5"] == (256, 6, 6)


def test_neuron_counts_of_the_two_gpu_paper():
    # Krizhevsky et al. 2012, Fig. 2 caption: 253,440-186,624-64,896-64,896-43,264-4096-4096-1000.
    # All but the first follow from the layer shapes; a 55x55x96 first layer has 290,400 neurons, not 253,440.
    model = on_meta("alexnet_lrn", groups=2)
    shapes = feature_shapes(model, 227)
    neurons = [c * h * w for c, h, w in (shapes[name] for name in ("conv2", "conv3", "conv4", "conv5"))]
    neurons += [getattr(model.classifier, name).out_features for name in ("fc6", "fc7", "fc8")]
    assert neurons == [186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000]
    assert shapes["conv1"][0] * shapes["conv1"][1] * shapes["conv1"][2] == 290_400


def test_alexnet_lrn_parameters_one_and_two_towers():
    one_tower = count_parameters(on_meta("alexnet_lrn"))
    convs = (11 * 11 * 3 + 1) * 96 + (5 * 5 * 96 + 1) * 256 + (3 * 3 * 256 + 1) * 384
    convs += (3 * 3 * 384 + 1) * 384 + (3 * 3 * 384 + 1) * 256
    fcs = (9216 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * 1000
    assert one_tower == convs + fcs == 62_378_344
    # Two GPUs: conv2, conv4 and conv5 read half their input maps, halving their weights.
    two_towers = count_parameters(on_meta("alexnet_lrn", groups=2))
    halved = (5 * 5 * 96 * 256 + 3 * 3 * 384 * 384 + 3 * 3 * 384 * 256) // 2
    assert two_towers == one_tower - halved == 60_965_224
    assert on_meta("alexnet_lrn", groups=2).features.conv3.groups == 1  # conv3 crosses between the GPUs


def test_alexnet_lrn_norm_order_lrn_settings_and_dropout_placement():
    caffenet = on_meta("alexnet_lrn")
    assert list(caffenet.features._modules)[:4] == ["conv1", "act1", "pool1", "norm1"]
    paper = on_meta("alexnet_lrn", norm_first=True)
    assert list(paper.features._modules)[:4] == ["conv1", "act1", "norm1", "pool1"]
    assert feature_shapes(paper, 227)["pool5"] == (256, 6, 6)
    norms = [m for m in caffenet.modules() if isinstance(m, nn.LocalResponseNorm)]
    assert [(n.size, n.alpha, n.beta, n.k) for n in norms] == [(5, 1e-4, 0.75, 2.0)] * 2
    # dropout on the outputs of FC6 and FC7 (Caffe's drop6/drop7)
    assert list(caffenet.classifier._modules) == ["fc6", "act6", "drop6", "fc7", "act7", "drop7", "fc8"]


def test_alexnet_lrn_paper_initialisation():
    model = create_model("alexnet_lrn", num_classes=10)
    layers = {**model.features._modules, **model.classifier._modules}
    ones = {name for name, layer in layers.items() if hasattr(layer, "bias") and (layer.bias == 1).all()}
    assert ones == {"conv2", "conv4", "conv5", "fc6", "fc7"}
    assert layers["conv1"].bias.abs().sum() == 0
    assert layers["fc6"].weight.std().item() == pytest.approx(0.01, rel=0.01)


def test_alexnet_lrn_forward_and_backward():
    model = create_model("alexnet_lrn", num_classes=10, groups=2)
    logits = model(torch.randn(2, 3, 96, 96))  # 22 -> 11 -> 5 -> 2 maps; the adaptive pool gives 6x6
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert model.features.conv1.weight.grad.abs().sum() > 0


def test_zfnet_sizes_follow_zeiler_fergus_figure_3():
    model = on_meta("zfnet")
    shapes = feature_shapes(model, 224)
    assert shapes["conv1"] == (96, 110, 110)
    assert shapes["pool1"] == (96, 55, 55)
    assert shapes["conv2"] == (256, 26, 26)
    assert shapes["pool2"] == (256, 13, 13)
    assert shapes["conv3"] == shapes["conv4"] == (384, 13, 13)
    assert shapes["conv5"] == (256, 13, 13)
    assert shapes["pool5"] == (256, 6, 6)
    assert (model.features.conv1.kernel_size, model.features.conv1.stride) == ((7, 7), (2, 2))
    convs = (7 * 7 * 3 + 1) * 96 + (5 * 5 * 96 + 1) * 256 + (3 * 3 * 256 + 1) * 384
    convs += (3 * 3 * 384 + 1) * 384 + (3 * 3 * 384 + 1) * 256
    assert count_parameters(model) == convs + (9216 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * 1000


def test_zfnet_forward_backward_and_activation_option():
    model = create_model("zfnet", num_classes=10, activation="elu")
    assert sum(isinstance(m, nn.ELU) for m in model.modules()) == 7  # conv1-5, fc6, fc7
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    logits = model(torch.randn(2, 3, 96, 96))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert model.features.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("alexnet_lrn", {"groups": 3}, "groups must divide"),
        ("alexnet", {"dropout": -0.1}, "dropout must be a probability"),
        ("zfnet", {"activation": "relu7"}, "Unknown activation"),
    ],
)
def test_bad_options(name, options, message):
    with pytest.raises(ConvlabError, match=message):
        on_meta(name, **options)
