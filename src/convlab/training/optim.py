"""Optimizers and learning-rate schedules by name: the one place that builds them, on torch.optim.

The optimizers of the lecture notes (002) with the defaults a run gets when ``--lr`` or
``--momentum`` is not given (the table is ``convlab.choices.OPTIMIZERS``; its rates are for batch 64
and scale with the batch size: linearly for SGD, with the square root for the adaptive methods):

| name     | torch.optim                      | default lr | other defaults                 | why                                     |
|----------|----------------------------------|------------|--------------------------------|-----------------------------------------|
| sgd      | SGD                              | 0.1        | momentum 0                     | plain w -= lr * g                       |
| momentum | SGD                              | 0.1        | momentum 0.9                   | notes' gamma 0.9; He et al. 2015's rate, the one that beats the tutorial's loop in one epoch (docs/workflow.md#defaults) |
| nesterov | SGD(nesterov=True)               | 0.1        | momentum 0.9                   | as momentum, gradient at the look-ahead point |
| adagrad  | Adagrad                          | 0.01       |                                | notes: "most implementations use 0.01"  |
| adadelta | Adadelta                         | 1.0        | rho 0.9                        | Zeiler 2012 needs no lr: 1.0 is his update unscaled |
| rmsprop  | RMSprop                          | 0.001      | alpha (the notes' gamma) 0.9   | Hinton's suggestion, quoted in the notes |
| adam     | Adam                             | 0.001      | betas (0.9, 0.999)             | Kingma & Ba 2015                        |
| adamw    | AdamW                            | 0.001      | weight decay 0.01              | Loshchilov & Hutter 2019 (decoupled decay) |

``--momentum`` sets SGD's and RMSprop's momentum and Adam's/AdamW's beta1; adagrad and
adadelta have none. Weight decay, when above zero, is applied to weight matrices and
convolution kernels only: parameters with one dimension (biases, batch-norm scales and
shifts) are left undecayed, since shrinking them towards zero only fights the
normalisation (the usual practice since Goyal et al. 2017).

Schedules, all stepped once per optimizer step except plateau (once per epoch):
constant; step (x0.1 every epochs//3 epochs, the notes' step decay); exponential (the lr
falls 100x over the run: gamma = 0.01 ** (1 / steps) per step); cosine (CosineAnnealingLR
to 0 over all steps); onecycle (OneCycleLR, Smith & Topin 2018: up from lr/25 to lr in
the first 30% of steps, then down to lr/25e4; the optimizer's momentum is kept fixed);
plateau (ReduceLROnPlateau on the validation loss: x0.1 after 2 epochs without
improvement, the notes' "annealing when the objective stops improving").
``warmup_epochs`` adds a linear warm-up from lr/100 (LinearLR) before the schedule:
through SequentialLR for the stepped schedules, as onecycle's own rising phase for
onecycle, and as a LinearLR stepped per step that hands over to the plateau rule when it
ends for plateau.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from torch.optim import lr_scheduler

from convlab.choices import DEFAULT_BATCH, OPTIMIZERS, SCHEDULES, OptimizerDefaults, default_lr
from convlab.errors import ConvlabError, unknown_name_error

STEP_GAMMA = 0.1  # the notes' step decay: divide by 10 ...
STEP_EVERY = 3  # ... every epochs // 3 epochs (twice in a run, as in He et al. 2015's schedule)
EXPONENTIAL_FALL = 0.01  # the lr ends the run at 1/100 of where it started
ONECYCLE_RISE = 0.3  # OneCycleLR's default pct_start
PLATEAU_FACTOR = 0.1
PLATEAU_PATIENCE = 2  # epochs without a lower val loss before the lr drops
WARMUP_START = 0.01  # warm-up starts at lr/100 and rises linearly to lr


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay weights and kernels; leave 1-D parameters (biases, norm scales and shifts) undecayed."""
    params = [p for p in model.parameters() if p.requires_grad]
    if weight_decay == 0:
        return [{"params": params, "weight_decay": 0.0}]
    decayed = [p for p in params if p.ndim > 1]
    undecayed = [p for p in params if p.ndim <= 1]
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": undecayed, "weight_decay": 0.0}]


