"""SE-ResNet-50 (Hu et al. 2018): ResNet-50 plus a squeeze-and-excitation gate on every residual branch."""

import pytest
import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.models import create_model, get_model_info
from tests.helpers import count_parameters

RESNET50_PARAMETERS = 25_557_032  # torchvision resnet50
RESNET50_STAGES = [
    (256, 3),
    (512, 4),
    (1024, 6),
    (2048, 3),
]  # (C = 4 * width, blocks), He et al. 2015 Table 1


def se_parameters(reduction: int = 16) -> int:
    """fc1: C -> C/r with bias, fc2: C/r -> C with bias, in each of ResNet-50's 16 bottlenecks."""
    return sum(
        blocks * (2 * channels * channels // reduction + channels // reduction + channels)
        for channels, blocks in RESNET50_STAGES
    )


def test_parameters_are_resnet50_plus_the_se_gates():
    with torch.device("meta"):
        model = create_model("se_resnet50")
    assert se_parameters() == 2_530_992
    assert count_parameters(model) == RESNET50_PARAMETERS + se_parameters() == 28_088_024  # paper: 28.09M


def test_keys_are_resnet50_keys_plus_timm_style_se_keys():
    with torch.device("meta"):
        se_keys = set(create_model("se_resnet50").state_dict())
        resnet_keys = set(create_model("resnet50").state_dict())
    extra = se_keys - resnet_keys
    assert resnet_keys <= se_keys
    assert len(extra) == 16 * 4  # fc1/fc2 weight and bias in each of 16 blocks
    assert {"layer1.0.se.fc1.weight", "layer1.0.se.fc1.bias", "layer4.2.se.fc2.weight"} <= extra
    assert all(".se.fc" in k for k in extra)


def gate_every_block(model: nn.Module, bias: float) -> None:
    """Force every SE gate to sigmoid(bias) whatever the input: 1 for a large bias, 0 for a very negative one."""
    for module in model.modules():
        if hasattr(module, "se") and not isinstance(module.se, nn.Identity):
            nn.init.zeros_(module.se.fc2.weight)
            nn.init.constant_(module.se.fc2.bias, bias)


def test_se_scales_the_residual_branch_before_the_addition():
    resnet = create_model("resnet50", num_classes=10).eval()
    se_resnet = create_model("se_resnet50", num_classes=10).eval()
    se_resnet.load_state_dict(resnet.state_dict(), strict=False)  # shares every weight except the gates
    x = torch.randn(1, 3, 64, 64)

    gate_every_block(se_resnet, bias=50.0)  # gate = 1: the SE-ResNet is exactly the ResNet
    with torch.no_grad():
        torch.testing.assert_close(se_resnet(x), resnet(x), atol=1e-5, rtol=1e-4)

    gate_every_block(se_resnet, bias=-50.0)  # gate = 0: each block keeps only act(shortcut(x))
    for stage in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4):
        for block in stage:
            nn.init.zeros_(block.bn3.weight)
            nn.init.zeros_(block.bn3.bias)
    with torch.no_grad():
        gated, branchless = se_resnet(x), resnet(x)
    torch.testing.assert_close(gated, branchless, atol=1e-5, rtol=1e-4)
    assert gated.abs().sum() > 0  # the shortcut carries the signal: the gate sits before the addition


def test_runs_forward_and_backward_at_32x32_grey():
    model = create_model("se_resnet50", num_classes=10, in_chans=1)
    logits = model(torch.randn(2, 1, 32, 32))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert model.layer2[0].se.fc1.weight.grad.abs().sum() > 0


def test_options():
    info = get_model_info("se_resnet50")
    assert (info.family, info.year, info.torchvision) == ("senet", 2018, None)
    with torch.device("meta"):
        model = create_model("se_resnet50", se_reduction=8, stride_in="1x1", activation="tanh")
    assert model.layer1[0].se.fc1.out_channels == 256 // 8
    assert model.layer2[0].conv1.stride == (2, 2)
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 1 + 16 * 3
    with torch.device("meta"):
        assert count_parameters(model) == RESNET50_PARAMETERS + se_parameters(8)
    with pytest.raises(ConvlabError, match="se_reduction must be a positive integer"):
        create_model("se_resnet50", se_reduction=0)
