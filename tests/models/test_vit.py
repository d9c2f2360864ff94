"""ViT-B/16 and small ViTs: parameter counts, torchvision compatibility, input-size errors, training."""

import math

import pytest
import torch
import torchvision
from torch import nn

from convlab.errors import ConvlabError
from convlab.models import create_model
from tests.helpers import count_parameters


def test_vit_b_16_has_torchvisions_86_6_million_parameters():
    with torch.device("meta"):
        model = create_model("vit_b_16")
    assert count_parameters(model) == 86_567_656
    assert len(model.encoder.layers) == 12  # Dosovitskiy et al. 2021, Table 1: ViT-Base
    assert model.encoder.pos_embedding.shape == (1, 14 * 14 + 1, 768)  # 196 patches and the class token
    assert model.encoder.layers.encoder_layer_0.mlp[0].out_features == 3072


def test_vit_b_16_matches_torchvision():
    # image_size=64 keeps the test fast: 4x4 patches + class token, the same 12 layers
    reference = torchvision.models.vit_b_16(weights=None, image_size=64).eval()
    nn.init.normal_(reference.heads.head.weight, std=0.02)  # torchvision zeroes the head; compare real logits
    with torch.device("meta"):  # no point initialising 86M weights that the checkpoint replaces
        model = create_model("vit_b_16", image_size=64).eval()
    ours, theirs = model.state_dict(), reference.state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert "encoder.layers.encoder_layer_11.self_attention.in_proj_weight" in ours
    model.load_state_dict(theirs, strict=True, assign=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        torch.testing.assert_close(logits, reference(x), atol=1e-5, rtol=1e-4)
    assert logits.abs().max() > 0.1


def test_wrong_input_size_is_a_clear_error():
    model = create_model("vit_b_16", image_size=32, patch_size=8, depth=1, width=32, heads=2, mlp_dim=64)
    with pytest.raises(ConvlabError, match="expects 32x32 images, got 28x28.*image_size=28"):
        model(torch.randn(1, 3, 28, 28))
    with pytest.raises(ConvlabError, match="image_size=32 and patch_size=5"):
        create_model("vit_b_16", image_size=32, patch_size=5)


def small_vit(**options) -> nn.Module:
    config = dict(image_size=32, patch_size=4, depth=2, width=64, heads=4, mlp_dim=128)
    return create_model("vit_b_16", num_classes=10, **{**config, **options})


def test_small_vit_parameters_by_hand():
    model = small_vit()
    per_layer = 2 * 2 * 64 + (4 * 64 * 64 + 4 * 64) + (64 * 128 + 128 + 128 * 64 + 64)
    expected = (
        (3 * 4 * 4 * 64 + 64)  # patch projection
        + 64  # class token
        + (8 * 8 + 1) * 64  # position embeddings
        + 2 * per_layer
        + 2 * 64  # final LayerNorm
        + (64 * 10 + 10)  # head
    )
    assert count_parameters(model) == expected == 75_082


def test_small_vit_learns_a_batch_at_32x32():
    model = small_vit()
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(10), abs=1e-6)  # zero-initialised head: uniform over classes
    assert losses[-1] < 0.5  # eight random images memorised: attention, MLP and embeddings all learn


def test_small_vit_on_28x28_grayscale_and_options():
    model = small_vit(in_chans=1, image_size=28, patch_size=7, activation="relu", dropout=0.1)
    assert model.conv_proj.weight.shape == (64, 1, 7, 7)
    assert model.encoder.pos_embedding.shape == (1, 17, 64)
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 2
    assert not any(isinstance(m, nn.GELU) for m in model.modules())
    logits = model(torch.randn(4, 1, 28, 28))
    assert logits.shape == (4, 10)
    logits.sum().backward()
    assert model.class_token.grad is not None
