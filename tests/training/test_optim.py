"""Optimizers and schedules by name: what each builds, and how each schedule moves the learning rate."""

import math

import pytest
import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.training import OPTIMIZERS, SCHEDULES, Schedule, TrainConfig, build_optimizer, train_step


def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    )


def lr_curve(
    name: str, epochs: int = 6, steps: int = 10, warmup: float = 0.0, val_losses=None
) -> list[float]:
    """The lr at every step of a run with ``name`` (base lr 0.1), stepping an SGD optimizer on a tiny net."""
    optimizer = build_optimizer(small_net(), "momentum", lr=0.1)
    schedule = Schedule(optimizer, name, epochs=epochs, steps_per_epoch=steps, warmup_epochs=warmup)
    lrs = []
    for epoch in range(epochs):
        for _ in range(steps):
            lrs.append(schedule.lr)
            optimizer.step()
            schedule.after_step()
        schedule.after_epoch(val_losses[epoch] if val_losses else 1.0)
    return lrs


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_builds_and_takes_a_step(name):
    net = small_net()
    optimizer = build_optimizer(net, name)
    assert optimizer.defaults["lr"] == OPTIMIZERS[name].lr
    kernels = [p for p in net.parameters() if p.ndim > 1]
    before = [p.detach().clone() for p in kernels]
    loss = nn.functional.cross_entropy(net(torch.randn(8, 1, 8, 8)), torch.arange(8) % 3)
    loss.backward()
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, kernels))


def test_optimizers_follow_the_notes():
    net = small_net()
    momentum = build_optimizer(net, "momentum")
    assert type(momentum) is torch.optim.SGD and momentum.defaults["momentum"] == 0.9
    assert build_optimizer(net, "sgd").defaults["momentum"] == 0.0
    assert build_optimizer(net, "nesterov").defaults["nesterov"] is True
    assert build_optimizer(net, "adagrad").defaults["lr"] == 0.01  # notes 002
    rmsprop = build_optimizer(net, "rmsprop")
    assert (rmsprop.defaults["alpha"], rmsprop.defaults["lr"]) == (0.9, 0.001)  # Hinton's gamma 0.9, lr 0.001
    assert build_optimizer(net, "adam", momentum=0.8).defaults["betas"] == (0.8, 0.999)
    assert build_optimizer(net, "adamw").defaults["weight_decay"] == 0.01


def test_weight_decay_skips_biases_and_norm_parameters():
    optimizer = build_optimizer(small_net(), "momentum", weight_decay=5e-4)
    decayed, undecayed = optimizer.param_groups
    # conv kernel and linear matrix decay; conv bias, BN weight and bias, linear bias do not
    assert [tuple(p.shape) for p in decayed["params"]] == [(4, 1, 3, 3), (3, 144)]
    assert decayed["weight_decay"] == 5e-4
    assert len(undecayed["params"]) == 4 and undecayed["weight_decay"] == 0.0


def test_unknown_names_list_the_accepted_ones():
    with pytest.raises(
        ConvlabError, match="Unknown optimizer 'adamm'; did you mean adam.*Accepted: adadelta"
    ):
        build_optimizer(small_net(), "adamm")
    optimizer = build_optimizer(small_net(), "sgd")
    with pytest.raises(ConvlabError, match="Unknown schedule 'cosin'.*Accepted: .*onecycle, plateau, step"):
        Schedule(optimizer, "cosin", epochs=2, steps_per_epoch=3)
    with pytest.raises(ConvlabError, match="'adagrad' has no momentum"):
        build_optimizer(small_net(), "adagrad", momentum=0.9)


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule_builds_steps_and_starts_at_its_documented_lr(name):
    lrs = lr_curve(name)
    assert len(lrs) == 60
    assert lrs[0] == pytest.approx(0.1 / 25 if name == "onecycle" else 0.1)


def test_step_schedule_drops_tenfold_every_third_of_the_run():
    lrs = lr_curve("step", epochs=6, steps=10)  # step_size = 6 // 3 = 2 epochs = 20 steps
    assert (
        lrs[19] == pytest.approx(0.1) and lrs[20] == pytest.approx(0.01) and lrs[40] == pytest.approx(0.001)
    )


def test_exponential_schedule_falls_100x_over_the_run_and_cosine_reaches_zero():
    exponential = lr_curve("exponential")
    assert exponential[-1] == pytest.approx(0.1 * 0.01 ** (59 / 60))
    cosine = lr_curve("cosine")
    assert cosine[30] == pytest.approx(0.05) and cosine[-1] == pytest.approx(
        0.1 * (1 + math.cos(math.pi * 59 / 60)) / 2
    )


def test_onecycle_peaks_at_the_given_lr_after_30_percent():
    lrs = lr_curve("onecycle")
    assert max(lrs) == pytest.approx(0.1)
    assert lrs.index(max(lrs)) == 17  # the peak step: 30% of the 60 steps, counted from 0 (OneCycleLR)
    assert lrs[-1] < 1e-5


def test_plateau_reduces_after_patience_epochs_without_improvement():
    # val loss improves for 2 epochs, then stalls: after 3 epochs without a lower loss (> patience 2) lr x0.1
    lrs = lr_curve("plateau", val_losses=[1.0, 0.9, 0.95, 0.95, 0.95, 0.95])
    per_epoch = lrs[::10]
    assert per_epoch == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.1, 0.01])


def test_warmup_rises_linearly_from_a_hundredth():
    lrs = lr_curve("cosine", warmup=1)
    assert lrs[0] == pytest.approx(0.001) and lrs[5] == pytest.approx(0.001 + 0.099 * 5 / 10)
    assert lrs[10] == pytest.approx(0.1) and lrs[-1] < 0.001
    plateau = lr_curve("plateau", warmup=1)
    assert plateau[0] == pytest.approx(0.001) and plateau[10:] == pytest.approx([0.1] * 30 + [0.01] * 20)
    with pytest.raises(ConvlabError, match="covers the whole run"):
        lr_curve("cosine", epochs=2, warmup=2)


def _gradients_after_one_step(**clip) -> list[torch.Tensor]:
    torch.manual_seed(0)  # the same weights and batch for every call
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    optimizer = build_optimizer(net, "sgd", lr=0.01)
    schedule = Schedule(optimizer, "constant", epochs=1, steps_per_epoch=1)
    config = TrainConfig(**clip)
    images = 100 * torch.randn(8, 1, 4, 4)  # large inputs make large gradients
    train_step(net, images, torch.arange(8) % 3, optimizer, schedule, nn.CrossEntropyLoss(), config)
    return [p.grad for p in net.parameters()]


def test_clipping_by_value_bounds_every_element_and_by_norm_the_total_norm():
    unclipped = _gradients_after_one_step()
    assert max(g.abs().max() for g in unclipped) > 1.0
    assert torch.linalg.vector_norm(torch.cat([g.flatten() for g in unclipped])) > 1.0

    by_value = _gradients_after_one_step(clip_value=0.05)
    assert max(g.abs().max() for g in by_value) == pytest.approx(0.05)

    by_norm = _gradients_after_one_step(clip_norm=1.0)
    total = torch.linalg.vector_norm(torch.cat([g.flatten() for g in by_norm]))
    assert total == pytest.approx(1.0, rel=1e-5)
    # clipping by norm keeps the direction: the same gradient scaled down
    scale = by_norm[0].flatten()[0] / unclipped[0].flatten()[0]
    assert torch.allclose(by_norm[0], unclipped[0] * scale)
