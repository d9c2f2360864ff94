"""Input sizes an architecture cannot take: the layer where the map vanishes and the size that works."""

import pytest
import torch
import torchvision
from torch import nn

from convlab.analysis import check_input_size, parse_input_size, summary
from convlab.errors import ConvlabError


def test_lenet5_at_28x28_names_c5_and_asks_for_32():
    with pytest.raises(ConvlabError) as caught:
        check_input_size("lenet5", (1, 28, 28))
    message = str(caught.value)
    # 28 -> C1 24 -> S2 12 -> C3 8 -> S4 4: C5's 5x5 kernel does not fit.
    assert message.startswith(
        "lenet5 needs inputs of at least 32x32: at 28x28 the feature map vanishes in layer"
    )
    assert "'features.c5' (Conv2d 5x5) which receives 4x4" in message
    assert "Use --input 1x32x32" in message
    # Above 35x35, C5's output is larger than 1x1 and F6 gets more than its 120 inputs.
    assert "up to 35x35" in message


def test_summary_checks_the_input_first():
    with pytest.raises(ConvlabError, match="vanishes in layer 'features.c5'"):
        summary("lenet5", "28x28")


def test_too_large_for_a_fixed_classifier():
    with pytest.raises(ConvlabError) as caught:
        check_input_size("lenet5", 40)
    message = str(caught.value)
    assert "lenet5 takes inputs of 32x32 to 35x35" in message
    assert "layer 'classifier.f6' (Linear 120->84) receives 1080 features but takes 120" in message  # 120x3x3


def test_networks_with_adaptive_pooling_take_any_size_above_the_smallest():
    with pytest.raises(ConvlabError) as caught:
        check_input_size("vgg16", (3, 16, 16))
    message = str(caught.value)
    assert "vgg16 needs inputs of at least 32x32" in message  # five 2x2 pools: 32 -> 1
    assert "'features.30' (MaxPool2d 2x2) which receives 1x1" in message
    assert message.endswith("Use --input 3x32x32 or larger.")
    check_input_size("vgg16", (3, 32, 32))  # the smallest size that works does work


def test_wrong_channel_count():
    with torch.device("meta"):
        model = torchvision.models.resnet18()
    with pytest.raises(ConvlabError, match="expects 3 input channels, got 1"):
        check_input_size(model, (1, 224, 224))


def test_a_name_builds_the_model_for_the_channels_asked():
    assert summary("resnet18", (1, 64, 64)).layer("conv1").params == 64 * 1 * 7 * 7


def test_a_plain_module_passes_when_the_size_is_right():
    check_input_size(nn.Sequential(nn.Conv2d(3, 4, 5), nn.MaxPool2d(2)), (3, 6, 6))
    with pytest.raises(ConvlabError, match="needs inputs of at least 6x6"):
        check_input_size(nn.Sequential(nn.Conv2d(3, 4, 5), nn.MaxPool2d(2)), (3, 5, 5))


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("3x224x224", (3, 224, 224)),
        ("224x200", (1, 224, 200)),
        ("32", (1, 32, 32)),
        (28, (1, 28, 28)),
        ((3, 8, 8), (3, 8, 8)),
    ],
)
def test_parse_input_size(text, size):
    assert parse_input_size(text, channels=1) == size


@pytest.mark.parametrize("text", ["3x224", "abc", "3x224x224x2", "0x32x32", "3 x 224"])
def test_malformed_input_sizes_show_the_accepted_form(text):
    with pytest.raises(ConvlabError, match=r"CxHxW, e\.g\. 3x224x224 \(or HxW, or a single size S"):
        parse_input_size(text, channels=3)
