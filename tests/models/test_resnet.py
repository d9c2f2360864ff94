"""ResNet (He et al. 2015): Table 1 and the CIFAR networks of section 4.2, checked against torchvision and the paper."""

import pytest
import torch
import torchvision
from torch import nn

from convlab.errors import ConvlabError
from convlab.layers.residual import BasicBlock, Bottleneck
from convlab.models import create_model, get_model_info
from convlab.models.resnet import CIFAR_BLOCKS_PER_STAGE, IMAGENET_BLOCKS
from tests.helpers import count_parameters, randomise_batch_norms

IMAGENET_RESNETS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
CIFAR_RESNETS = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]


# ---- ImageNet ResNets (Table 1) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "parameters"),
    [
        ("resnet18", 11_689_512),  # torchvision's counts for its resnet18 .. resnet152
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
    ],
)
def test_parameter_counts_match_torchvision(name, parameters):
    with torch.device("meta"):
        model = create_model(name)
    assert count_parameters(model) == parameters


@pytest.mark.parametrize(
    ("name", "block", "blocks_per_stage"),
    [
        ("resnet18", BasicBlock, [2, 2, 2, 2]),  # He et al. 2015, Table 1
        ("resnet34", BasicBlock, [3, 4, 6, 3]),
        ("resnet50", Bottleneck, [3, 4, 6, 3]),
        ("resnet101", Bottleneck, [3, 4, 23, 3]),
        ("resnet152", Bottleneck, [3, 8, 36, 3]),
    ],
)
def test_stages_stack_the_blocks_of_table_1(name, block, blocks_per_stage):
    with torch.device("meta"):
        model = create_model(name)
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    assert [len(stage) for stage in stages] == blocks_per_stage
    assert all(isinstance(b, block) for stage in stages for b in stage)
    depth = int(name.removeprefix("resnet"))
    assert IMAGENET_BLOCKS[depth] == (block, blocks_per_stage)
    # The name counts weighted layers: the stem conv, 2 or 3 convs per block, and the fc.
    convs_per_block = 2 if block is BasicBlock else 3
    assert 1 + convs_per_block * sum(blocks_per_stage) + 1 == depth


@pytest.mark.parametrize("name", IMAGENET_RESNETS)
def test_state_dict_keys_and_shapes_match_torchvision(name):
    with torch.device("meta"):
        ours = create_model(name).state_dict()
        theirs = getattr(torchvision.models, name)(weights=None).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    assert "layer2.0.downsample.0.weight" in ours and "layer1.0.conv2.weight" in ours


@pytest.mark.parametrize("name", IMAGENET_RESNETS)
def test_torchvision_weights_load_and_give_the_same_outputs(name):
    reference = getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    randomise_batch_norms(reference)
    ours = create_model(name, num_classes=10).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)  # every stage still has a map at 64x64 (2x2 at layer4); keeps the test fast
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_runs_forward_and_backward_at_32x32_grey(name):
    model = create_model(name, num_classes=10, in_chans=1)
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    logits = model(torch.randn(2, 1, 32, 32))  # layer4 sees a 1x1 map; the adaptive pool still works
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert model.conv1.weight.grad is not None and model.conv1.weight.grad.abs().sum() > 0


def test_output_shapes_at_224_and_28():
    model = create_model("resnet18").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
        assert model(torch.randn(1, 3, 28, 28)).shape == (1, 1000)


