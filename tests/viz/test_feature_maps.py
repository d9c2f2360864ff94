"""Feature maps of a named layer, captured with a forward hook."""

import numpy as np
import pytest
import torch

import convlab
from convlab.errors import ConvlabError
from convlab.viz import feature_maps, trace_layers
from tests.helpers import assert_png


def test_first_conv_feature_maps_of_lenet5(lenet_checkpoint, digit_images, tmp_path):
    bar, _ = digit_images
    result = feature_maps(lenet_checkpoint, bar, out=tmp_path)
    assert result.layer == "features.c1"
    assert result.array.shape == (6, 28, 28)  # 32 - 5 + 1 = 28
    assert result.title.startswith("lenet5 features.c1: output 6x28x28")
    assert result.png == tmp_path / "feature-maps-features.c1-image.png"
    assert_png(result.png)


def test_feature_maps_are_the_layer_output(lenet_checkpoint, digit_images):
    model, record = convlab.checkpoint.load_checkpoint(lenet_checkpoint)
    bar, _ = digit_images
    result = feature_maps((model, record), bar, layer="features.c3")
    assert result.png is None  # an in-memory model has no default folder
    x = (bar.float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        expected = model.features[:4](x.unsqueeze(0))[0]  # c1, c1_act, s2, c3
    assert np.allclose(result.array, expected.numpy(), atol=1e-5)


def test_two_images_give_different_feature_maps(lenet_checkpoint, digit_images):
    bar, ring = digit_images
    first = feature_maps(lenet_checkpoint, bar, layer="features.s2")
    second = feature_maps(lenet_checkpoint, ring, layer="features.s2")
    assert first.array.shape == second.array.shape == (6, 14, 14)
    assert np.abs(first.array - second.array).max() > 0.1


def test_wide_layer_shows_64_channels_and_says_so(tmp_path):
    model = convlab.create_model("resnet18", num_classes=10)
    image = torch.rand(3, 64, 64)
    result = feature_maps(model, image, layer="layer2", out=tmp_path)
    assert result.array.shape == (128, 8, 8)  # all channels returned; 64x64 input / 8
    assert "(64 of 128 channels)" in result.title
    assert_png(result.png)


def test_values_are_captured_before_an_inplace_relu():
    conv = torch.nn.Conv2d(1, 2, 3, padding=1)
    model = torch.nn.Sequential(conv, torch.nn.ReLU(inplace=True))
    image = torch.randn(1, 8, 8)
    result = feature_maps(model, image, layer="0")
    with torch.no_grad():
        expected = conv(image.unsqueeze(0))[0]
    assert (expected < 0).any()  # the in-place ReLU would have zeroed these
    assert np.allclose(result.array, expected.numpy(), atol=1e-6)


def test_unknown_layer_lists_layers_with_feature_maps_and_removes_hooks(lenet_checkpoint, digit_images):
    model, record = convlab.checkpoint.load_checkpoint(lenet_checkpoint)
    with pytest.raises(ConvlabError) as error:
        feature_maps((model, record), digit_images[0], layer="features.c4")
    message = str(error.value)
    assert message.startswith("Unknown layer 'features.c4'; did you mean")
    assert "features.c1 (6x28x28)" in message and "features.s4 (16x5x5)" in message
    assert all(not module._forward_hooks for module in model.modules())


def test_a_layer_without_feature_maps_is_refused(lenet_checkpoint, digit_images):
    with pytest.raises(ConvlabError, match=r"'classifier.f6' \(Linear\) does not output feature maps"):
        feature_maps(lenet_checkpoint, digit_images[0], layer="classifier.f6")


def test_big_models_list_outer_layers_first_and_count_the_rest():
    model = convlab.create_model("resnet18", num_classes=10)
    shapes, logits = trace_layers(model, torch.zeros(1, 3, 64, 64))
    assert logits.shape == (1, 10)
    with pytest.raises(ConvlabError) as error:
        feature_maps(model, torch.zeros(3, 64, 64), layer="layer5")
    message = str(error.value)
    assert "layer1 (64x16x16), layer2 (128x8x8), layer3 (256x4x4), layer4 (512x2x2)" in message
    assert message.endswith(f", and {len(shapes) - 30} more.")


def test_a_text_file_is_not_an_image(lenet_checkpoint, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("these are notes, not pixels\n")
    with pytest.raises(ConvlabError) as error:
        feature_maps(lenet_checkpoint, text)
    assert str(error.value).startswith(f"Cannot read image '{text}'")


def test_an_image_file_is_converted_with_the_checkpoint_preprocessing(lenet_checkpoint, image_file):
    # An RGB 48 x 40 file becomes the checkpoint's 1 x 32 x 32: C1 maps are 28 x 28.
    result = feature_maps(lenet_checkpoint, image_file)
    assert result.array.shape == (6, 28, 28)
    assert result.png.name == "feature-maps-features.c1-square.png"
    assert_png(result.png)