def scaled_groups(groups: list[dict[str, Any]], lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Transfer groups (``convlab.transfer.apply_transfer``: name, params, lr_scale) as optimizer groups,
    each at ``lr * lr_scale`` and split for weight decay as ``parameter_groups`` does. Every schedule
    scales each group's lr by the same factor (OneCycleLR gets one max_lr per group), so the
    backbone/head ratio holds for the whole run."""
    scaled = []
    for group in groups:
        common = {"name": group.get("name", ""), "lr_scale": float(group.get("lr_scale", 1.0))}
        common["lr"] = lr * common["lr_scale"]
        params = list(group["params"])
        if weight_decay == 0:
            scaled.append({**common, "params": params, "weight_decay": 0.0})
            continue
        scaled.append({**common, "params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay})
        scaled.append({**common, "params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0})
    return scaled


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float | None = None,
    momentum: float | None = None,
    weight_decay: float | None = None,
    groups: list[dict[str, Any]] | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``model``'s trainable parameters; None picks the table's default
    (a learning rate for ``batch_size``: convlab.choices.default_lr).

    ``groups`` (from ``convlab.transfer.apply_transfer``) gives each group its own learning rate,
    ``lr * lr_scale``: a fine-tuned backbone below its new head."""
    if name not in OPTIMIZERS:
        raise unknown_name_error("optimizer", name, OPTIMIZERS)
    spec = OPTIMIZERS[name]
    factory = optimizer_class(spec)
    kwargs: dict[str, Any] = {"lr": default_lr(name, batch_size) if lr is None else float(lr), **spec.extra}
    if momentum is not None and spec.momentum is None:
        raise ConvlabError(
            f"Optimizer '{name}' has no momentum; --momentum applies to sgd, momentum, nesterov, rmsprop, adam, adamw."
        )
    if spec.momentum is not None:
        momentum = spec.momentum if momentum is None else float(momentum)
        if factory in (torch.optim.Adam, torch.optim.AdamW):
            kwargs["betas"] = (momentum, 0.999)
        else:
            kwargs["momentum"] = momentum
        if name == "nesterov" and momentum <= 0:
            raise ConvlabError(f"Nesterov momentum must be above 0, got --momentum {momentum}.")
    decay = spec.weight_decay if weight_decay is None else float(weight_decay)
    if groups is not None:
        groups = scaled_groups(groups, kwargs["lr"], decay)
    else:
        groups = parameter_groups(model, decay)
    if not any(group["params"] for group in groups):
        raise ConvlabError("The model has no trainable parameters to optimise.")
    groups = [g for g in groups if g["params"]]
    if _can_fuse(factory, groups):
        # One kernel for the whole update instead of a handful of ops per tensor, which matters most for
        # small networks, whose update is a large part of the step (docs/performance.md#levers-tried).
        kwargs["fused"] = True
    return factory(groups, **kwargs)


def optimizer_class(spec: OptimizerDefaults) -> type[torch.optim.Optimizer]:
    """The torch.optim class an optimizer's table row names."""
    return getattr(torch.optim, spec.torch_class)


def _can_fuse(factory: type[torch.optim.Optimizer], groups: list[dict[str, Any]]) -> bool:
    """Whether torch has a fused kernel for this optimizer and every parameter (float, on CPU or CUDA)."""
    if "fused" not in inspect.signature(factory).parameters:
        return False
    params = [p for group in groups for p in group["params"]]
    return all(
        p.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16)
        and p.device.type in ("cpu", "cuda")
        for p in params
    )


