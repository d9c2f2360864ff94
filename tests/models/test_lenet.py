"""LeNet-5: the modern reading (61,706 parameters) and the 1998 original's sparse C3 and trainable S2/S4."""

import pytest
import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.models import create_model
from convlab.models.lenet import C3_CONNECTIONS, ScaledTanh, SparseConv2d, Subsampling, connection_table
from tests.helpers import count_parameters


def layer_parameters(model: nn.Module) -> dict[str, int]:
    return {name: count_parameters(layer) for name, layer in model.features.named_children()} | {
        name: count_parameters(layer) for name, layer in model.classifier.named_children()
    }


def test_modern_lenet5_has_61706_parameters():
    model = create_model("lenet5")
    counts = layer_parameters(model)
    assert counts["c1"] == 5 * 5 * 1 * 6 + 6 == 156
    assert counts["c3"] == 5 * 5 * 6 * 16 + 16 == 2_416  # full connection S2 -> C3
    assert counts["c5"] == 5 * 5 * 16 * 120 + 120 == 48_120
    assert counts["f6"] == 120 * 84 + 84 == 10_164
    assert counts["output"] == 84 * 10 + 10 == 850
    assert counts["s2"] == counts["s4"] == 0  # pooling without weights
    assert count_parameters(model) == 61_706


def test_c1_output_is_28x28x6_and_c5_is_120_values_at_32x32():
    model = create_model("lenet5")
    c1 = model.features.c1(torch.randn(1, 1, 32, 32))
    assert c1.shape == (1, 6, 28, 28) and c1[0].numel() == 4_704
    assert model.features(torch.randn(1, 1, 32, 32)).shape == (1, 120, 1, 1)


@pytest.mark.parametrize("name", ["lenet5", "lenet5_1998"])
def test_c5_is_the_papers_plain_convolution(name):
    """The zoo builds C5 as the paper draws it; training and prediction run it faster (convlab.speed)."""
    c5 = create_model(name).features.c5
    assert type(c5) is nn.Conv2d
    assert (c5.in_channels, c5.out_channels, c5.kernel_size) == (16, 120, (5, 5))


def test_1998_lenet5_layer_parameters():
    model = create_model("lenet5_1998")
    counts = layer_parameters(model)
    assert counts["c1"] == 156
    assert counts["s2"] == 6 * 2 == 12  # one coefficient and one bias per map
    assert counts["c3"] == 6 * (5 * 5 * 3 + 1) + 9 * (5 * 5 * 4 + 1) + 1 * (5 * 5 * 6 + 1) == 1_516
    assert counts["s4"] == 16 * 2 == 32
    assert counts["c5"] == 48_120
    # The paper's "60,000 trainable parameters"; a Linear output (84*10 + 10) replaces its RBF units.
    assert count_parameters(model) == 156 + 12 + 1_516 + 32 + 48_120 + 10_164 + 850 == 60_850


def test_c3_connection_table_is_lecuns_table_1():
    inputs = connection_table(C3_CONNECTIONS)
    assert len(inputs) == 16
    assert [len(maps) for maps in inputs] == [3] * 6 + [4] * 9 + [6]
    assert inputs[0] == [0, 1, 2] and inputs[5] == [0, 1, 5]  # contiguous triples, wrapping around
    assert inputs[6] == [0, 1, 2, 3] and inputs[12] == [0, 1, 3, 4]  # contiguous then non-contiguous fours
    assert inputs[15] == [0, 1, 2, 3, 4, 5]


def test_sparse_c3_equals_a_full_convolution_with_zeroed_connections():
    table = connection_table(C3_CONNECTIONS)
    sparse = SparseConv2d(table, kernel_size=5)
    full = nn.Conv2d(6, 16, 5)
    with torch.no_grad():
        full.weight.zero_()
        for j, (conv, maps) in enumerate(zip(sparse.maps, table)):
            full.weight[j, maps] = conv.weight[0]
            full.bias[j] = conv.bias[0]
    x = torch.randn(2, 6, 14, 14)
    torch.testing.assert_close(sparse(x), full(x))
    assert sparse(x).shape == (2, 16, 10, 10)


def test_trainable_subsampling_sums_each_window_then_scales_and_shifts():
    layer = Subsampling(1)
    with torch.no_grad():
        layer.weight.fill_(2.0)
        layer.bias.fill_(1.0)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # windows: 0+1+4+5=10, 2+3+6+7=18, 8+9+12+13=42, 10+11+14+15=50
    assert layer(x).tolist() == [[[[21.0, 37.0], [85.0, 101.0]]]]


def test_1998_defaults_scaled_tanh_and_lecun_init():
    model = create_model("lenet5_1998")
    assert sum(isinstance(m, ScaledTanh) for m in model.modules()) == 6  # C1, S2, C3, S4, C5, F6
    assert ScaledTanh()(torch.tensor([1.0, -1.0])).tolist() == pytest.approx([1.0, -1.0], abs=1e-4)
    # weights uniform in +-2.4/F_i: F_i = 25 for C1, 120 for F6
    assert model.features.c1.weight.abs().max() <= 2.4 / 25
    assert model.classifier.f6.weight.abs().max() <= 2.4 / 120
    relu = create_model("lenet5_1998", activation="relu")
    assert sum(isinstance(m, nn.ReLU) for m in relu.modules()) == 6


@pytest.mark.parametrize("name", ["lenet5", "lenet5_1998"])
def test_forward_and_backward_at_32x32(name):
    model = create_model(name)
    logits = model(torch.randn(2, 1, 32, 32))
    assert logits.shape == (2, 10)
    logits.logsumexp(1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_lenet5_activation_pool_and_channels_options():
    model = create_model("lenet5", num_classes=47, in_chans=3, activation="relu", pool="max")
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 4  # C1, C3, C5, F6
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 47)
    assert count_parameters(model) == 61_706 + 5 * 5 * 2 * 6 + 37 * 85  # two more input maps, 37 more classes
    assert sum(isinstance(m, nn.Tanh) for m in create_model("lenet5").modules()) == 4


def test_bad_lenet_options():
    with pytest.raises(ConvlabError, match="pool must be 'avg' or 'max'"):
        create_model("lenet5", pool="sum")
    with pytest.raises(ConvlabError, match="scaled_tanh"):
        create_model("lenet5_1998", activation="scaled-tanh")
