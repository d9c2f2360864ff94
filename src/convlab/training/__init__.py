"""Training: ``train(config, **overrides)`` runs one experiment into a run folder; ``TrainConfig`` describes it.

A run folder holds config.yaml (the resolved TrainConfig), metrics.csv (one row per epoch),
tb/ (TensorBoard), last.safetensors and best.safetensors (convlab checkpoints), state.pt
(what ``resume`` needs), train.log, and at the end report.md, curves.png and confusion.png.
In metrics.csv, accuracies are fractions (0..1), ``lr`` is the learning rate the epoch started
with, ``seconds`` covers training and validation, ``images_per_s`` the training alone.
"""

from convlab.training.config import TrainConfig, resolve_config
from convlab.training.engine import TrainResult, train, train_step
from convlab.training.optim import OPTIMIZERS, SCHEDULES, Schedule, build_optimizer

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Schedule",
    "TrainConfig",
    "TrainResult",
    "build_optimizer",
    "resolve_config",
    "train",
    "train_step",
]