def test_stride_in_picks_v1_or_v1_5_with_the_same_keys():
    v1_5 = create_model("resnet50", num_classes=10).eval()
    v1 = create_model("resnet50", num_classes=10, stride_in="1x1").eval()
    assert v1.state_dict().keys() == v1_5.state_dict().keys()
    for stage in (v1.layer2, v1.layer3, v1.layer4):
        assert (stage[0].conv1.stride, stage[0].conv2.stride) == ((2, 2), (1, 1))  # the paper's v1
    for stage in (v1_5.layer2, v1_5.layer3, v1_5.layer4):
        assert (stage[0].conv1.stride, stage[0].conv2.stride) == ((1, 1), (2, 2))  # torchvision's v1.5
    v1.load_state_dict(v1_5.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = v1(x), v1_5(x)
    assert a.shape == b.shape == (1, 10)
    assert not torch.allclose(a, b)  # same weights, different sampling positions in the downsampling blocks


def test_zero_init_residual_zeroes_the_last_batch_norm_of_every_block():
    resnet50 = create_model("resnet50", zero_init_residual=True)
    assert all(
        torch.count_nonzero(block.bn3.weight) == 0
        for stage in (resnet50.layer1, resnet50.layer2, resnet50.layer3, resnet50.layer4)
        for block in stage
    )
    assert torch.count_nonzero(resnet50.layer1[0].bn2.weight) == 64
    resnet18 = create_model("resnet18", zero_init_residual=True)
    assert torch.count_nonzero(resnet18.layer3[1].bn2.weight) == 0
    assert torch.all(create_model("resnet18").layer3[1].bn2.weight == 1)  # default: BN scale one


@pytest.mark.parametrize(("name", "slots"), [("resnet18", 1 + 8 * 2), ("resnet50", 1 + 16 * 3)])
def test_activation_option_replaces_every_relu(name, slots):
    with torch.device("meta"):
        model = create_model(name, activation="tanh")
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == slots
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())


def test_registry_describes_the_imagenet_models():
    info = get_model_info("resnet50")
    assert (info.family, info.year, info.torchvision, info.input_size) == (
        "resnet",
        2015,
        "resnet50",
        (3, 224, 224),
    )
    assert info.options == ["activation", "stride_in", "zero_init_residual"]
    assert get_model_info("resnet18").options == [
        "activation",
        "zero_init_residual",
    ]  # no bottleneck, no stride_in
    with pytest.raises(ConvlabError, match="stride_in"):
        create_model("resnet18", stride_in="1x1")
    with pytest.raises(ConvlabError, match="stride_in '3'"):
        create_model("resnet50", stride_in="3")


# ---- CIFAR ResNets (section 4.2) -------------------------------------------------------------------------


def cifar_resnet_parameters(n: int, num_classes: int = 10, projection: bool = False) -> int:
    """Section 4.2 by hand: 3x3 convs without bias, BN (scale and shift) after each, fc at the end."""

    def conv(c_in, c_out, k=3):
        return k * k * c_in * c_out

    def bn(c):
        return 2 * c

    stem = conv(3, 16) + bn(16)
    stage1 = n * (2 * conv(16, 16) + 2 * bn(16))
    stage2 = conv(16, 32) + conv(32, 32) + 2 * bn(32) + (n - 1) * (2 * conv(32, 32) + 2 * bn(32))
    stage3 = conv(32, 64) + conv(64, 64) + 2 * bn(64) + (n - 1) * (2 * conv(64, 64) + 2 * bn(64))
    shortcuts = conv(16, 32, 1) + bn(32) + conv(32, 64, 1) + bn(64) if projection else 0
    fc = 64 * num_classes + num_classes
    return stem + stage1 + stage2 + stage3 + shortcuts + fc


@pytest.mark.parametrize(
    ("name", "n", "option_a", "option_b"),
    [
        # Paper: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M. Option A rounds to each of them;
        # option B's 466,906 and 855,770 would round to 0.47M and 0.86M.
        ("resnet20", 3, 269_722, 272_474),
        ("resnet32", 5, 464_154, 466_906),
        ("resnet44", 7, 658_586, 661_338),
        ("resnet56", 9, 853_018, 855_770),
        ("resnet110", 18, 1_727_962, 1_730_714),
    ],
)
def test_cifar_parameter_counts(name, n, option_a, option_b):
    depth = int(name.removeprefix("resnet"))
    assert CIFAR_BLOCKS_PER_STAGE[depth] == n and 6 * n + 2 == depth
    assert cifar_resnet_parameters(n) == option_a
    assert cifar_resnet_parameters(n, projection=True) == option_b
    assert count_parameters(create_model(name)) == option_a  # shortcut="A" is the default, as in the paper
    assert count_parameters(create_model(name, shortcut="B")) == option_b
    assert count_parameters(create_model(name, num_classes=100)) == cifar_resnet_parameters(n, 100)


