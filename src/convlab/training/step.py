"""One training step and one epoch of them: ``train_step`` reads top to bottom (forward, loss, backward,
clip, step, schedule), and ``train_one_epoch`` runs it over a loader, keeping the epoch's figures on the
device, stopping on a non-finite loss and taking the in-epoch checkpoints (--checkpoint-every).

Apart from the engine because they are the hot loop and need no run around them: the engine calls them for
each epoch, the range test (``lr_range``) steps through ``train_step``, and the benchmarks time them
without a run folder.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from convlab.runtime import AUTO, PrecisionChoice, resolve_precision
from convlab.training.config import TrainConfig
from convlab.training.distributed import CHECK_EVERY, SOLO, Group
from convlab.training.gradients import GradientLog
from convlab.training.optim import Schedule
from convlab.training.progress import TrainProgress
from convlab.training.state import EpochPosition, restore_rng
from convlab.transfer import freeze_batchnorm

# Szegedy et al. 2014, section 5: the auxiliary classifiers' losses are "added to the total loss of the
# network with a discount weight (... weighted by 0.3)" during training; inference discards them.
AUX_LOSS_WEIGHT = 0.3


def train_step(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    criterion: nn.Module,
    config: TrainConfig,
    gradients: GradientLog | None = None,
    precision: PrecisionChoice | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step: forward, loss, backward, clip, step, schedule. Returns the loss and main logits.
    ``gradients`` (--log-gradients) measures the gradients and the update around the optimizer step.
    ``precision``: the run's resolved precision and layout (engine's ``_set_up``); without it,
    ``config``'s, ``auto`` resolved for the model (convlab.runtime.resolve_precision)."""
    amp, layout = (
        (config.amp, config.channels_last) if precision is None else (precision.amp, precision.channels_last)
    )
    if AUTO in (amp, layout):
        chosen = resolve_precision(unwrapped(model), images.shape[1:], images.device, amp, layout)
        amp, layout = chosen.amp, chosen.channels_last
    if layout is True and images.dim() == 4:  # NHWC batches for a channels_last model (docs/performance.md)
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
        outputs = model(images)
        logits, *aux_logits = outputs if isinstance(outputs, tuple) else (outputs,)
        loss = criterion(logits, labels)
        for aux in aux_logits:  # auxiliary heads exist in training only (GoogLeNet, Inception v3)
            loss = loss + AUX_LOSS_WEIGHT * criterion(aux, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.clip_value is not None:  # each gradient element into [-v, v] (notes 000, "clip by value")
        nn.utils.clip_grad_value_(model.parameters(), config.clip_value)
    # g * v / ||g|| when ||g|| > v, over all parameters (notes 000, "clip by norm")
    if config.clip_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
    if gradients is not None:
        gradients.before_update()
    optimizer.step()
    if gradients is not None:
        gradients.after_update()
    schedule.after_step()
    return loss.detach(), logits.detach()


class NonFiniteLoss(Exception):
    """The loss of ``step`` was ``value``, not finite; or, with ``in_weights``, the loss stayed finite but
    the weights or statistics about to be saved at ``step`` were not."""

    def __init__(self, step: int, value: float, in_weights: bool = False) -> None:
        super().__init__(step, value, in_weights)
        self.step, self.value, self.in_weights = step, value, in_weights


def weights_finite(model: nn.Module) -> torch.Tensor:
    """Whether every parameter and floating-point buffer of ``model`` is finite: a device tensor, no sync."""
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    if not tensors:
        return torch.ones((), dtype=torch.bool)
    return torch.stack([torch.isfinite(t).all() for t in tensors]).all()


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    criterion: nn.Module,
    config: TrainConfig,
    progress: TrainProgress,
    position: EpochPosition | None = None,
    checkpoint=None,
    gradients: GradientLog | None = None,
    group: Group = SOLO,
    precision: PrecisionChoice | None = None,
) -> dict[str, float]:
    """Train over ``loader`` once. Sums stay on the device and are read only when the bar refreshes.

    ``position`` continues the epoch from an in-epoch checkpoint. ``checkpoint(position)`` is called
    after every ``config.checkpoint_every``-th step of the epoch but its last (the epoch's end saves then).
    In a distributed run (``group``) the figures returned are the sums over every process's part, the loss is
    checked on every process at the same steps, and ``checkpoint`` gets the sums so far of every process.
    """
    model.train()
    # Transfer: a frozen backbone's BatchNorm keeps its statistics (train() above reaches the model through
    # the wrappers torch.compile and DDP put around it).
    freeze_batchnorm(unwrapped(model))
    device = next(model.parameters()).device
    if position is None:
        position = EpochPosition(
            steps=0,
            lr=schedule.lr,
            seconds=0.0,
            loss_sum=torch.zeros((), dtype=torch.float64),
            correct=torch.zeros((), dtype=torch.int64),
            seen=0,
        )
    loss_sum, correct = position.loss_sum.to(device), position.correct.to(device)
    seen, total, every = position.seen, len(loader), config.checkpoint_every
    # the first step whose loss was not finite, and that loss (an in-epoch checkpoint is taken only when
    # there was none)
    first_bad_step = torch.full((), -1, dtype=torch.int64, device=device)
    first_bad_loss = torch.zeros((), device=device)
    batches = iter(loader)
    if position.steps:
        # The steps done are replayed unused, so that the next batch, and its augmentation draws, are those
        # the interrupted run was about to train on. The RNG states (dropout's) come back after: a
        # DataLoader draws from torch's generator when it starts.
        for _ in range(position.steps):
            next(batches)
        restore_rng(position.rng)
    start = time.perf_counter()

    def elapsed() -> float:
        return position.seconds + time.perf_counter() - start

    def check(saving_at: int | None = None) -> None:
        """Stop on a non-finite loss: a device sync, and in a distributed run a collective (every process
        checks at the same steps and stops at the first bad step of any). Before the weights are saved
        (``saving_at``: the step), they and the batch norm statistics are checked too: the saturating
        activations of convlab.speed turn a NaN inside the network into a number, so it need not reach the
        loss."""
        bad = group.first_bad_step(first_bad_step)
        if bad >= 0:
            raise NonFiniteLoss(bad, group.bad_value(first_bad_step, first_bad_loss, bad))
        if saving_at is not None:
            broken = group.sum((~weights_finite(model)).to(device=device, dtype=torch.int64).reshape(1))
            if int(broken):
                raise NonFiniteLoss(saving_at, math.nan, in_weights=True)

    def report(steps_done: int) -> None:
        progress.update(
            steps_done,
            float(loss_sum) / max(seen, 1),
            int(correct) / max(seen, 1),
            seen * group.world / max(elapsed(), 1e-9),  # every process takes as many images a step
        )

    for step, (images, labels) in enumerate(batches, start=position.steps + 1):
        if gradients is not None:
            gradients.start_step(step)
        loss, logits = train_step(
            model, images, labels, optimizer, schedule, criterion, config, gradients, precision
        )
        batch = labels.shape[0]
        loss_sum += loss.double() * batch
        correct += (logits.argmax(dim=1) == labels).sum()
        newly_bad = (first_bad_step < 0) & ~torch.isfinite(loss)
        first_bad_step = torch.where(newly_bad, step, first_bad_step)
        first_bad_loss = torch.where(newly_bad, loss.float(), first_bad_loss)
        seen += batch
        group.stepped()
        # One process checks whenever the bar is due; the processes of a distributed run at fixed steps,
        # which they all reach, and the bar shows process 0's own part.
        if group.distributed and step % CHECK_EVERY == 0:
            check()
        if progress.due():
            if not group.distributed:
                check()
            report(step)
        if every is not None and checkpoint is not None and step % every == 0 and step < total:
            check(saving_at=step)  # a non-finite loss or weight stops the run before it is saved
            checkpoint(EpochPosition(step, position.lr, elapsed(), loss_sum, correct, seen))
    check(saving_at=total)
    report(total)
    # the epoch's figures: every process's sums (float64 holds the counts exactly)
    totals = group.sum(
        torch.stack(
            [
                loss_sum.double(),
                correct.double(),
                torch.tensor(float(seen), device=device, dtype=torch.float64),
            ]
        )
    )
    loss_total, correct_total, seen_total = totals.tolist()
    return {
        "train_loss": loss_total / seen_total,
        "train_top1": correct_total / seen_total,
        "images": int(seen_total),
        "train_seconds": elapsed(),
    }


def unwrapped(model: nn.Module) -> nn.Module:
    """The model inside torch.compile's wrapper (``_orig_mod``) and DDP's (``module``)."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
