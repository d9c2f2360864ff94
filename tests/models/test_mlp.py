"""The MLP baselines: LeCun's MNIST table and the notes' 12,288-1000-500-2 example."""

import pytest
import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.models import create_model, get_model_info
from tests.helpers import count_parameters


def test_lecun_784_300_10_has_238510_parameters():
    model = create_model("mlp")  # hidden=(300,) on 28x28x1 MNIST digits
    assert count_parameters(model) == 784 * 300 + 300 + 300 * 10 + 10 == 238_510


@pytest.mark.parametrize(
    ("hidden", "expected"),
    [
        ((1000,), 784 * 1000 + 1000 + 1000 * 10 + 10),  # 784-1000-10: 795,010
        ((500, 150), 784 * 500 + 500 + 500 * 150 + 150 + 150 * 10 + 10),  # 784-500-150-10: 469,160
        ((), 784 * 10 + 10),  # no hidden layer: a linear classifier
        ("500,150", 469_160),  # the same widths as typed on a command line
    ],
)
def test_lecun_table_widths(hidden, expected):
    assert count_parameters(create_model("mlp", hidden=hidden)) == expected


def test_notes_mlp_on_64x64_rgb_images():
    model = create_model("mlp", num_classes=2, in_chans=3, input_size=64, hidden=(1000, 500))
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    assert weights == 12_288 * 1000 + 1000 * 500 + 500 * 2 == 12_789_000  # the slide counts weights only
    assert count_parameters(model) == 12_790_502  # with the 1000 + 500 + 2 biases
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 2)


def test_forward_and_backward_on_mnist_sized_batch():
    info = get_model_info("mlp")
    assert (info.input_size, info.num_classes) == ((1, 28, 28), 10)
    model = create_model("mlp", hidden=(500, 150))
    logits = model(torch.randn(2, 1, 28, 28))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert model.layers.fc1.weight.grad.shape == (500, 784)
    assert model.layers.fc1.weight.grad.abs().sum() > 0


def test_activation_and_dropout_options():
    model = create_model("mlp", hidden=(500, 150), activation="tanh", dropout=0.25)
    assert [type(m) for m in model.layers] == [
        nn.Linear,
        nn.Tanh,
        nn.Dropout,
        nn.Linear,
        nn.Tanh,
        nn.Dropout,
        nn.Linear,
    ]
    assert all(m.p == 0.25 for m in model.modules() if isinstance(m, nn.Dropout))
    plain = create_model("mlp")
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    assert sum(isinstance(m, nn.ReLU) for m in plain.modules()) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hidden": (300, 0)}, "hidden layer widths"),
        ({"hidden": "wide"}, "hidden must be a sequence"),
        ({"dropout": 1.5}, "dropout must be a probability"),
        ({"input_size": 0}, "input_size"),
        ({"activation": "rleu"}, "did you mean relu"),
    ],
)
def test_bad_options_are_one_sentence_errors(options, message):
    with pytest.raises(ConvlabError, match=message):
        create_model("mlp", **options)
