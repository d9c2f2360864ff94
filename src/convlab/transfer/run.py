"""Transfer learning in a training run: the model and input a pretrained source implies, its weights loaded,
the scenario's trainable parameters and learning-rate groups, head-only epochs, and the linear probe as a run.

The library side (loading, adapting, freezing, the probe) is ``convlab.transfer``; this file wires it
into ``convlab.training`` (see docs/transfer.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from convlab.checkpoint import read_record
from convlab.errors import ConvlabError
from convlab.evaluation import evaluate_model
from convlab.files import atomic_write
from convlab.record import InputSpec
from convlab.transfer.adapt import find_classifier, replace_head
from convlab.transfer.features import linear_probe
from convlab.transfer.freeze import apply_transfer, describe_trainable
from convlab.transfer.pretrained import describe_source, load_pretrained


def apply_source_defaults(config, given: dict[str, Any]) -> None:
    """Fill ``config`` from its ``pretrained`` source where the caller left a setting out: the model (with
    the source's options, e.g. LeNet-5's ReLU and max pooling, which its weights need) and the image size."""
    defaults = describe_source(config.pretrained)
    if "model" not in given:
        if defaults.model is None:
            raise ConvlabError(
                f"--pretrained '{config.pretrained}' does not say which architecture it holds; "
                f"name the zoo model with --model (e.g. --model resnet18)."
            )
        config.model = defaults.model
    if config.model != defaults.model:
        return  # another architecture: load_pretrained says what fits (with allow_partial, what it loaded)
    config.options = {**defaults.options, **config.options}  # options given explicitly win
    if config.image_size is None and defaults.input is not None:
        config.image_size = list(defaults.input.size)


# ---------------------------------------------------------------------------------------------------------
# The run's side of a transfer


def trainable_lines(model: nn.Module) -> list[str]:
    """``describe_trainable`` as log lines: the totals, then trainable / frozen per top-level module."""

    rows = describe_trainable(model)
    trainable = sum(row["trainable"] for row in rows)
    frozen = sum(row["frozen"] for row in rows)
    width = max(len(row["module"]) for row in rows)
    lines = [f"parameters: {trainable:,} trainable, {frozen:,} frozen"]
    lines += [
        f"  {row['module']:<{width}}  {row['trainable']:>12,} trainable  {row['frozen']:>12,} frozen"
        for row in rows
    ]
    return lines


def use_normalisation(bundle, stored: InputSpec | None) -> list[str]:
    """Normalise the data as the source's weights were trained (their mean and std), when the channels
    agree; the record then stores these, so eval, predict and export normalise the same way."""
    if stored is None or not stored.normalised or len(stored.mean) != bundle.in_chans:
        return []
    mean, std = stored.mean, stored.std
    if (mean, std) == (bundle.mean, bundle.std):
        return []
    # The loaders read mean/std when they are made: setting them here covers every later batch.
    bundle.mean, bundle.std = mean, std
    return [f"input normalised as the pretrained weights expect: mean {_short(mean)}, std {_short(std)}"]


def _short(values) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


@dataclass
class TransferRun:
    """The transfer settings of a run and what loading the source did (``loaded``: load_pretrained's lines)."""

    method: str
    source: str
    trainable: str | None
    backbone_lr_scale: float
    head_epochs: int
    loaded: list[str]
    groups: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    phase: str | None = None

    def start_epoch(self, model: nn.Module, epoch: int, progress) -> None:
        """Freeze or unfreeze for ``epoch``: with head epochs, the backbone trains from epoch K + 1."""

        if self.method != "finetune" or not self.head_epochs:
            return
        phase = "head" if epoch <= self.head_epochs else "finetune"
        if phase == self.phase:
            return
        if phase == "head":
            apply_transfer(model, "feature-extract")  # the same freezing, BatchNorm statistics included
            progress.note(f"epochs 1-{self.head_epochs}: the new head trains alone (backbone frozen)")
        else:
            apply_transfer(model, "finetune", self.trainable, backbone_lr_scale=self.backbone_lr_scale)
            progress.note(
                f"epoch {epoch}: unfreezing the backbone (trainable {self.trainable or 'all'}, "
                f"backbone lr x{self.backbone_lr_scale:g})"
            )
        switching, self.phase = self.phase is not None, phase
        if switching:  # the run's start prints the table anyway
            for line in trainable_lines(model):
                progress.note(line)

    def describe(self) -> str:
        if self.method == "feature-extract":
            return (
                "feature-extract: the backbone is frozen (its BatchNorm statistics too), the new head trains"
            )
        if self.method == "linear-probe":
            return "linear-probe: logistic regression on the frozen backbone's penultimate features"
        words = f"finetune: trainable {self.trainable or 'all'}, backbone lr x{self.backbone_lr_scale:g}"
        if self.head_epochs:
            words += f", the head alone for the first {self.head_epochs} epoch(s)"
        return words

    def record(self, model: nn.Module, **extra: Any) -> dict[str, Any]:
        """What the checkpoint record keeps under ``transfer`` (the report reads it)."""

        return {
            "method": self.method,
            "source": self.source,
            "trainable": self.trainable,
            "backbone_lr_scale": self.backbone_lr_scale,
            "head_epochs": self.head_epochs,
            "description": self.describe(),
            "loaded": list(self.loaded),
            "parameters": describe_trainable(model),
            **extra,
        }


def start_transfer(model: nn.Module, bundle, config, run_dir: Path, resuming: bool) -> TransferRun:
    """Load ``config.pretrained`` into ``model`` (a new run) and set the scenario's trainable parameters.

    A new task gets a new head: load_pretrained replaces it when the number of classes differs,
    and here it is also replaced when the source names other classes (Fashion-MNIST 0-4 -> 5-9:
    five classes each, but not the same five). A resumed run takes its weights from state.pt and
    its input normalisation from its own checkpoint record.
    """

    if resuming:
        record = read_record(run_dir / "last.safetensors")
        loaded = list((record.transfer or {}).get("loaded", []))
        shown = use_normalisation(bundle, record.input)
    else:
        report = load_pretrained(model, config.pretrained, allow_partial=config.allow_partial)
        new_head = any(line.startswith("head ") for line in report.head)
        if not new_head and report.classes is not None and list(report.classes) != list(bundle.classes):
            report.head = [
                f"{line} (the source's classes are {', '.join(report.classes[:5])}"
                f"{', ...' if len(report.classes) > 5 else ''})"
                for line in replace_head(model, len(bundle.classes))
            ]
        elif not new_head and report.classes is None:
            report.notes.append(
                f"note: the source's head {find_classifier(model)[0]} was kept (same number "
                f"of classes, and the source does not name its classes)"
            )
        loaded = shown = report.lines() + use_normalisation(bundle, report.preprocessing)
    run = TransferRun(
        config.transfer,
        str(config.pretrained),
        config.trainable,
        config.backbone_lr_scale,
        config.head_epochs,
        loaded,
        notes=list(shown),
    )
    if config.transfer == "feature-extract":
        run.groups = apply_transfer(model, "feature-extract")
    elif config.transfer == "finetune":
        run.groups = apply_transfer(
            model, "finetune", config.trainable, backbone_lr_scale=config.backbone_lr_scale
        )
    run.notes.append(f"transfer: {run.describe()}")
    return run


def fit_linear_probe(model: nn.Module, bundle, config, device, progress) -> tuple[nn.Module, dict, dict]:
    """``--transfer linear-probe``: scikit-learn's logistic regression on the pretrained network's features,
    written into its classifier. Returns ``(model, metrics row for epoch 1, probe details)``."""

    start = time.perf_counter()
    probe, record = linear_probe(model, bundle, device=device)
    seconds = time.perf_counter() - start
    apply_transfer(probe, "feature-extract")  # what was fitted: the head; the backbone stayed as trained
    train = evaluate_model(probe, bundle, "train", device=device)
    row: dict[str, Any] = {"epoch": 1, "train_loss": train.loss, "train_top1": train.top1, "lr": None}
    if "val" in bundle.splits():
        val = evaluate_model(probe, bundle, "val", device=device)
        row.update(val_loss=val.loss, val_top1=val.top1, val_top5=val.top5)
    row.update(seconds=time.perf_counter() - start, images_per_s=bundle.size("train") / seconds)
    details = record.transfer
    state = "converged" if details["converged"] else "did NOT converge"
    progress.note(
        f"linear probe on {details['features']} features of {details['train_images']} images: "
        f"lbfgs {state} in {details['iterations']} iterations, train top-1 {train.top1:.2%}"
    )
    return probe, row, {key: details[key] for key in ("C", "max_iter", "iterations", "converged", "features")}


def report_section(transfer: dict[str, Any]) -> list[str]:
    """report.md's "Transfer" section from a checkpoint record's ``transfer`` entry."""
    lines = ["## Transfer", "", f"From `{transfer['source']}`; {transfer['description']}.", ""]
    lines += [f"- {line}" for line in transfer.get("loaded", [])]
    if "iterations" in transfer:
        state = "converged" if transfer["converged"] else "did not converge"
        lines += [
            f"- logistic regression (C={transfer['C']:g}) on {transfer['features']} features: lbfgs "
            f"{state} in {transfer['iterations']} iterations"
        ]
    lines += ["", "| module | trainable | frozen |", "|---|---|---|"]
    lines += [
        f"| {row['module']} | {row['trainable']:,} | {row['frozen']:,} |" for row in transfer["parameters"]
    ]
    if transfer.get("head_epochs"):
        lines += [
            "",
            f"Counts at the end of the run; during epochs 1-{transfer['head_epochs']} only the head trained.",
        ]
    return lines + [""]


def add_report_section(report_path: Path, transfer: dict[str, Any]) -> None:
    """Put the Transfer section into report.md, before its Configuration section."""

    text = report_path.read_text()
    section = "\n".join(report_section(transfer)) + "\n"
    marker = "## Configuration"
    text = (
        text.replace(marker, section + marker, 1) if marker in text else text.rstrip("\n") + "\n\n" + section
    )
    atomic_write(report_path, lambda tmp: Path(tmp).write_text(text))