class Schedule:
    """The learning-rate schedule of a run: ``after_step()`` after every optimizer step, ``after_epoch(val_loss)``.

    Wraps one torch scheduler stepped per step (``per_step``) and, for plateau, a
    ReduceLROnPlateau stepped per epoch once the warm-up is over.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        name: str,
        epochs: int,
        steps_per_epoch: int,
        warmup_epochs: float = 0.0,
    ) -> None:
        if name not in SCHEDULES:
            raise unknown_name_error("schedule", name, SCHEDULES)
        self.name = name
        self.optimizer = optimizer
        self.total_steps = epochs * steps_per_epoch
        self.warmup_steps = round(warmup_epochs * steps_per_epoch)
        if self.warmup_steps >= self.total_steps and warmup_epochs > 0:
            raise ConvlabError(
                f"--warmup-epochs {warmup_epochs} covers the whole run of {epochs} epochs; give fewer warm-up epochs."
            )
        self.steps_done = 0
        self.per_step: lr_scheduler.LRScheduler | None = None
        self.plateau: lr_scheduler.ReduceLROnPlateau | None = None
        main_steps = self.total_steps - self.warmup_steps
        if name == "onecycle":  # its own rising phase is the warm-up when one is asked for
            rise = self.warmup_steps / self.total_steps if self.warmup_steps else ONECYCLE_RISE
            max_lr = [group["lr"] for group in optimizer.param_groups]
            self.per_step = lr_scheduler.OneCycleLR(
                optimizer, max_lr=max_lr, total_steps=self.total_steps, pct_start=rise, cycle_momentum=False
            )
            return
        if name == "plateau":
            if self.warmup_steps:
                self.per_step = self._warmup()
            self.plateau = lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE
            )
            return
        if name == "constant":
            main = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
        elif name == "step":
            step_size = max(1, epochs // STEP_EVERY) * steps_per_epoch
            main = lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=STEP_GAMMA)
        elif name == "exponential":
            main = lr_scheduler.ExponentialLR(optimizer, gamma=EXPONENTIAL_FALL ** (1.0 / main_steps))
        else:  # cosine
            main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=main_steps)
        if self.warmup_steps:
            main = lr_scheduler.SequentialLR(
                optimizer, [self._warmup(), main], milestones=[self.warmup_steps]
            )
        self.per_step = main

    def _warmup(self) -> lr_scheduler.LinearLR:
        return lr_scheduler.LinearLR(self.optimizer, start_factor=WARMUP_START, total_iters=self.warmup_steps)

    @property
    def lr(self) -> float:
        """The run's learning rate: the first parameter group's at the full rate (with transfer groups, the
        head's; a fine-tuned backbone's is this times its ``lr_scale``)."""
        groups = self.optimizer.param_groups
        full = [group for group in groups if group.get("lr_scale", 1.0) == 1.0] or groups
        return float(full[0]["lr"])

    def after_step(self) -> None:
        self.steps_done += 1
        if self.per_step is None:
            return
        if self.name == "plateau" and self.steps_done > self.warmup_steps:
            return  # the warm-up is over: plateau alone moves the lr now
        self.per_step.step()

    def after_epoch(self, val_loss: float) -> None:
        if self.plateau is not None and self.steps_done >= self.warmup_steps:
            self.plateau.step(val_loss)

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps_done": self.steps_done,
            "per_step": None if self.per_step is None else self.per_step.state_dict(),
            "plateau": None if self.plateau is None else self.plateau.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps_done = state["steps_done"]
        if self.per_step is not None and state["per_step"] is not None:
            self.per_step.load_state_dict(state["per_step"])
        if self.plateau is not None and state["plateau"] is not None:
            self.plateau.load_state_dict(state["plateau"])

    @property
    def depends_on_length(self) -> bool:
        """Whether the curve is drawn over the run's length (so more epochs on resume redraw it)."""
        return self.name in ("step", "exponential", "cosine", "onecycle")

    def fast_forward(self, steps: int) -> None:
        """Replay ``steps`` steps of this freshly built schedule (a resumed run that was given more epochs)."""
        for _ in range(steps):
            self.after_step()
