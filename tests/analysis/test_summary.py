"""convlab.summary: per-layer shapes, parameters and multiply-adds from a forward pass, against the
figures of the papers, the notes (NUMBERS.md) and torchvision."""

import json
import time

import pytest
import torch
import torchvision
from torch import nn

import convlab
from convlab.analysis import CONVENTIONS, summary
from convlab.layers import DepthwiseSeparableConv
from tests.helpers import count_parameters


def meta(builder, **kwargs) -> nn.Module:
    """A torchvision model without allocating its weights."""
    with torch.device("meta"):
        return builder(**kwargs)


# ---- LeNet-5 (notes 000, 002) ----------------------------------------------------------------------------


def test_lenet5_layers_match_the_notes():
    result = summary("lenet5")  # 1x32x32, the model's own input size
    c1 = result.layer("features.c1")
    assert c1.params == 5 * 5 * 1 * 6 + 6 == 156
    assert c1.output_shape == (6, 28, 28)
    assert c1.activations == 4_704
    c5 = result.layer("features.c5")
    assert c5.params == 5 * 5 * 16 * 120 + 120 == 48_120
    assert c5.activations == 120
    assert result.totals.params == 61_706
    assert result.input_size == (1, 32, 32)


def test_lenet5_1998_sparse_c3_and_trainable_subsampling():
    result = summary("lenet5_1998")
    c3_rows = [row for row in result.layers if row.name.startswith("features.c3.")]
    assert sum(row.params for row in c3_rows) == 1_516  # LeCun et al. 1998: the 6->16 connection table
    assert result.layer("features.s2").params == 12  # a coefficient and a bias per map
    assert result.layer("features.s4").params == 32
    assert result.layer("features.c3.maps.0").output_shape == (1, 10, 10)


# ---- AlexNet (notes 000-003) -----------------------------------------------------------------------------


def test_alexnet_lrn_layer_sizes_at_227():
    result = summary("alexnet_lrn")
    assert result.input_size == (3, 227, 227)
    assert result.layer("features.conv1").output_shape == (96, 55, 55)
    assert result.layer("features.pool1").output_shape == (96, 27, 27)
    assert result.layer("features.pool5").output_shape == (256, 6, 6)
    # Krizhevsky et al.'s neuron counts 186,624-64,896-64,896-43,264 for conv2..conv5; their conv1
    # figure 253,440 does not match 55x55x96 = 290,400 (the paper's 224 input does not give 55 either).
    counts = [result.layer(f"features.conv{i}").activations for i in range(1, 6)]
    assert counts == [290_400, 186_624, 64_896, 64_896, 43_264]


def test_alexnet_two_gpu_grouping_halves_conv2_conv4_conv5():
    single, grouped = summary("alexnet_lrn"), summary("alexnet_lrn", groups=2)
    assert single.totals.params == 62_378_344
    assert grouped.totals.params == 60_965_224  # CaffeNet's count ("about 61M", notes 003)
    assert grouped.layer("features.conv2").groups == 2
    assert grouped.totals.macs == pytest.approx(0.72e9, rel=0.01)  # "0.7 G multiply-adds" (003)


def test_torchvision_alexnet_at_224():
    result = summary(meta(torchvision.models.alexnet), (3, 224, 224))
    assert result.layer("features.0").output_shape == (64, 55, 55)  # torchvision's 64-filter single tower
    assert result.totals.params == 61_100_840
    assert result.totals.macs == pytest.approx(0.714e9, rel=0.001)  # torchvision: "0.71 GFLOPS"


# ---- VGG, ResNet, and torchvision's published figures ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [("vgg11", 132_863_336), ("vgg13", 133_047_848), ("vgg16", 138_357_544), ("vgg19", 143_667_240)],
)
def test_vgg_parameter_totals(name, params):
    result = summary(name)
    with torch.device("meta"):
        model = convlab.create_model(name)
    assert result.totals.params == count_parameters(model) == params
    assert sum(row.params for row in result.layers) == params  # the params column adds up


def test_vgg16_c_uses_1x1_convolutions_in_stages_3_to_5():
    result = summary("vgg16_c")
    kernels = [row.kernel for row in result.layers if row.type == "Conv2d"]
    assert kernels.count((1, 1)) == 3  # Simonyan & Zisserman 2014, Table 1, column C
    assert result.totals.params == pytest.approx(134e6, rel=0.005)  # Table 2: 134M


@pytest.mark.parametrize(
    ("name", "torchvision_gflops"),
    # torchvision's "GFLOPS" (weights meta "_ops") count one multiply-add as one op: they are MACs.
    [("resnet18", 1.81), ("resnet34", 3.66), ("resnet50", 4.09), ("resnet101", 7.80), ("resnet152", 11.51)],
)
def test_resnet_macs_v15_match_torchvision(name, torchvision_gflops):
    assert summary(name).totals.macs / 1e9 == pytest.approx(torchvision_gflops, rel=0.01)


