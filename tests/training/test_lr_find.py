"""The learning-rate range test: convlab lr-find, and train --lr auto."""

import itertools

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn

import convlab
from convlab.cli import main
from convlab.errors import ConvlabError
from convlab.training.lr_range import learning_rates, range_test
from tests.helpers import assert_png

TINY = {"model": "lenet5", "data": "digits", "limit": 300}


def test_the_range_test_puts_weights_optimizer_and_random_streams_back():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = [(torch.randn(16, 20), torch.randint(0, 3, (16,))) for _ in range(4)]
    nn.functional.cross_entropy(model(data[0][0]), data[0][1]).backward()
    optimizer.step()  # a momentum buffer to keep
    before = {k: v.clone() for k, v in model.state_dict().items()}
    momentum = {id(p): optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()}
    stream = torch.get_rng_state()

    def step(images, labels):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    test = range_test(model, optimizer, itertools.cycle(data), step, 1e-5, 1.0, 30)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm's running figures too
    assert all(
        torch.equal(momentum[id(p)], optimizer.state[p]["momentum_buffer"]) for p in model.parameters()
    )
    assert optimizer.param_groups[0]["lr"] == 0.1
    assert torch.equal(torch.get_rng_state(), stream)
    assert all(1e-5 <= lr <= 1.0 for lr in (test.suggestion, test.steepest, test.minimum))
    assert test.lrs == learning_rates(1e-5, 1.0, 30)[: len(test.lrs)]


def test_lr_find_writes_the_curve_and_suggests_a_rate_inside_its_range(tmp_path, capsys):
    test = convlab.lr_find(**TINY, start=1e-5, end=10, steps=40, out=str(tmp_path / "lr"))
    assert 1e-5 <= test.suggestion <= 10 and test.suggestion == pytest.approx(test.minimum / 10)
    assert (tmp_path / "lr" / "lr_find.csv").read_text().startswith("lr,loss,smoothed_loss\n")
    assert_png(tmp_path / "lr" / "lr_find.png")
    assert "suggested lr" in (tmp_path / "lr" / "train.log").read_text()
    assert "lr_find.png" in test._repr_html_() or "<img" in test._repr_html_()
    assert (
        main(
            [
                "lr-find",
                "--model",
                "lenet5",
                "--data",
                "digits",
                "--limit",
                "300",
                "--steps",
                "20",
                "--out",
                str(tmp_path / "cli"),
            ]
        )
        == 0
    )
    assert "suggested lr" in capsys.readouterr().out


def test_train_lr_auto_trains_exactly_as_the_rate_it_chose(tmp_path):
    auto = convlab.train(**TINY, epochs=1, lr="auto", out=str(tmp_path / "auto"))
    chosen = yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text())["lr"]
    assert isinstance(chosen, float) and "--lr auto" in (tmp_path / "auto" / "train.log").read_text()
    convlab.train(**TINY, epochs=1, lr=chosen, out=str(tmp_path / "given"))
    first = load_file(tmp_path / "auto" / "last.safetensors")
    second = load_file(tmp_path / "given" / "last.safetensors")
    assert all(torch.equal(first[k], second[k]) for k in first)  # the test left no trace in the run
    assert auto.config.lr == chosen


@pytest.mark.parametrize(
    ("start", "end", "steps", "message"),
    [
        (0, 1, 10, "--start must be a learning rate above 0"),
        (1, 0.1, 10, "from --start up to --end"),
        (1e-5, 1, 2, "at least 5"),
    ],
)
def test_a_bad_range_is_one_sentence(start, end, steps, message):
    with pytest.raises(ConvlabError, match=message):
        learning_rates(start, end, steps)


def test_lr_auto_is_a_setting_and_anything_else_is_refused(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["train", "--lr", "fast", "--epochs", "1"])
    assert exit.value.code == 2
    assert "'fast' is not a learning rate; give a number such as 0.01, or auto" in capsys.readouterr().err
