"""The run report: report.md, curves.png and confusion.png in a run folder, and its pictures of the network.

It sits above evaluation (the figures it reports) and viz (the pictures it draws); training writes it
at the end of a run.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import torch
import yaml
from torch import nn

from convlab.checkpoint import read_record
from convlab.errors import ConvlabError
from convlab.evaluation.evaluate import EvalResult
from convlab.files import atomic_write
from convlab.record import RunRecord
from convlab.report.figures import MISTAKES_PNG, draw_mistakes, report_figures, worst_classified
from convlab.viz.confusion import plot_confusion
from convlab.viz.render import new_figure, save_figure

# The columns of a run folder's metrics.csv, in order: training writes them, the report reads them.
METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_top1",
    "val_loss",
    "val_top1",
    "val_top5",
    "lr",
    "seconds",
    "images_per_s",
)
# How each metrics.csv column reads best in the report's table.
METRIC_FORMATS = {"epoch": "{:.0f}", "lr": "{:.3g}", "seconds": "{:.1f}", "images_per_s": "{:,.0f}"}
SKIPPED_LISTED = 50  # a report lists this many unreadable files; skipped.txt keeps them all


def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def read_metrics(metrics_csv: Path) -> list[dict[str, float]]:
    """metrics.csv as a list of rows, numbers as floats (an empty cell is NaN)."""
    metrics_csv = Path(metrics_csv)
    if not metrics_csv.is_file():
        raise ConvlabError(
            f"No metrics file at '{metrics_csv}'; a run folder written by `convlab train` has one."
        )
    with metrics_csv.open(newline="") as handle:
        return [{key: _number(value) for key, value in row.items() if key} for row in csv.DictReader(handle)]


def plot_curves(metrics_csv: Path, out_png: Path) -> Path:
    """Loss and top-1 accuracy (train and validation) per epoch, and the learning rate, side by side."""
    rows = read_metrics(metrics_csv)
    epochs = [row.get("epoch", math.nan) for row in rows]

    def column(name: str) -> list[float]:
        return [row.get(name, math.nan) for row in rows]

    from matplotlib.ticker import MaxNLocator

    figure = new_figure(13, 3.6)
    loss_axes, top1_axes, lr_axes = figure.subplots(1, 3)
    for axes in (loss_axes, top1_axes, lr_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    marker = "o" if len(rows) <= 30 else None  # a few epochs read better as dots
    for axes, metric, title in (
        (loss_axes, "loss", "Cross-entropy loss"),
        (top1_axes, "top1", "Top-1 accuracy"),
    ):
        for split in ("train", "val"):
            values = column(f"{split}_{metric}")
            if any(not math.isnan(v) for v in values):
                axes.plot(epochs, values, marker=marker, label=split)
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
    lr = column("lr")
    lr_axes.plot(epochs, lr, marker=marker, color="tab:green")
    lr_axes.set_title("Learning rate")
    lr_axes.set_xlabel("epoch")
    lr_axes.grid(alpha=0.3)
    if all(v > 0 for v in lr if not math.isnan(v)) and len({v for v in lr if not math.isnan(v)}) > 1:
        lr_axes.set_yscale("log")  # step and exponential decays are straight lines on a log scale
    return save_figure(figure, out_png)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable and frozen parameter counts, from the model's own parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return {"total": trainable + frozen, "trainable": trainable, "frozen": frozen}


def _record(run_dir: Path) -> RunRecord | None:
    for name in ("best.safetensors", "last.safetensors"):
        if (run_dir / name).is_file():
            return read_record(run_dir / name)
    return None


def _model_from_record(record: RunRecord | None) -> nn.Module | None:
    """The recorded architecture built on the meta device (no memory, no weights): enough to count parameters."""
    if record is None:
        return None
    with torch.device("meta"):
        return record.model.build()


def _stored_result(run_dir: Path) -> EvalResult | None:
    """A result `convlab eval` wrote earlier (test preferred over val), for a report written without one."""
    for split in ("test", "val"):
        path = run_dir / f"eval-{split}.json"
        if path.is_file():
            document = json.loads(path.read_text())
            fields = {k: document[k] for k in EvalResult.__dataclass_fields__ if k in document}
            return EvalResult(**fields)
    return None


def _format(value, digits: int = 4) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def _config_value(value) -> str:
    """A setting as written in config.yaml: lists and mappings as JSON, unset (None) as "none"."""
    if value is None:
        return "none"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _resolved_value(value, resolved: str | None) -> str:
    """A setting of config.yaml as the run resolved it: unset or "auto" shows what it became."""
    if resolved is not None and value is None:
        return resolved
    if resolved is not None and value == "auto":
        return f"auto: {resolved}"
    return _config_value(value)


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_format(cell) for cell in row) + " |" for row in rows]
    return lines


def _best_epoch(rows: list[dict[str, float]], record: RunRecord | None) -> int | None:
    """The epoch of best.safetensors as recorded; without one, the epoch with the highest validation top-1."""
    if record is not None and record.epoch is not None:
        return record.epoch
    scored = [row for row in rows if not math.isnan(row.get("val_top1", math.nan))]
    if not scored:
        return None
    return int(max(scored, key=lambda row: row["val_top1"])["epoch"])


def _mistakes_section(model: nn.Module, bundle, record: RunRecord | None, run_dir: Path) -> list[str]:
    """The worst-classified validation (else test) images: a picture and a table naming each one."""
    split = next((name for name in ("val", "test") if name in bundle.splits()), None)
    if split is None:
        return []
    classes = list((record.classes if record else None) or bundle.classes)
    mistakes = worst_classified(model, bundle, split, classes)
    if not mistakes:
        return ["## Mistakes", "", f"The best weights classify every {split} image right.", ""]
    draw_mistakes(mistakes, bundle, split, run_dir / MISTAKES_PNG)
    lines = ["## Mistakes", "", f"![The worst-classified {split} images]({MISTAKES_PNG})", ""]
    lines += _table(
        ["image", "true", "predicted", "p(predicted)", "p(true)"],
        [[f"`{m.name}`", m.true, m.predicted, f"{m.p_predicted:.3f}", f"{m.p_true:.3f}"] for m in mistakes],
    )
    return lines + [""]


def write_report(
    run_dir: Path,
    test_result: EvalResult | None = None,
    *,
    model: nn.Module | None = None,
    bundle=None,
    settings: dict[str, str] | None = None,
) -> Path:
    """Write ``curves.png``, ``confusion.png`` and ``report.md`` into ``run_dir``; returns report.md's path.

    ``test_result`` is the final evaluation (of the best weights, on the test split); without
    it, an ``eval-test.json`` (or ``eval-val.json``) already in the folder is used. ``model``
    gives the trainable/frozen parameter split; without it the recorded architecture is
    built on the meta device and every parameter counts as trainable. With both ``model`` (trained
    weights) and ``bundle`` (its data), the report also shows the first-layer filters and Grad-CAM
    maps of a few validation images, right and wrong ones (convlab.viz.report_figures), and the
    worst-classified validation images. ``settings`` gives the values training resolved for settings the
    configuration leaves unset (learning rate, momentum, image size, ...) and what it ran on (device,
    threads), so that the configuration table has no blanks.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConvlabError(f"No run folder at '{run_dir}'.")
    config_path = run_dir / "config.yaml"
    config = (yaml.safe_load(config_path.read_text()) or {}) if config_path.is_file() else {}
    metrics_csv = run_dir / "metrics.csv"
    rows = read_metrics(metrics_csv) if metrics_csv.is_file() else []
    record = _record(run_dir)
    result = test_result if test_result is not None else _stored_result(run_dir)

    model_name = record.model.name if record else config.get("model", "model")
    data_name = (record.data_name if record else None) or config.get("data", "data")
    lines = [
        f"# {model_name} on {data_name}, {datetime.now():%Y-%m-%d}",
        "",
        f"Run folder `{run_dir}`; report written {datetime.now():%Y-%m-%d %H:%M}.",
        "",
    ]

    if model is None:
        model = _model_from_record(record)
    if model is not None:
        counts = parameter_counts(model)
        lines += [
            "## Model",
            "",
            *_table(
                ["parameters", "count"],
                [
                    ["total", f"{counts['total']:,}"],
                    ["trainable", f"{counts['trainable']:,}"],
                    ["frozen", f"{counts['frozen']:,}"],
                ],
            ),
            "",
        ]

    if config:
        settings = dict(settings or {})
        if rows:
            seconds = sum(row["seconds"] for row in rows if not math.isnan(row.get("seconds", math.nan)))
            settings.setdefault(
                "total time", f"{seconds:.1f} s training and validation, {len(rows)} epoch(s)"
            )
        table = [[key, _resolved_value(value, settings.pop(key, None))] for key, value in config.items()]
        table += [[key, value] for key, value in settings.items()]  # what the run resolved beyond config.yaml
        lines += ["## Configuration", "", *_table(["setting", "value"], table), ""]

    if rows:
        plot_curves(metrics_csv, run_dir / "curves.png")
        header = [c for c in METRIC_COLUMNS if c in rows[0]]
        table_rows = [
            ["" if math.isnan(row[c]) else METRIC_FORMATS.get(c, "{:.4f}").format(row[c]) for c in header]
            for row in rows
        ]
        best = _best_epoch(rows, record)
        lines += ["## Training", "", "![Loss, accuracy and learning rate per epoch](curves.png)", ""]
        if best is not None:
            best_row = next((row for row in rows if int(row["epoch"]) == best), None)
            detail = ""
            if best_row and not math.isnan(best_row.get("val_top1", math.nan)):
                detail = f" (validation top-1 {best_row['val_top1']:.4f}, loss {best_row['val_loss']:.4f})"
            lines += [f"Best epoch: **{best}**{detail}.", ""]
        lines += _table(header, table_rows) + [""]

    if result is not None:
        plot_confusion(result.confusion, result.classes, run_dir / "confusion.png")
        k = result.top5_k
        tta = f", test-time augmentation {result.tta}" if result.tta else ""
        lines += [f"## Final evaluation ({result.split}, {result.n:,} images{tta})", ""]
        if result.split == "val":
            lines += [
                "The data has no test split: these are the best weights' figures on the validation split.",
                "",
            ]
        lines += _table(
            ["metric", "value"],
            [
                ["top-1 accuracy", result.top1],
                [f"top-{k} accuracy", result.top5],
                ["top-1 error", 1 - result.top1],
                [f"top-{k} error", 1 - result.top5],
                ["loss", result.loss],
            ],
        )
        if k < 5:
            lines += ["", f"Top-5 is top-{k} here: the data has only {k} classes."]
        lines += ["", "![Confusion matrix](confusion.png)", "", "### Per class", ""]
        lines += _table(
            ["class", "precision", "recall", "F1", "support"],
            [[c["class"], c["precision"], c["recall"], c["f1"], c["support"]] for c in result.per_class],
        ) + [""]

    if model is not None and bundle is not None and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        figures = report_figures(model, record, bundle, run_dir)
        lines += ["## What the network looks at", ""]
        lines += [f"![{path.stem}]({path.name})" for path in figures] + [""]

    if model is not None and bundle is not None:
        lines += _mistakes_section(model, bundle, record, run_dir)

    skipped_path = run_dir / "skipped.txt"
    if skipped_path.is_file():
        skipped = [line for line in skipped_path.read_text().splitlines() if line.strip()]
        lines += ["## Skipped files", "", f"{len(skipped)} unreadable file(s) were left out of the data:", ""]
        lines += [f"- `{line}`" for line in skipped[:SKIPPED_LISTED]]
        if len(skipped) > SKIPPED_LISTED:
            lines += [f"- ... and {len(skipped) - SKIPPED_LISTED} more (see skipped.txt)"]
        lines += [""]

    report = run_dir / "report.md"
    text = "\n".join(lines)
    atomic_write(report, lambda tmp: Path(tmp).write_text(text))
    return report
