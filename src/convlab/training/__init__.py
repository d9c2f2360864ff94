"""Training: ``train(config, **overrides)`` runs one experiment into a run folder; ``TrainConfig`` describes it.

A run folder holds config.yaml (the resolved TrainConfig), metrics.csv (one row per epoch),
tb/ (TensorBoard), last.safetensors and best.safetensors (convlab checkpoints), state.pt
(what ``resume`` needs), train.log, and at the end report.md, curves.png and confusion.png.
In metrics.csv, accuracies are fractions (0..1), ``lr`` is the learning rate the epoch started
with, ``seconds`` covers training and validation, ``images_per_s`` the training alone.

The names below are imported on first use (PEP 562), as ``convlab``'s are: ``convlab train --help``
builds its flags from ``convlab.training.config`` without loading the engine and what it runs on.
"""

from __future__ import annotations

from convlab.lazy import lazy_exports

# public name -> module that defines it
_API = {
    "TrainConfig": "convlab.training.config",
    "resolve_config": "convlab.training.config",
    "TrainResult": "convlab.training.engine",
    "train": "convlab.training.engine",
    "train_step": "convlab.training.step",
    "sweep": "convlab.training.sweeps",
    "lr_find": "convlab.training.engine",
    "LRRangeTest": "convlab.training.lr_range",
    "SweepResult": "convlab.training.sweeps",
    "OPTIMIZERS": "convlab.choices",
    "SCHEDULES": "convlab.choices",
    "Schedule": "convlab.training.optim",
    "build_optimizer": "convlab.training.optim",
}

__all__ = sorted(_API)
__getattr__, __dir__ = lazy_exports("convlab.training", _API, globals())
