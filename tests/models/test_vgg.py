"""VGG: Table 1's six columns, Table 2's parameter counts, and torchvision compatibility."""

import pytest
import torch
import torchvision
from torch import nn

from convlab.errors import ConvlabError
from convlab.models import create_model, get_model_info
from convlab.models.vgg import VGG_CONFIGS
from tests.helpers import count_parameters, on_meta

SHARED_WITH_TORCHVISION = ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
PAPER_COLUMNS = ["vgg11", "vgg11_lrn", "vgg13", "vgg16_c", "vgg16", "vgg19"]  # A, A-LRN, B, C, D, E
ALL_VGG = [*PAPER_COLUMNS, "vgg11_bn", "vgg13_bn", "vgg16_c_bn", "vgg16_bn", "vgg19_bn"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("vgg11", 132_863_336), ("vgg13", 133_047_848), ("vgg16", 138_357_544), ("vgg19", 143_667_240)],
)
def test_parameter_counts_equal_torchvisions(name, expected):
    assert count_parameters(on_meta(name)) == expected


@pytest.mark.parametrize(
    ("name", "column", "weight_layers", "millions"),
    [  # Simonyan & Zisserman 2014, Table 1 (weight layers) and Table 2 (parameters, millions)
        ("vgg11", "A", 11, 133),
        ("vgg11_lrn", "A-LRN", 11, 133),
        ("vgg13", "B", 13, 133),
        ("vgg16_c", "C", 16, 134),
        ("vgg16", "D", 16, 138),
        ("vgg19", "E", 19, 144),
    ],
)
def test_table_1_depths_and_table_2_parameters(name, column, weight_layers, millions):
    model = on_meta(name)
    assert sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()) == weight_layers
    assert sum(entry.startswith("conv") for entry in VGG_CONFIGS[column]) + 3 == weight_layers
    assert round(count_parameters(model) / 1e6) == millions


def test_column_c_uses_1x1_convolutions_at_the_end_of_stages_3_to_5():
    kernels = [m.kernel_size[0] for m in on_meta("vgg16_c").modules() if isinstance(m, nn.Conv2d)]
    assert kernels == [3, 3, 3, 3, 3, 3, 1, 3, 3, 1, 3, 3, 1]
    # D differs from C only there: 3x3 instead of 1x1 for 256->256 and twice 512->512.
    difference = count_parameters(on_meta("vgg16")) - count_parameters(on_meta("vgg16_c"))
    assert difference == (9 - 1) * (256 * 256 + 2 * 512 * 512)


def test_a_lrn_normalises_after_the_first_convolution():
    features = on_meta("vgg11_lrn").features
    assert [type(m) for m in features[:4]] == [nn.Conv2d, nn.ReLU, nn.LocalResponseNorm, nn.MaxPool2d]
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in features) == 1


@pytest.mark.parametrize("name", ALL_VGG)
def test_every_column_runs_at_32x32(name):
    model = on_meta(name, num_classes=10)
    assert model.features(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 512, 1, 1)
    assert model(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 10)
    if name.endswith("_bn"):
        convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
        assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == convs


def test_forward_and_backward_at_32x32():
    model = create_model("vgg11_bn", num_classes=10)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert model.features[0].weight.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", SHARED_WITH_TORCHVISION)
def test_torchvision_weights_load_and_outputs_agree(name):
    assert get_model_info(name).torchvision == name
    reference = getattr(torchvision.models, name)(weights=None).eval()
    ours = on_meta(name)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    ours.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-4)


def test_activation_and_dropout_options():
    model = on_meta("vgg16", activation="leaky_relu", dropout=0.3)
    assert sum(isinstance(m, nn.LeakyReLU) for m in model.modules()) == 13 + 2
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    assert on_meta("vgg11", in_chans=1).features[0].in_channels == 1
    with pytest.raises(ConvlabError, match="dropout must be a probability"):
        on_meta("vgg11", dropout=1.0)
    with pytest.raises(ConvlabError, match="does not take option"):
        on_meta("vgg11", batch_norm=True)  # batch norm is chosen by name: vgg11_bn


def test_vgg_mini_is_the_small_image_column_with_a_pooled_head():
    from convlab.analysis import summary

    model = on_meta("vgg_mini")
    assert count_parameters(model) == 145_290
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 32, 64, 64, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == len(convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 3
    # 28x28 -> 14 -> 7 -> 3: 6.2M multiply-adds, the first conv 28*28*16*9
    report = summary("vgg_mini")  # at its designed 1x28x28
    assert report.totals.macs == 6_196_736
    assert report.layer("features.0").macs == 28 * 28 * 16 * 9


def test_vgg_mini_width_scales_every_stage_and_any_input_size_works():
    wide = on_meta("vgg_mini", width=2, in_chans=3, num_classes=100)
    assert [c.out_channels for c in wide.modules() if isinstance(c, nn.Conv2d)] == [32, 64, 64, 128, 128, 256]
    assert wide(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 100)
    model = create_model("vgg_mini", dropout=0.2)
    logits = model(torch.randn(4, 1, 28, 28))
    logits.sum().backward()
    assert logits.shape == (4, 10) and model.features[0].weight.grad.abs().sum() > 0
    with pytest.raises(ConvlabError, match="width must be a whole number"):
        on_meta("vgg_mini", width=0)


def test_vgg_mini_without_batch_norm_is_the_same_stack_with_conv_biases():
    plain = on_meta("vgg_mini", batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    convs = [m for m in plain.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 32, 64, 64, 128]
    # batch norm's scale and shift (2 per channel) go; the convolutions keep their biases either way
    assert all(c.bias is not None for c in convs)
    assert count_parameters(plain) == 145_290 - 2 * sum(c.out_channels for c in convs)
    with pytest.raises(ConvlabError, match="batch_norm must be true or false"):
        on_meta("vgg_mini", batch_norm="no")


def test_vgg_mini_ceil_pool_keeps_the_7x7_maps_last_row_and_column():
    from convlab.analysis import summary

    floor, ceil = create_model("vgg_mini"), create_model("vgg_mini", ceil_pool=True)
    last_row = torch.zeros(1, 64, 7, 7)
    last_row[..., 6, :] = 1.0  # the third stage's maps, nonzero only in their last row
    # floor pooling takes 7x7 to 3x3, its 2x2 windows never reaching row 6; ceil pooling takes it to 4x4
    assert floor.features[17](last_row).shape[-2:] == (3, 3) and floor.features[17](last_row).sum() == 0
    assert (
        ceil.features[17](last_row).shape[-2:] == (4, 4) and ceil.features[17](last_row)[..., 3, :].min() == 1
    )
    report = summary("vgg_mini", ceil_pool=True)  # the last convolution runs at 4x4 instead of 3x3
    assert report.layer("features.18").macs == 4 * 4 * 128 * 64 * 9
    assert report.totals.macs == 6_196_736 + (16 - 9) * 128 * 64 * 9
    assert ceil(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ConvlabError, match="ceil_pool must be true or false"):
        on_meta("vgg_mini", ceil_pool="yes")
