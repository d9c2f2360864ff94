"""Network in Network and the All Convolutional Net: CIFAR-sized models without fully connected layers."""

import pytest
import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.models import create_model, get_model_info
from convlab.models.nin import MlpConv
from tests.helpers import count_parameters


def conv_params(kernel: int, inputs: int, outputs: int) -> int:
    return (kernel * kernel * inputs + 1) * outputs


def test_mlpconv_is_a_convolution_followed_by_1x1_layers():
    block = MlpConv(3, 192, 5, (160, 96))
    expected = conv_params(5, 3, 192) + conv_params(1, 192, 160) + conv_params(1, 160, 96)
    assert count_parameters(block) == expected
    assert block(torch.randn(2, 3, 32, 32)).shape == (2, 96, 32, 32)
    assert [m.kernel_size for m in block.modules() if isinstance(m, nn.Conv2d)] == [(5, 5), (1, 1), (1, 1)]


def test_nin_cifar10_parameters_and_global_average_pooling_head():
    model = create_model("nin")
    expected = (
        # block 1: 5x5 conv 192, 1x1 160, 1x1 96 = 14,592 + 30,880 + 15,456
        conv_params(5, 3, 192)
        + conv_params(1, 192, 160)
        + conv_params(1, 160, 96)
        # block 2: 5x5 conv 192, 1x1 192, 1x1 192 = 460,992 + 2 * 37,056
        + conv_params(5, 96, 192)
        + conv_params(1, 192, 192) * 2
        # block 3: 3x3 conv 192, 1x1 192, 1x1 10 = 331,968 + 37,056 + 1,930
        + conv_params(3, 192, 192)
        + conv_params(1, 192, 192)
        + conv_params(1, 192, 10)
    )
    assert count_parameters(model) == expected == 966_986
    assert sum(isinstance(m, MlpConv) for m in model.modules()) == 3
    assert not any(isinstance(m, nn.Linear) for m in model.modules())  # no fully connected layer at all
    # one 8x8 map per class (32 -> 16 -> 8), averaged into the class score
    assert model.features(torch.randn(2, 3, 32, 32)).shape == (2, 10, 8, 8)


@pytest.mark.parametrize("size", [32, 28])
def test_nin_forward_and_backward(size):
    assert get_model_info("nin").input_size == (3, 32, 32)
    model = create_model("nin", num_classes=100, activation="elu", dropout=0.3)
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    assert sum(isinstance(m, nn.ELU) for m in model.modules()) == 9
    logits = model(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 100)
    logits.sum().backward()
    assert model.features[0].conv[0].weight.grad.abs().sum() > 0


def test_all_cnn_c_has_1369738_parameters():
    expected = (
        conv_params(3, 3, 96)  # 3x3 conv 96: 2,688
        + conv_params(3, 96, 96) * 2  # 3x3 conv 96 and the stride-2 3x3 conv 96 replacing pooling: 2 * 83,040
        + conv_params(3, 96, 192)  # 3x3 conv 192: 166,080
        + conv_params(3, 192, 192) * 3  # 3x3 conv 192, stride-2 3x3 conv 192, valid 3x3 conv 192: 3 * 331,968
        + conv_params(1, 192, 192)  # 1x1 conv 192: 37,056
        + conv_params(1, 192, 10)  # 1x1 conv 10: 1,930
    )
    assert count_parameters(create_model("allcnn_c")) == expected == 1_369_738  # the paper's "1.3M"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # 5x5 conv 96, stride-2 conv 96, 5x5 conv 192, stride-2 conv 192, then the shared head
        ("allcnn_a", 7_296 + 83_040 + 460_992 + 331_968 + 331_968 + 37_056 + 1_930),
        # B adds a 1x1 conv after each 5x5 conv: 96*96 + 96 and 192*192 + 192
        ("allcnn_b", 1_254_250 + 9_312 + 37_056),
    ],
)
def test_all_cnn_a_and_b_parameters(name, expected):
    assert count_parameters(create_model(name)) == expected


@pytest.mark.parametrize("name", ["allcnn_a", "allcnn_b", "allcnn_c"])
def test_all_cnn_class_maps_are_6x6_and_pooling_is_learned(name):
    model = create_model(name)
    assert model.features(torch.randn(2, 3, 32, 32)).shape == (2, 10, 6, 6)  # "global averaging over 6x6"
    strided = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert [(m.in_channels, m.out_channels) for m in strided] == [(96, 96), (192, 192)]
    assert all(m.kernel_size == (3, 3) for m in strided)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.Linear)) for m in model.modules())
    # pool="max" is the base model of Table 1: same sizes, two convolutions fewer
    base = create_model(name, pool="max")
    assert sum(isinstance(m, nn.MaxPool2d) for m in base.modules()) == 2
    assert base.features(torch.randn(2, 3, 32, 32)).shape == (2, 10, 6, 6)
    replaced = conv_params(3, 96, 96) + conv_params(3, 192, 192)
    assert count_parameters(model) - count_parameters(base) == replaced


def test_all_cnn_dropout_follows_the_paper():
    model = create_model("allcnn_c")
    # 20% on the input, 50% after each layer that replaces pooling
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.2, 0.5, 0.5]
    assert list(model.features._modules)[0] == "drop_input"
    assert not any(isinstance(m, nn.Dropout) for m in create_model("allcnn_c", dropout=False).modules())


@pytest.mark.parametrize(("name", "size"), [("allcnn_a", 32), ("allcnn_b", 28), ("allcnn_c", 32)])
def test_all_cnn_forward_and_backward(name, size):
    model = create_model(name, num_classes=100, in_chans=1, activation="leaky_relu")
    assert sum(isinstance(m, nn.LeakyReLU) for m in model.modules()) == sum(
        isinstance(m, nn.Conv2d) for m in model.modules()
    )
    logits = model(torch.randn(2, 1, size, size))
    assert logits.shape == (2, 100)
    logits.sum().backward()
    assert model.features.conv1.weight.grad.abs().sum() > 0


def test_bad_options():
    with pytest.raises(ConvlabError, match="pool must be 'conv'"):
        create_model("allcnn_c", pool="avg")
    with pytest.raises(ConvlabError, match="dropout must be a probability"):
        create_model("nin", dropout=2)
