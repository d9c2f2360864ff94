"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates for Training Neural Networks"; fastai's
``lr_find``): train a few steps with the learning rate growing exponentially from tiny to huge, watch the
loss, and read a good rate off the curve, where the loss falls fastest, well before it blows up.

The test changes nothing: the weights (buffers too), the optimizer's state and the random-number streams
are put back as they were, so ``train --lr auto`` trains exactly as ``train --lr <the rate it chose>``.

``range_test`` runs the test with any model, optimizer and step; ``range_test_on_run`` runs it on a run the
engine has set up, each step through ``train_step``: for ``convlab lr-find`` (engine.lr_find) and for
``train --lr auto`` before its first epoch.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.files import atomic_write
from convlab.training.optim import build_optimizer
from convlab.training.state import restore_rng, rng_state
from convlab.training.step import train_step
from convlab.transfer import freeze_batchnorm

DEFAULT_START, DEFAULT_END, DEFAULT_STEPS = 1e-7, 10.0, 100
# fastai's choices: the loss is smoothed as an exponential moving average (debiased), and the test stops
# once the smoothed loss passes 4x its minimum: from there on it only diverges.
SMOOTHING = 0.98
DIVERGED = 4.0
CSV_FILE, PLOT_FILE = "lr_find.csv", "lr_find.png"


@dataclass
class LRRangeTest:
    """The test's learning rates and losses (raw and smoothed), and what it suggests.

    ``suggestion`` is the rate at the smoothed loss's minimum divided by 10 (never below ``start``): at the
    minimum the rate is already too high to train at for long; a tenth of it is still on the steep part.
    ``steepest`` is the rate where the smoothed loss falls fastest against log(lr), the other rule of thumb.
    """

    start: float
    end: float
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    steepest: float
    minimum: float  # the rate at the smoothed loss's minimum
    stopped_early: bool  # the loss diverged (or went non-finite) before the last planned step
    files: list[Path] = field(default_factory=list)

    @property
    def suggestion(self) -> float:
        return max(self.start, self.minimum / 10)

    def describe(self) -> str:
        ended = "the loss diverged, so the test stopped" if self.stopped_early else "the test ran its course"
        return (
            f"lr range test over {len(self.lrs)} steps from {self.start:g} to {self.lrs[-1]:.3g} ({ended}): "
            f"lowest smoothed loss {min(self.smoothed):.4g} at lr {self.minimum:.3g}; steepest descent at "
            f"lr {self.steepest:.3g}; suggested lr {self.suggestion:.3g} (the minimum's / 10)"
        )

    def save(self, folder: Path) -> list[Path]:
        """lr_find.csv (every step) and lr_find.png (the curve, both suggestions marked) into ``folder``."""
        folder = Path(folder)
        rows = "".join(
            f"{lr!r},{loss!r},{smooth!r}\n" for lr, loss, smooth in zip(self.lrs, self.losses, self.smoothed)
        )
        atomic_write(folder / CSV_FILE, lambda tmp: Path(tmp).write_text("lr,loss,smoothed_loss\n" + rows))
        self.files = [folder / CSV_FILE, self.plot(folder / PLOT_FILE)]
        return self.files

    def plot(self, out_png: Path) -> Path:
        from convlab.viz.render import new_figure, save_figure

        figure = new_figure(7, 4.2)
        axes = figure.subplots()
        axes.plot(self.lrs, self.losses, color="tab:blue", alpha=0.3, label="loss")
        axes.plot(self.lrs, self.smoothed, color="tab:blue", label="smoothed loss")
        for lr, colour, label in (
            (self.suggestion, "tab:green", f"suggested {self.suggestion:.2g} (minimum / 10)"),
            (self.steepest, "tab:orange", f"steepest descent {self.steepest:.2g}"),
            (self.minimum, "tab:red", f"minimum {self.minimum:.2g}"),
        ):
            axes.axvline(lr, color=colour, linestyle="--", linewidth=1, label=label)
        axes.set_xscale("log")
        axes.set_xlabel("learning rate")
        axes.set_ylabel("training loss")
        low, high = min(self.smoothed), self.smoothed[0]
        finite = [loss for loss in self.losses if math.isfinite(loss)]
        axes.set_ylim(min(finite + [low]) * 0.95, max(high, low) * 1.6)  # the diverged tail off the top
        axes.set_title("Learning-rate range test")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
        return save_figure(figure, out_png)

    def _repr_html_(self) -> str:
        from convlab.notebook import lines_html, png_html

        picture = png_html(self.files[1], "loss against learning rate") if len(self.files) > 1 else ""
        return lines_html([self.describe()]) + picture


