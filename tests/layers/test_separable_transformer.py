"""Blocks of the efficient and modern nets: separable conv, inverted residual, ConvNeXt block, ViT parts."""

import math

import pytest
import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers.conv import DepthwiseSeparableConv
from convlab.layers.convnext_block import ConvNeXtBlock, LayerNorm2d
from convlab.layers.inverted_residual import InvertedResidual
from convlab.layers.transformer import PatchEmbedding, TransformerEncoder, TransformerEncoderBlock
from tests.helpers import count_parameters


def test_depthwise_separable_uses_seven_times_fewer_parameters_than_a_standard_conv():
    # NUMBERS.md, notes 004: 20 input channels, 3x3 kernel, 40 output maps
    separable = DepthwiseSeparableConv(20, 40, 3, norm=False, activation=None, bias=True)
    standard = nn.Conv2d(20, 40, 3, padding=1)
    assert count_parameters(separable.depthwise) == (3 * 3 + 1) * 20 == 200
    assert count_parameters(separable.pointwise) == (1 * 1 * 20 + 1) * 40 == 840
    assert count_parameters(separable) == 1_040
    assert count_parameters(standard) == ((3 * 3) * 20 + 1) * 40 == 7_240
    x = torch.randn(2, 20, 16, 16)
    assert separable(x).shape == standard(x).shape == (2, 40, 16, 16)


def test_inverted_residual_is_thin_wide_thin_with_a_linear_projection():
    block = InvertedResidual(16, 16, stride=1, expand_ratio=6)
    # expand 1x1 (16 -> 96) + BN, depthwise 3x3 + BN, project 1x1 (96 -> 16) + BN
    assert count_parameters(block) == (16 * 96 + 2 * 96) + (96 * 9 + 2 * 96) + (96 * 16 + 2 * 16) == 4_352
    assert [type(m).__name__ for m in block.conv] == ["ConvNormAct", "ConvNormAct", "Conv2d", "BatchNorm2d"]
    assert isinstance(block.conv[1][2], nn.ReLU6)  # activations in the wide part, none after the projection
    assert block.use_residual
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(block(x), x + block.conv(x))


def test_inverted_residual_without_expansion_or_with_stride_has_no_skip():
    no_expansion = InvertedResidual(32, 16, stride=1, expand_ratio=1)
    assert [type(m).__name__ for m in no_expansion.conv] == ["ConvNormAct", "Conv2d", "BatchNorm2d"]
    assert not no_expansion.use_residual  # 32 -> 16 channels: nothing to add to
    strided = InvertedResidual(24, 24, stride=2, expand_ratio=6)
    assert not strided.use_residual
    assert strided(torch.randn(1, 24, 8, 8)).shape == (1, 24, 4, 4)
    with pytest.raises(ConvlabError, match="stride must be 1 or 2, got 3"):
        InvertedResidual(24, 24, stride=3, expand_ratio=6)


def test_layer_norm_2d_normalises_each_pixel_across_channels():
    norm = LayerNorm2d(8, eps=1e-6)
    y = norm(torch.randn(2, 8, 5, 5) * 3 + 1)
    torch.testing.assert_close(y.mean(dim=1), torch.zeros(2, 5, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=1, unbiased=False), torch.ones(2, 5, 5), atol=1e-4, rtol=0)


def test_convnext_block_starts_close_to_identity_and_drop_path_skips_the_branch():
    block = ConvNeXtBlock(16, layer_scale=1e-6)
    # 7x7 depthwise (+bias), LayerNorm, 16 -> 64 -> 16 MLP, per-channel layer scale
    assert count_parameters(block) == (49 * 16 + 16) + 2 * 16 + (16 * 64 + 64) + (64 * 16 + 16) + 16 == 2_976
    x = torch.randn(2, 16, 8, 8)
    block.eval()
    assert (block(x) - x).abs().max() < 1e-4  # layer scale 1e-6: the residual branch barely contributes yet
    always_dropped = ConvNeXtBlock(16, layer_scale=1.0, drop_path=1.0).train()
    assert torch.equal(always_dropped(x), x)  # the whole branch dropped: stochastic depth
    assert not torch.equal(always_dropped.eval()(x), x)  # in eval the branch is always kept


def test_patch_embedding_is_a_linear_map_of_flattened_patches():
    embed = PatchEmbedding(image_size=32, patch_size=4, in_channels=3, width=64)
    assert embed.num_patches == 64
    x = torch.randn(2, 3, 32, 32)
    tokens = embed(x)
    assert tokens.shape == (2, 64, 64)
    # Dosovitskiy et al. 2021, Eq. 1: x_p E, with x_p the flattened 4x4x3 patches in raster order
    patches = nn.functional.unfold(x, kernel_size=4, stride=4).transpose(1, 2)  # (2, 64, 48)
    expected = patches @ embed.weight.reshape(64, -1).T + embed.bias
    torch.testing.assert_close(tokens, expected, atol=1e-5, rtol=1e-4)


def test_patch_embedding_rejects_sizes_it_was_not_built_for():
    embed = PatchEmbedding(image_size=32, patch_size=4, in_channels=3, width=64)
    with pytest.raises(ConvlabError, match="expects 32x32 images, got 28x28"):
        embed(torch.randn(1, 3, 28, 28))
    with pytest.raises(ConvlabError, match="image_size=30 and patch_size=4"):
        PatchEmbedding(image_size=30, patch_size=4, in_channels=3, width=64)


def test_encoder_block_computes_a_standard_pre_norm_transformer_layer():
    block = TransformerEncoderBlock(width=64, heads=4, mlp_dim=128).eval()
    # two LayerNorms, attention (Q, K, V and output projections), two-layer MLP
    assert (
        count_parameters(block)
        == 2 * 2 * 64 + (4 * 64 * 64 + 4 * 64) + (64 * 128 + 128 + 128 * 64 + 64)
        == 33_472
    )
    reference = nn.TransformerEncoderLayer(
        64, 4, 128, dropout=0.0, activation="gelu", layer_norm_eps=1e-6, batch_first=True, norm_first=True
    ).eval()
    mapping = {"ln_1": "norm1", "ln_2": "norm2", "self_attention": "self_attn"}
    mapping.update({"mlp.0": "linear1", "mlp.3": "linear2"})
    state = {}
    for key, value in block.state_dict().items():
        prefix = next(p for p in mapping if key.startswith(p + "."))
        state[mapping[prefix] + key[len(prefix) :]] = value
    reference.load_state_dict(state, strict=True)
    x = torch.randn(2, 17, 64)
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference(x), atol=1e-5, rtol=1e-4)


def test_encoder_adds_positions_and_keeps_the_sequence_shape():
    encoder = TransformerEncoder(seq_length=17, depth=2, width=32, heads=4, mlp_dim=64)
    assert list(encoder.layers._modules) == ["encoder_layer_0", "encoder_layer_1"]
    assert encoder.pos_embedding.shape == (1, 17, 32)
    assert math.isclose(encoder.pos_embedding.std().item(), 0.02, rel_tol=0.2)  # BERT's init
    assert encoder(torch.randn(3, 17, 32)).shape == (3, 17, 32)
    with pytest.raises(ConvlabError, match="width=32 and heads=5"):
        TransformerEncoder(seq_length=17, depth=1, width=32, heads=5, mlp_dim=64)
