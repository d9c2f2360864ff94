"""--log-gradients: per-layer gradient, weight and update norms and inactive units, and their picture."""

import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from convlab.cli import main
from convlab.report.gradients import read_gradients
from convlab.training import train
from convlab.training.gradients import inactive_fraction
from tests.helpers import assert_png

TINY = {"model": "lenet5", "data": "digits", "epochs": 2, "limit": 300, "batch_size": 50}


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    root = tmp_path_factory.mktemp("gradients")
    train(**TINY, out=str(root / "off"))
    train(**TINY, log_gradients=4, out=str(root / "on"))
    return root


def test_logging_changes_nothing_in_the_weights(logged):
    off = load_file(logged / "off" / "last.safetensors")
    on = load_file(logged / "on" / "last.safetensors")
    assert off.keys() == on.keys() and all(torch.equal(off[k], on[k]) for k in off)
    assert not (logged / "off" / "gradients.csv").exists()


def test_one_row_per_layer_per_logging_step_with_finite_values(logged):
    rows = read_gradients(logged / "on")
    # 270 training images at batch 50: 5 steps an epoch (the short last batch is dropped), 10 in all;
    # logged at the first step and every 4th
    steps = sorted({row["step"] for row in rows})
    assert steps == [1, 4, 8]
    layers = ["features.c1", "features.c3", "features.c5", "classifier.f6", "classifier.output"]
    for step in steps:
        at_step = [row for row in rows if row["step"] == step]
        assert [row["layer"] for row in at_step] == layers  # in the order the forward pass runs them
        assert [row["depth"] for row in at_step] == [1, 2, 3, 4, 5]
    assert {row["epoch"] for row in rows if row["step"] == 8} == {2}
    for row in rows:
        assert row["grad_norm"] > 0 and row["weight_norm"] > 0 and 0 < row["update_ratio"] < 1
        assert all(math.isfinite(row[k]) for k in ("grad_norm", "weight_norm", "update_ratio"))
    # LeNet-5 as in 1998 squashes with tanh: every layer but the classifier's output has one after it
    assert {row["activation"] for row in rows if row["layer"] != "classifier.output"} == {"Tanh"}
    assert all(0 <= row["inactive"] <= 1 for row in rows if row["activation"])
    assert all(row["inactive"] is None for row in rows if row["layer"] == "classifier.output")


def test_the_gradient_picture(logged, capsys):
    assert main(["plot", str(logged / "on"), "--what", "gradients"]) == 0
    assert_png(logged / "on" / "gradients.png")
    assert main(["plot", str(logged / "off"), "--what", "gradients"]) == 2
    assert "train with --log-gradients" in capsys.readouterr().err


def test_dead_relu_units_and_saturated_sigmoid_values():
    maps = torch.ones(4, 3, 2, 2)
    maps[:, 1] = 0  # channel 1 is 0 for every image: dead
    maps[0, 2] = 0  # channel 2 is 0 for one image only: alive
    assert inactive_fraction(nn.ReLU(), maps) == pytest.approx(1 / 3)
    assert inactive_fraction(nn.ReLU(), torch.zeros(8, 5)) == 1.0
    assert inactive_fraction(nn.Sigmoid(), torch.tensor([0.001, 0.5, 0.999, 0.6])) == 0.5
    assert inactive_fraction(nn.Tanh(), torch.tensor([-0.995, 0.0, 0.5, 0.999])) == 0.5
    assert inactive_fraction(nn.GELU(), torch.zeros(3)) is None  # no region without gradient


def test_sigmoid_gradients_vanish_towards_the_input_where_relu_keeps_them():
    torch.manual_seed(0)
    first_over_last = {}
    for activation in ("sigmoid", "relu"):
        layers = []
        for _ in range(8):
            layers += [nn.Linear(64, 64), nn.Sigmoid() if activation == "sigmoid" else nn.ReLU()]
        model = nn.Sequential(*layers, nn.Linear(64, 10))
        nn.functional.cross_entropy(model(torch.randn(128, 64)), torch.randint(0, 10, (128,))).backward()
        first_over_last[activation] = float(model[0].weight.grad.norm() / model[-1].weight.grad.norm())
    assert first_over_last["sigmoid"] < 1e-3 < first_over_last["relu"]