def learning_rates(start: float, end: float, steps: int) -> list[float]:
    """``steps`` rates from ``start`` to ``end``, evenly spaced on a log scale."""
    for name, value in (("start", start), ("end", end)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConvlabError(f"The range test's --{name} must be a learning rate above 0, got {value!r}.")
    if not start < end:
        raise ConvlabError(f"The range test runs from --start up to --end; got {start:g} to {end:g}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 5:
        raise ConvlabError(f"The range test needs --steps of at least 5 to draw a curve, got {steps!r}.")
    return [float(v) for v in np.geomspace(start, end, steps)]


def range_test(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    start: float = DEFAULT_START,
    end: float = DEFAULT_END,
    steps: int = DEFAULT_STEPS,
) -> LRRangeTest:
    """Run the test with ``step(images, labels) -> loss`` (one optimizer step) on ``batches``, then put the
    model, the optimizer and the random streams back as they were.

    Parameter groups keep their ratios (a fine-tuned backbone at lr x backbone_lr_scale): the rate tested
    and suggested is the largest group's, the one ``--lr`` sets."""
    rates = learning_rates(start, end, steps)
    top = max(group["lr"] for group in optimizer.param_groups)
    scales = [group["lr"] / top if top > 0 else 1.0 for group in optimizer.param_groups]
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_rng = rng_state()
    tried, losses, smoothed = [], [], []
    average, best, stopped = 0.0, math.inf, False
    try:
        for index, lr in enumerate(rates):
            for group, scale in zip(optimizer.param_groups, scales):
                group["lr"] = lr * scale
            images, labels = next(batches)
            loss = float(step(images, labels))
            if not math.isfinite(loss):
                stopped = True
                break
            average = SMOOTHING * average + (1 - SMOOTHING) * loss
            value = average / (1 - SMOOTHING ** (index + 1))
            tried.append(lr)
            losses.append(loss)
            smoothed.append(value)
            best = min(best, value)
            if value > DIVERGED * best:
                stopped = True
                break
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        restore_rng(saved_rng)
    if len(tried) < 5:
        raise ConvlabError(
            f"The range test's loss diverged after {len(tried)} steps, at lr {rates[len(tried)]:.3g}: start lower "
            f"(--start, now {start:g})."
        )
    return LRRangeTest(start, end, tried, losses, smoothed, *_suggestions(tried, smoothed), stopped)


def _suggestions(lrs: list[float], smoothed: list[float]) -> tuple[float, float]:
    """(steepest, minimum): the rate of the most negative slope of the smoothed loss against log(lr) before its
    minimum (the first tenth left out: the average is still settling there), and the rate at the minimum."""
    lowest = int(np.argmin(smoothed))
    settle = max(1, len(lrs) // 10)
    window = range(settle, lowest + 1) if lowest - settle >= 2 else range(0, max(lowest, 2) + 1)
    logs, values = np.log(np.array(lrs)[list(window)]), np.array(smoothed)[list(window)]
    slopes = np.gradient(values, logs)
    return lrs[window[int(np.argmin(slopes))]], lrs[lowest]


class _FixedRate:
    """The schedule train_step advances during the range test, which sets each step's rate itself."""

    def after_step(self) -> None:
        pass


def range_test_on_run(
    run, start: float = DEFAULT_START, end: float = DEFAULT_END, steps: int = DEFAULT_STEPS
) -> LRRangeTest:
    """The range test on the run's model, data and optimizer (each step as training takes it: precision,
    layout, clipping, auxiliary heads), saved into the run folder and said in train.log.

    ``run`` is the engine's set-up run (engine._Run, not imported here: the engine imports this module)."""
    config = run.config
    optimizer = build_optimizer(
        run.model,
        config.optimizer,
        1.0,  # the test sets every step's rate; the groups' ratios (transfer) are what counts here
        config.momentum,
        config.weight_decay,
        groups=run.transfer.groups if run.transfer else None,
        batch_size=config.batch_size,
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    run.step_model.train()
    freeze_batchnorm(run.model)

    def batches():
        for epoch in itertools.count(1):
            yield from run.train_loader(epoch)

    def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return train_step(
            run.step_model,
            images,
            labels,
            optimizer,
            _FixedRate(),
            criterion,
            config,
            precision=run.precision,
        )[0]

    run.progress.note(f"lr range test: {steps} steps from lr {start:g} to {end:g} ({config.optimizer})")
    test = range_test(run.model, optimizer, batches(), step, start, end, steps)
    test.save(run.run_dir)
    run.progress.note(test.describe() + f"; {run.run_dir / 'lr_find.png'}")
    return test
