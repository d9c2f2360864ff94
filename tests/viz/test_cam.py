"""Grad-CAM and gradient saliency: known answers on hand-built nets, and LeNet-5 checkpoints end to end."""

import numpy as np
import pytest
import torch

import convlab
from convlab.errors import ConvlabError
from convlab.viz import grad_cam, grad_cam_maps, saliency
from tests.helpers import assert_png

from .conftest import CLASSES, BrightDarkNet, LeftHalfNet


def test_grad_cam_finds_the_bright_square_for_the_bright_class(bright_left_dark_right, tmp_path):
    model = BrightDarkNet()
    result = grad_cam(model, bright_left_dark_right, target=0, out=tmp_path)
    assert result.layer == "act"  # the last layer with spatial maps; the pool's 1x1 output does not count
    heat = result.array
    assert heat.shape == (16, 16) and heat.max() == pytest.approx(1.0)
    assert heat[:, 8:].sum() == 0  # all the heat in the left half...
    # ... exactly on the bright pixels: the weights are 1/256 for channel 0, 0 for channel 1 (eq. 1), so the
    # raw map is ReLU(x) / 256 (eq. 2), at the input's own size.
    assert np.allclose(result.extra["raw"], bright_left_dark_right[0].clamp(min=0).numpy() / 256)
    assert_png(result.png)


def test_grad_cam_default_target_is_the_predicted_class(bright_left_dark_right):
    # 30 dark pixels against 24 bright ones: the net predicts class 1, and Grad-CAM explains class 1.
    result = grad_cam(BrightDarkNet(), bright_left_dark_right)
    assert result.predicted == 1 and result.target == 1
    left, right = result.array[:, :8].sum(), result.array[:, 8:].sum()
    assert left == 0 and right > 0
    assert np.array_equal(result.array > 0, (bright_left_dark_right[0] < 0).numpy())


def test_grad_cam_batch_gives_each_image_its_own_map(bright_left_dark_right):
    batch = torch.stack([bright_left_dark_right, -bright_left_dark_right])
    heat, raw, logits = grad_cam_maps(BrightDarkNet(), batch, "act", torch.tensor([0, 0]))
    assert logits.shape == (2, 2)
    assert heat[0, :, 8:].sum() == 0 and heat[0, :, :8].sum() > 0  # bright square on the left
    assert heat[1, :, :8].sum() == 0 and heat[1, :, 8:].sum() > 0  # flipped signs: bright on the right


def test_saliency_is_zero_where_the_model_ignores_the_input():
    torch.manual_seed(0)
    image = torch.rand(1, 16, 16)
    result = saliency(LeftHalfNet(), image, target=1)
    assert result.array.shape == (16, 16)
    assert np.all(result.array[:, 8:] == 0)  # the right half is cut off before any weight sees it
    assert (result.array[:, :8] > 0).mean() > 0.9


def test_saliency_is_the_largest_input_gradient_over_channels():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    image = torch.randn(3, 8, 8)
    result = saliency(model, image, target=2)
    x = image.unsqueeze(0).requires_grad_(True)
    model(x)[0, 2].backward()
    assert np.allclose(result.array, x.grad[0].abs().amax(dim=0).numpy(), atol=1e-7)


def test_visualisations_leave_parameter_gradients_alone(bright_left_dark_right):
    model = LeftHalfNet()
    saliency(model, bright_left_dark_right)
    grad_cam(model, bright_left_dark_right, layer="conv")
    assert all(p.grad is None for p in model.parameters())


def test_lenet5_grad_cam_and_saliency_depend_on_the_image(lenet_checkpoint, digit_images):
    bar, ring = digit_images
    cams = [grad_cam(lenet_checkpoint, image, target="three") for image in (bar, ring)]
    assert cams[0].layer == "features.s4"  # 16 x 5 x 5: the last LeNet-5 maps with more than one position
    assert cams[0].extra["raw"].shape == (5, 5) and cams[0].array.shape == (32, 32)
    assert np.abs(cams[0].array - cams[1].array).max() > 0.05
    maps = [saliency(lenet_checkpoint, image, target=3) for image in (bar, ring)]
    assert maps[0].array.shape == (32, 32)
    assert np.abs(maps[0].array - maps[1].array).max() > 1e-4
    for result in cams + maps:
        assert result.target == 3 and result.target_name == "three"
        assert_png(result.png)
    # Saliency and Grad-CAM PNGs go to RUN/viz, named after the image and the class.
    assert {p.name for p in (lenet_checkpoint.parent / "viz").iterdir()} == {
        "gradcam-image-three.png",
        "saliency-image-three.png",
    }


def test_target_by_name_or_index_and_unknown_target(lenet_checkpoint, digit_images):
    bar, _ = digit_images
    by_name = grad_cam(lenet_checkpoint, bar, target="seven", out=None)
    by_index = grad_cam(lenet_checkpoint, bar, target="7")
    assert np.array_equal(by_name.array, by_index.array)
    with pytest.raises(ConvlabError) as error:
        saliency(lenet_checkpoint, bar, target="ten")
    assert str(error.value) == (
        f"Unknown target class 'ten'; give a class name or an index 0..9: {', '.join(CLASSES)}."
    )


def test_grad_cam_runs_in_eval_mode_and_restores_the_mode(bright_left_dark_right):
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.Dropout(0.5),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )
    model.train()
    first = grad_cam(model, bright_left_dark_right, layer="1", target=0)
    second = grad_cam(model, bright_left_dark_right, layer="1", target=0)
    assert np.array_equal(first.array, second.array)  # no dropout noise: eval mode
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())


def test_grad_cam_on_a_file(lenet_checkpoint, image_file, tmp_path):
    result = grad_cam(lenet_checkpoint, image_file, layer="features.c3", out=tmp_path, device="cpu")
    assert result.extra["raw"].shape == (10, 10)
    assert result.extra["overlay"].shape == (32, 32, 3)
    assert result.png == tmp_path / f"gradcam-square-{result.target_name}.png"
    assert_png(result.png)


def test_grad_cam_unknown_layer_lists_valid_names(lenet_checkpoint, digit_images):
    with pytest.raises(ConvlabError, match=r"Unknown layer 'conv9'.*features.c3 \(16x10x10\)"):
        grad_cam(lenet_checkpoint, digit_images[0], layer="conv9")


def test_models_with_auxiliary_heads_explain_the_main_logits():
    model = convlab.create_model("googlenet", num_classes=10)
    model.train()  # aux heads return (logits, aux1, aux2) in train mode; viz switches to eval
    result = grad_cam(model, torch.rand(3, 64, 64), target=4)
    assert result.array.shape == (64, 64)
    assert model.training


def test_default_layer_skips_head_pooling_that_copies_a_1x1_map():
    # VGG on a small image: the features end at 1x1 and AdaptiveAvgPool2d(7) copies it into 49 equal cells.
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(8),
        torch.nn.AdaptiveAvgPool2d(7),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 49, 5),
    )
    result = grad_cam(model, torch.rand(3, 8, 8))
    assert result.layer == "1"  # the ReLU's 8 x 8 maps, not the pool's copies
    assert result.extra["raw"].shape == (8, 8)


def test_grad_cam_needs_spatial_feature_maps():
    model = convlab.create_model("mlp", num_classes=10, in_chans=1)
    with pytest.raises(ConvlabError, match="no layer with spatial feature maps"):
        grad_cam(model, torch.rand(1, 28, 28))
