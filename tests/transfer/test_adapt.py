"""Finding the classifier and first layer in every family, and fitting them to other classes and channels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convlab import ConvlabError, create_model, load_pretrained
from convlab.models import list_models
from convlab.transfer import adapt_input_channels, find_classifier, find_first_layer, replace_head

ONE_PER_FAMILY = list({info.family: info.name for info in list_models()}.values())

EXPECTED_PARTS = {  # classifier and first layer by module order, with no per-family rule
    "resnet18": ("fc", "conv1"),
    "vgg16": ("classifier.6", "features.0"),
    "squeezenet1_0": ("classifier.1", "features.0"),  # a 1x1 convolution producing one map per class
    "nin": ("features.6.mlp.2", "features.0.conv.0"),
    "allcnn_c": ("features.conv9", "features.conv1"),
    "googlenet": ("fc", "conv1.conv"),  # not the auxiliary classifiers' fc2
    "vit_b_16": ("heads.head", "conv_proj"),
    "mlp": ("layers.output", "layers.fc1"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARTS))
def test_classifier_and_first_layer_are_found_by_module_order(name):
    with torch.device("meta"):
        model = create_model(name, num_classes=7)
    assert (find_classifier(model)[0], find_first_layer(model)[0]) == EXPECTED_PARTS[name]


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_every_family_adapts_to_what_create_model_builds_for_the_new_task(name):
    # adapting a 7-class model of the family's own channels to 4 classes and the other channel count must give
    # exactly the tensors create_model makes for that task: the result saves and loads as a normal checkpoint
    native = list_models()[[i.name for i in list_models()].index(name)].input_size[0]
    other = 1 if native == 3 else 3
    with torch.device("meta"):
        model = create_model(name, num_classes=7, in_chans=native)
        adapt_input_channels(model, other)
        replace_head(model, 4)
        wanted = create_model(name, num_classes=4, in_chans=other)
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in wanted.state_dict().items()
    }
    assert model.convlab_spec == wanted.convlab_spec


def gray_batch() -> torch.Tensor:
    return torch.rand(2, 1, 32, 32)


def test_one_to_three_channels_gives_the_gray_models_output_on_the_repeated_image(outputs_equal):
    gray_model = create_model("resnet20", num_classes=10, in_chans=1)
    color_model = create_model("resnet20", num_classes=10, in_chans=3)
    report = load_pretrained(color_model, gray_model.state_dict())
    assert report.adapted == ["first layer conv1: 1 -> 3 input channels (repeated and divided by 3)"]
    gray = gray_batch()
    outputs_equal(color_model, gray_model, gray.repeat(1, 3, 1, 1), gray)


def test_three_to_one_channel_gives_the_color_models_output_on_an_image_with_equal_channels(outputs_equal):
    color_model = create_model("resnet20", num_classes=10, in_chans=3)
    gray_model = create_model("resnet20", num_classes=10, in_chans=3)
    gray_model.load_state_dict(color_model.state_dict())
    line = adapt_input_channels(gray_model, 1)  # in place, the same rule load_pretrained applies
    assert line == "first layer conv1: 3 -> 1 input channels (summed over the input channels)"
    assert gray_model.conv1.weight.shape == (16, 1, 3, 3) and gray_model.convlab_spec.in_chans == 1
    gray = gray_batch()
    outputs_equal(gray_model, color_model, gray, gray.repeat(1, 3, 1, 1))


def test_an_mlps_first_layer_adapts_over_the_flattened_channels(outputs_equal):
    color = create_model("mlp", num_classes=10, in_chans=3, hidden=(50,))
    gray = create_model("mlp", num_classes=10, in_chans=1, hidden=(50,))
    report = load_pretrained(gray, color.state_dict())
    assert report.adapted == [
        "first layer layers.fc1: 3 -> 1 input channels (summed over the input channels)"
    ]
    image = torch.rand(2, 1, 28, 28)
    outputs_equal(gray, color, image, image.repeat(1, 3, 1, 1))


def test_replace_head_gives_new_output_layers_for_the_new_classes():
    model = create_model("googlenet", num_classes=1000)
    trunk = model.inception5b.branch1.conv.weight.clone()
    lines = replace_head(model, 10)
    assert lines == [
        "head fc: 1000 -> 10 classes, newly initialised",
        "auxiliary head aux1.fc2: 1000 -> 10 classes, newly initialised",
        "auxiliary head aux2.fc2: 1000 -> 10 classes, newly initialised",
    ]
    assert isinstance(model.fc, nn.Linear) and model.fc.weight.shape == (10, 1024)
    assert model.convlab_spec.num_classes == 10
    torch.testing.assert_close(model.inception5b.branch1.conv.weight, trunk)
    model.eval()
    assert model(torch.randn(1, 3, 96, 96)).shape == (1, 10)


def test_channel_counts_other_than_one_to_many_are_refused():
    model = create_model("resnet20", num_classes=10, in_chans=3)
    with pytest.raises(
        ConvlabError,
        match="Cannot adapt a first layer made for 3 input channels to 4; convlab adapts "
        r"1 -> N \(repeat, divide by N\) and N -> 1 \(sum\) channels",
    ):
        adapt_input_channels(model, 4)
    four = create_model("resnet20", num_classes=10, in_chans=4)
    with pytest.raises(ConvlabError, match=r"conv1\.weight: file \(16, 3, 3, 3\), model \(16, 4, 3, 3\)"):
        load_pretrained(four, model.state_dict())
