"""K-fold cross-validation: K runs of one configuration, each holding out another fold of the training
images as validation, and the mean and spread of their validation accuracy.

With a few dozen images a single validation split is noise (8 images: one mistake is 12.5 points);
across K folds every image is validated once, and the spread says how far one split's figure can be
trusted (docs/your-own-data.md).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from convlab.errors import ConvlabError
from convlab.files import atomic_write
from convlab.training.config import TrainConfig
from convlab.training.progress import TrainProgress

SUMMARY_JSON = "crossval.json"
SUMMARY_MD = "crossval.md"


@dataclass
class CrossValidation:
    """The K runs (``folds``: each a TrainResult, in ``run_dir/fold-k``) and their validation figures."""

    run_dir: Path
    config: TrainConfig
    folds: list  # TrainResult of each fold, in fold order

    @property
    def val_top1(self) -> list[float]:
        return [result.best_val_top1 for result in self.folds]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.val_top1)

    @property
    def std(self) -> float:
        """The sample standard deviation over folds (n - 1): the spread one fold's figure has."""
        return statistics.stdev(self.val_top1) if len(self.folds) > 1 else 0.0

    def describe(self) -> str:
        each = ", ".join(f"{value:.1%}" for value in self.val_top1)
        return (
            f"{len(self.folds)}-fold cross-validation: validation top-1 {self.mean:.2%} +- {self.std:.2%} "
            f"(mean +- standard deviation over the folds: {each}); run folder {self.run_dir}"
        )

    def to_dict(self) -> dict:
        return {
            "folds": len(self.folds),
            "val_top1": self.val_top1,
            "mean": self.mean,
            "std": self.std,
            "best_epochs": [result.best_epoch for result in self.folds],
            "runs": [str(result.run_dir) for result in self.folds],
        }

    def markdown(self) -> str:
        lines = [
            f"# {len(self.folds)}-fold cross-validation of {self.config.model} on {self.config.data}",
            "",
            "| fold | best epoch | validation top-1 | run |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {k} | {result.best_epoch} | {result.best_val_top1:.4f} | [{result.run_dir.name}]"
            f"({result.run_dir.name}/report.md) |"
            for k, result in enumerate(self.folds, start=1)
        ]
        lines += ["", f"Mean {self.mean:.4f}, standard deviation {self.std:.4f} (over folds, n - 1).", ""]
        return "\n".join(lines)


def cross_validate(
    config: TrainConfig, run_dir: Path, train_fold: Callable[..., object], network: nn.Module | None = None
) -> CrossValidation:
    """Train ``config`` once per fold into ``run_dir/fold-k`` (``train_fold(fold_config, model=...)``), then
    write crossval.json and crossval.md into ``run_dir``. Every fold starts from the same weights."""
    if config.val_split == 0:
        raise ConvlabError(
            "--folds holds out each fold as validation; it cannot be combined with --val-split 0."
        )
    if config.early_stop is not None or config.resume is not None:
        raise ConvlabError("--folds runs each fold to its last epoch; leave out --early-stop and --resume.")
    run_dir.mkdir(parents=True, exist_ok=True)
    progress = TrainProgress(run_dir / "crossval.log")
    results = []
    for fold in range(1, config.folds + 1):
        progress.note(f"fold {fold} of {config.folds}")
        fold_config = dataclasses.replace(config, fold=fold, out=str(run_dir / f"fold-{fold}"))
        own = {} if network is None else {"model": copy.deepcopy(network)}
        results.append(train_fold(fold_config, **own))
    outcome = CrossValidation(run_dir, config, results)
    if any(value is None for value in outcome.val_top1):
        raise ConvlabError("A fold has no validation figure; cross-validation needs a validation split.")
    document = json.dumps(outcome.to_dict(), indent=2) + "\n"
    atomic_write(run_dir / SUMMARY_JSON, lambda tmp: Path(tmp).write_text(document))
    text = outcome.markdown()
    atomic_write(run_dir / SUMMARY_MD, lambda tmp: Path(tmp).write_text(text))
    progress.note(outcome.describe())
    progress.close()
    return outcome