@pytest.mark.parametrize(
    ("name", "paper_gflops"),
    [("resnet50", 3.8), ("resnet101", 7.6), ("resnet152", 11.3)],  # He et al. 2015, Table 1
)
def test_resnet_macs_v1_striding_match_the_paper(name, paper_gflops):
    # The paper strides in the first 1x1 of a downsampling bottleneck; it gives 2 significant digits
    # (3.86 -> "3.8"), hence 2%.
    macs = summary(name, stride_in="1x1").totals.macs / 1e9
    assert macs == pytest.approx(paper_gflops, rel=0.02)
    assert macs < summary(name).totals.macs / 1e9  # striding before the 3x3 makes it cheaper


@pytest.mark.parametrize(("name", "paper_gflops"), [("resnet18", 1.8), ("resnet34", 3.6)])
def test_resnet_basic_block_macs_match_the_paper(name, paper_gflops):
    assert summary(name).totals.macs / 1e9 == pytest.approx(paper_gflops, rel=0.02)  # 3.66 -> "3.6"


@pytest.mark.parametrize(
    ("builder", "size", "weights"),
    [
        (torchvision.models.resnet18, 224, torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
        (torchvision.models.resnet50, 224, torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
        (torchvision.models.vgg16, 224, torchvision.models.VGG16_Weights.IMAGENET1K_V1),
        (torchvision.models.googlenet, 224, torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1),
        (torchvision.models.inception_v3, 299, torchvision.models.Inception_V3_Weights.IMAGENET1K_V1),
        (torchvision.models.vit_b_16, 224, torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1),
        (torchvision.models.convnext_tiny, 224, torchvision.models.ConvNeXt_Tiny_Weights.IMAGENET1K_V1),
        (torchvision.models.mobilenet_v2, 224, torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1),
    ],
)
def test_macs_equal_torchvision_reported_ops(builder, size, weights):
    """Same convention as torchvision's published figures: resnet18 1.81, resnet50 4.09, vgg16 15.47, googlenet 1.50, inception_v3
    5.71, ViT-B/16 17.56 (attention = projections + Q.K^T + A.V), convnext_tiny 4.46, mobilenet_v2 0.30."""
    kwargs = (
        {"init_weights": False}
        if builder in (torchvision.models.googlenet, torchvision.models.inception_v3)
        else {}
    )
    if builder is torchvision.models.googlenet:
        kwargs["aux_logits"] = False  # its published count, 6,624,904, leaves out the training-only heads
    result = summary(meta(builder, **kwargs), (3, size, size))
    assert result.totals.macs / 1e9 == pytest.approx(weights.meta["_ops"], abs=0.006)  # they round to 0.01
    assert result.totals.params == weights.meta["num_params"]


def test_zoo_googlenet_and_vgg16_macs():
    assert summary("vgg16").totals.macs / 1e9 == pytest.approx(15.47, rel=0.001)
    googlenet = summary("googlenet")
    assert googlenet.totals.macs / 1e9 == pytest.approx(1.5, rel=0.01)  # "about 1.5 G multiply-adds"
    # The auxiliary heads run only in training: listed, not run, their parameters still counted.
    skipped = [row for row in googlenet.layers if not row.ran]
    assert {row.name for row in skipped} == {"aux1", "aux2"}
    assert googlenet.totals.params - sum(row.params for row in skipped) == 6_624_904  # torchvision, no aux
    assert sum(row.params for row in googlenet.layers) == googlenet.totals.params


# ---- conventions: what is counted ---------------------------------------------------------------------------


def test_mlp_of_the_notes_macs_equal_its_weights():
    # Notes 002: 64x64x3 -> 1000 -> 500 -> 2 has 12,789,000 weights, 12,790,502 with biases; a linear
    # layer does one multiply-add per weight, so its MACs are the weights without the biases.
    mlp = nn.Sequential(
        nn.Flatten(), nn.Linear(12_288, 1000), nn.ReLU(), nn.Linear(1000, 500), nn.ReLU(), nn.Linear(500, 2)
    )
    result = summary(mlp, (3, 64, 64))
    assert result.totals.params == 12_790_502
    assert result.totals.macs == 12_789_000
    assert result.totals.flops == 2 * 12_789_000


def test_depthwise_separable_convolution_of_the_notes():
    # Notes 004: 20 -> 40 maps, 3x3: standard ((3*3)*20+1)*40 = 7,240; separable 200 + 840 = 1,040.
    standard = summary(nn.Conv2d(20, 40, 3, padding=1), (20, 8, 8))
    separable = summary(DepthwiseSeparableConv(20, 40, norm=False, activation=None, bias=True), (20, 8, 8))
    assert standard.totals.params == 7_240
    assert separable.totals.params == 1_040
    assert separable.layer("depthwise.0").params == 200
    assert separable.layer("pointwise.0").params == 840
    assert separable.layer("depthwise.0").groups == 20
    # MACs per output value: 9*20 = 180 standard; 9 (depthwise) + 20 (pointwise) separable.
    assert standard.totals.macs == 8 * 8 * 40 * 180
    assert separable.totals.macs == 8 * 8 * 20 * 9 + 8 * 8 * 40 * 20


def test_multihead_attention_macs_are_projections_plus_two_products():
    tokens, width = 10, 16

    class Attend(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = nn.MultiheadAttention(width, num_heads=4, batch_first=True)

        def forward(self, x):
            return self.attention(x, x, x, need_weights=False)[0]

    result = summary(Attend(), (tokens, width))
    row = result.layer("attention")
    assert row.params == 4 * width * width + 4 * width  # q, k, v, out projections and biases
    assert row.macs == 4 * tokens * width * width + 2 * tokens * tokens * width


def test_activation_bytes_count_new_tensors_only():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
    result = summary(model, (3, 16, 16))
    assert result.layer("1").returns_input  # the in-place ReLU writes into the conv's output
    assert result.totals.activations == 8 * 16 * 16 + 8 * 8 * 8
    assert result.totals.activation_bytes == 4 * (8 * 16 * 16 + 8 * 8 * 8)  # float32
    assert result.totals.param_bytes == 4 * (8 * 3 * 9 + 8)


def test_frozen_parameters_are_counted_apart():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    model[0].requires_grad_(False)  # a fixed feature extractor (notes 002, transfer learning)
    totals = summary(model, (3, 8, 8)).totals
    assert totals.frozen_params == 8 * 27 + 8
    assert totals.trainable_params == 288 * 10 + 10
    assert totals.params == totals.frozen_params + totals.trainable_params


def test_a_module_run_twice_gets_two_rows_and_its_weights_count_once():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(self.conv(x))

    result = summary(Twice(), (4, 8, 8))
    assert [row.name for row in result.layers] == ["conv", "conv[2]"]
    assert [row.params for row in result.layers] == [4 * 4 * 9 + 4, 0]
    assert result.layer("conv[2]").macs == 8 * 8 * 4 * 36
    assert result.layer("conv[2]").receptive_field == (5, 5)


# ---- the user's model is left alone; speed ------------------------------------------------------------------


def test_summary_leaves_a_real_model_untouched():
    model = torchvision.models.resnet18()
    model.train()
    model.layer1.eval()
    before = model.conv1.weight.detach().clone()
    result = summary(model, (3, 64, 64))
    assert result.device == "meta"  # stand-ins on meta: no arithmetic on the real weights
    assert model.training and not model.layer1.training and model.layer2.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert model.conv1.weight.device.type == "cpu"
    assert torch.equal(model.conv1.weight, before)
    assert result.totals.params == 11_689_512


def test_a_model_meta_cannot_run_falls_back_to_its_own_device():
    class ReadsValues(nn.Module):  # .item() needs data, which meta tensors do not have
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return self.conv(x) * float(x.abs().max().item() + 1)

    result = summary(ReadsValues(), (1, 8, 8))
    assert result.layer("conv").output_shape == (2, 6, 6)
    assert result.totals.params == 20


def test_resnet152_summary_takes_seconds():
    start = time.perf_counter()
    result = summary("resnet152", (3, 224, 224))
    assert time.perf_counter() - start < 8  # about 1 s on 2 cores: the pass runs on the meta device
    assert result.totals.params == 60_192_808


def test_json_form():
    document = json.loads(json.dumps(summary("lenet5").to_dict()))
    assert document["model"] == "lenet5"
    assert document["input"] == [1, 32, 32]
    assert document["conventions"] == CONVENTIONS
    assert set(document["totals"]) >= {
        "params",
        "trainable_params",
        "macs",
        "flops",
        "activation_bytes",
        "param_bytes",
    }
    c1 = next(layer for layer in document["layers"] if layer["name"] == "features.c1")
    assert c1["kernel"] == [5, 5] and c1["stride"] == [1, 1] and c1["output_shape"] == [6, 28, 28]
    assert c1["receptive_field"] == [5, 5] and c1["jump"] == [1, 1]


def test_table_shows_layers_totals_and_conventions():
    text = " ".join(str(summary("lenet5")).split())  # the table wraps long lines
    assert "features.c1" in text and "5x5 s1 p0" in text and "6x28x28" in text
    assert "61,706" in text  # total parameters
    assert "FLOPs = 2 x MACs" in text
    assert "pooling and additions are not counted" in text
