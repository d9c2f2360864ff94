"""First-layer and deeper filters drawn as tile grids."""

import numpy as np
import pytest
import torch

import convlab
from convlab.errors import ConvlabError
from convlab.viz import filters
from tests.helpers import assert_png


def test_lenet5_first_layer_filters_are_six_gray_5x5_tiles(lenet_checkpoint):
    result = filters(lenet_checkpoint)
    # Written beside the checkpoint, in the run folder's viz/.
    assert result.png == lenet_checkpoint.parent / "viz" / "filters-features.c1.png"
    assert_png(result.png)
    assert result.layer == "features.c1"
    assert result.array.shape == (6, 1, 5, 5)  # LeCun et al. 1998: C1 has six 5x5 filters
    # Each filter is stretched to exactly 0..1 on its own.
    assert np.allclose(result.array.reshape(6, -1).min(axis=1), 0.0)
    assert np.allclose(result.array.reshape(6, -1).max(axis=1), 1.0)
    # A 3-column grid of 5x5 tiles with a 1-pixel gap: 2 rows x 3 columns -> 11 x 17 pixels.
    assert result.extra["grid"].shape == (11, 17)
    assert "6 filters of 1x5x5" in result.title


def test_filter_tiles_are_the_normalised_weights(lenet_checkpoint):
    model, _ = convlab.checkpoint.load_checkpoint(lenet_checkpoint)
    weight = model.features.c1.weight.detach()[2, 0].numpy()
    expected = (weight - weight.min()) / (weight.max() - weight.min())
    assert np.allclose(filters(model).array[2, 0], expected, atol=1e-6)


def test_two_models_give_different_filter_pictures(tmp_path):
    torch.manual_seed(1)
    first = filters(convlab.create_model("lenet5"), out=tmp_path / "a")
    torch.manual_seed(2)
    second = filters(convlab.create_model("lenet5"), out=tmp_path / "b")
    assert np.abs(first.array - second.array).max() > 0.1
    assert first.png.read_bytes() != second.png.read_bytes()


def test_rgb_first_layer_is_drawn_in_colour(tmp_path):
    model = convlab.create_model("alexnet", num_classes=10)
    result = filters(model, out=tmp_path)
    assert result.array.shape == (64, 3, 11, 11)  # torchvision-style AlexNet conv1: 64 filters of 3x11x11
    grid = result.extra["grid"]
    assert grid.shape == (8 * 12 - 1, 8 * 12 - 1, 3)  # 8 x 8 colour tiles
    assert_png(result.png)


def test_deeper_layer_shows_one_tile_per_filter_and_input_channel_capped_at_64(tmp_path, lenet_checkpoint):
    result = filters(lenet_checkpoint, layer="features.c3", out=tmp_path)
    # C3 has 16 filters of 6 x 5 x 5: rows of 6 input channels, 10 rows fit in 64 tiles.
    assert result.array.shape == (10, 6, 5, 5)
    assert result.array.shape[0] * result.array.shape[1] <= 64
    assert "first 10 filters" in result.title
    assert_png(result.png)


def test_unknown_conv_layer_lists_the_convolutions(lenet_checkpoint):
    with pytest.raises(ConvlabError) as error:
        filters(lenet_checkpoint, layer="features.c2")
    message = str(error.value)
    assert "features.c2" in message
    assert "features.c1, features.c3, features.c5" in message


def test_a_model_without_convolutions_is_refused():
    with pytest.raises(ConvlabError, match="no Conv2d layer"):
        filters(convlab.create_model("mlp", num_classes=10, in_chans=1))