@pytest.mark.parametrize("name", CIFAR_RESNETS)
def test_cifar_depth_counts_the_weighted_layers(name):
    model = create_model(name)  # option A: the shortcuts have no weights, so every conv is on the path
    weighted = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    assert weighted == int(name.removeprefix("resnet"))


def test_cifar_stages_map_32_16_8_and_train():
    model = create_model("resnet20")
    assert (
        get_model_info("resnet20").input_size == (3, 32, 32) and get_model_info("resnet20").num_classes == 10
    )
    x = torch.randn(4, 3, 32, 32)
    features = model.act(model.bn1(model.conv1(x)))
    sizes = []
    for stage in (model.layer1, model.layer2, model.layer3):
        features = stage(features)
        sizes.append(tuple(features.shape[1:]))
    assert sizes == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    logits = model(x)
    assert logits.shape == (4, 10)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    assert model.layer1[0].conv1.weight.grad.abs().sum() > 0


def test_cifar_shortcut_option_a_is_parameter_free_and_b_projects():
    assert not any("downsample" in k for k in create_model("resnet20").state_dict())
    keys = create_model("resnet20", shortcut="B").state_dict()
    assert keys["layer2.0.downsample.0.weight"].shape == (32, 16, 1, 1)
    assert keys["layer3.0.downsample.0.weight"].shape == (64, 32, 1, 1)
    with pytest.raises(ConvlabError, match="shortcut 'C'"):
        create_model("resnet20", shortcut="C")


def test_cifar_options_reach_every_block():
    model = create_model("resnet20", in_chans=1, num_classes=2, activation="elu", zero_init_residual=True)
    assert sum(isinstance(m, nn.ELU) for m in model.modules()) == 1 + 9 * 2
    assert all(
        torch.count_nonzero(b.bn2.weight) == 0 for s in (model.layer1, model.layer2, model.layer3) for b in s
    )
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 2)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 2)


PLAIN_NETS = ["plain20", "plain32", "plain44", "plain56"]


@pytest.mark.parametrize("name", PLAIN_NETS)
def test_plain_nets_have_their_resnets_parameters_and_depth(name):
    depth = int(name.removeprefix("plain"))
    plain, residual = create_model(name), create_model(f"resnet{depth}")
    # Figure 6 compares networks with the same weights; option A shortcuts add none (0.27M ... 0.85M).
    assert count_parameters(plain) == count_parameters(residual) == cifar_resnet_parameters(depth // 6)
    assert [p.shape for p in plain.parameters()] == [p.shape for p in residual.parameters()]
    assert sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in plain.modules()) == depth


def test_plain_net_has_no_shortcut_to_carry_the_input():
    torch.manual_seed(0)
    plain, residual = create_model("plain20").eval(), create_model("resnet20").eval()
    residual.load_state_dict(plain.state_dict())
    block_input = torch.randn(1, 16, 8, 8)
    for block in (plain.layer1[0], residual.layer1[0]):
        for conv in (block.conv1, block.conv2):
            nn.init.zeros_(conv.weight)  # the branch gives act(bn(0)) = act(bn bias) = 0
    assert torch.count_nonzero(plain.layer1[0](block_input)) == 0
    assert torch.equal(residual.layer1[0](block_input), torch.relu(block_input))


def test_plain_nets_refuse_residual_options():
    with pytest.raises(ConvlabError, match="shortcut"):
        create_model("plain20", shortcut="B")
