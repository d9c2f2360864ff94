"""Gradient-flow diagnostics: per layer, how large the gradients, the weights and the updates are, and how
many of the layer's activation units have stopped passing gradient (``--log-gradients EVERY``).

This is the picture behind the lectures' claims: with sigmoid the gradient norm shrinks layer by layer
towards the input (vanishing gradients), with ReLU it stays level; a too-high learning rate shows as an
update ratio far above the 1e-3 rule of thumb; exploding gradients as norms that grow over steps.

Each logging step writes one row per weighted layer (convolution, linear, batch norm...: every module with
parameters of its own), in the order the forward pass runs them, to gradients.csv and to TensorBoard:

- ``grad_norm``: the L2 norm of the layer's gradient (all its own parameters), after clipping;
- ``weight_norm``: the L2 norm of its parameters before the step;
- ``update_ratio``: the norm of the step's change of them over ``weight_norm`` (Karpathy's ~1e-3);
- ``activation`` and ``inactive``: the activation that follows the layer and the fraction of it that
  passes (almost) no gradient: for ReLU and ReLU6 the dead units (channels or features that are 0 for every
  image of the batch), for sigmoid and tanh the saturated values (derivative under 2% of its peak).

Off, nothing of this runs (the engine never builds a GradientLog). On, a logging step costs one copy of
the parameters and a few reductions per layer; the steps in between cost nothing (docs/experiments.md).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convlab.files import atomic_write
from convlab.report.gradients import COLUMNS, GRADIENTS_CSV

# Where sigmoid and tanh count as saturated: their derivative is below 2% of its peak there
# (sigmoid: s(1 - s) < 0.0099 * 4 / 4 for s outside 0.01..0.99; tanh: 1 - t^2 < 0.02 for |t| > 0.99).
SIGMOID_SATURATED = 0.01
TANH_SATURATED = 0.99


def inactive_fraction(module: nn.Module, output: torch.Tensor) -> float | None:
    """The fraction of ``output`` that passes (almost) no gradient back through ``module``; None for an
    activation that has no such region (leaky ReLU, ELU, GELU ... let some gradient through everywhere)."""
    values = output.detach().float()
    if isinstance(module, (nn.ReLU, nn.ReLU6)):
        # A unit is a channel of a feature map (N, C, H, W) or a feature of a vector (N, F): dead when it
        # is 0 for every image of the batch, so no gradient reaches the weights feeding it.
        units = values.transpose(0, 1).reshape(values.shape[1], -1) if values.ndim > 1 else values[None]
        return float((units.amax(dim=1) <= 0).float().mean())
    if isinstance(module, nn.Sigmoid):
        return float(((values < SIGMOID_SATURATED) | (values > 1 - SIGMOID_SATURATED)).float().mean())
    if isinstance(module, nn.Tanh):
        return float((values.abs() > TANH_SATURATED).float().mean())
    return None


ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Tanh)


class GradientLog:
    """Per-layer gradient, weight and update norms and inactive activations every ``every`` steps.

    The engine calls ``begin_epoch`` as each epoch starts, ``start_step`` before each forward pass,
    ``before_update()`` between backward (and clipping) and the optimizer step, ``after_update()`` after
    it, ``save()`` with each checkpoint, and ``close()`` at the end.
    """

    def __init__(self, model: nn.Module, every: int, run_dir: Path, writer=None, epoch_steps: int = 0):
        self.model, self.every, self.writer = model, int(every), writer
        self.path = Path(run_dir) / GRADIENTS_CSV
        self.layers = {name: m for name, m in model.named_modules() if any(True for _ in m.parameters(False))}
        self.order: list[str] = []  # weighted layers in the order the forward pass ran them
        self.after: dict[str, tuple[str, float | None]] = {}  # layer -> (activation that follows, inactive)
        self.step = 0
        self.epoch = 0
        self._offset = 0
        self._recording = False
        self._before: dict[str, list[torch.Tensor]] = {}
        self._rows: list[dict[str, Any]] = []
        self._last_weighted: str | None = None
        self._handles = [
            module.register_forward_hook(self._saw_layer(name)) for name, module in self.layers.items()
        ]
        self._handles += [
            module.register_forward_hook(self._saw_activation)
            for module in model.modules()
            if isinstance(module, ACTIVATIONS)
        ]

    def resume_from(self, step: int) -> None:
        """A resumed run keeps the rows of the steps it resumes after (those after were not kept)."""
        if self.path.exists():
            with self.path.open(newline="") as handle:
                self._rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= step]

    def begin_epoch(self, epoch: int, steps_before: int) -> None:
        """Epoch ``epoch`` starts after ``steps_before`` steps of the run: its steps count on from there."""
        self.epoch, self._offset = epoch, steps_before

    def start_step(self, step_in_epoch: int) -> bool:
        """Whether the epoch's step ``step_in_epoch`` (from 1) is logged: every ``every``-th step of the run,
        and its first; arms the forward hooks if so."""
        self.step = self._offset + step_in_epoch
        self._recording = self.step % self.every == 0 or self.step == 1
        if self._recording:
            self.order, self.after, self._last_weighted = [], {}, None
        return self._recording

    def _saw_layer(self, name: str):
        def hook(module, inputs, output) -> None:
            if self._recording and name not in self.order:
                self.order.append(name)
                self._last_weighted = name

        return hook

    def _saw_activation(self, module, inputs, output) -> None:
        layer = self._last_weighted
        if self._recording and layer is not None and layer not in self.after and torch.is_tensor(output):
            self.after[layer] = (type(module).__name__, inactive_fraction(module, output))

    def before_update(self) -> None:
        """Between backward and the optimizer step: the parameters as they are, to measure the update."""
        if self._recording:
            self._before = {
                name: [p.detach().clone() for p in self.layers[name].parameters(False)] for name in self.order
            }

    @torch.no_grad()
    def after_update(self) -> None:
        if not self._recording:
            return
        self._recording = False
        for depth, name in enumerate(self.order, start=1):
            params = list(self.layers[name].parameters(False))
            before = self._before[name]
            grads = [p.grad for p in params if p.grad is not None]
            grad_norm = _norm(grads) if grads else 0.0  # a frozen layer has none: its row says 0
            weight_norm = _norm(before)
            update = _norm([p - b for p, b in zip(params, before)])
            activation, inactive = self.after.get(name, ("", None))
            row = {
                "step": self.step,
                "epoch": self.epoch,
                "depth": depth,
                "layer": name,
                "type": type(self.layers[name]).__name__,
                "grad_norm": grad_norm,
                "weight_norm": weight_norm,
                "update_ratio": update / weight_norm if weight_norm > 0 else math.nan,
                "activation": activation,
                "inactive": "" if inactive is None else inactive,
            }
            self._rows.append(row)
            if self.writer is not None:
                for key in ("grad_norm", "weight_norm", "update_ratio"):
                    self.writer.add_scalar(f"{key}/{name}", row[key], self.step)
                if inactive is not None:
                    self.writer.add_scalar(f"inactive/{name}", inactive, self.step)
        self._before = {}

    def save(self) -> None:
        """gradients.csv with every row so far (written whole, atomically, at each epoch's end)."""
        rows = list(self._rows)

        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, COLUMNS)
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(self.path, write)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _norm(tensors: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors))
