"""The picture of gradient flow: per-layer gradient norm over depth and over training time, from a run's
gradients.csv (``convlab train --log-gradients``); ``convlab plot RUN --what gradients`` draws it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from convlab.errors import ConvlabError
from convlab.viz.render import new_figure, save_figure

GRADIENTS_CSV = "gradients.csv"
COLUMNS = (
    "step",
    "epoch",
    "depth",
    "layer",
    "type",
    "grad_norm",
    "weight_norm",
    "update_ratio",
    "activation",
    "inactive",
)


def read_gradients(path: Path) -> list[dict[str, Any]]:
    """A run's gradients.csv (``path``: the file or its run folder) as rows, numbers as numbers; an empty
    ``inactive`` (no activation with a dead or saturated region follows the layer) is None."""
    path = Path(path)
    if path.is_dir():
        path = path / GRADIENTS_CSV
    if not path.is_file():
        raise ConvlabError(f"No gradient log at '{path}'; train with --log-gradients [EVERY] to write one.")
    rows = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            rows.append(
                {
                    **row,
                    "step": int(row["step"]),
                    "epoch": int(row["epoch"]),
                    "depth": int(row["depth"]),
                    **{k: float(row[k]) for k in ("grad_norm", "weight_norm", "update_ratio")},
                    "inactive": float(row["inactive"]) if row["inactive"] not in ("", None) else None,
                }
            )
    return rows


def plot_gradients(rows: list[dict], out_png: Path, title: str | None = None) -> Path:
    """Three panels: gradient norm against depth (one line per logged step, early light, late dark: a
    slope down towards the input is the vanishing gradient), gradient norm of each layer against step, and
    the update ratio of each layer against step (its 1e-3 rule of thumb dashed)."""
    if not rows:
        raise ConvlabError("The gradient log is empty: the run ended before its first logging step.")
    from matplotlib import colormaps

    steps = sorted({row["step"] for row in rows})
    layers = sorted({(row["depth"], row["layer"]) for row in rows})
    figure = new_figure(16, 4.6)
    figure.set_layout_engine("constrained")
    depth_axes, time_axes, ratio_axes = figure.subplots(1, 3)
    by_step = colormaps["viridis"]
    for index, step in enumerate(steps):
        at_step = sorted((row["depth"], row["grad_norm"]) for row in rows if row["step"] == step)
        shade = by_step(index / max(len(steps) - 1, 1))
        label = f"step {step}" if index in (0, len(steps) - 1) else None
        depth_axes.plot(*zip(*at_step), color=shade, marker="o", markersize=3, label=label)
    names = [name for _, name in layers]
    depth_axes.set_xticks(range(1, len(names) + 1))
    depth_axes.set_xticklabels(names, rotation=60, ha="right", fontsize="x-small")
    depth_axes.set_title("Gradient norm per layer (input on the left)")
    depth_axes.legend(fontsize="small")
    by_depth = colormaps["plasma"]
    for index, (_, name) in enumerate(layers):
        series = sorted(
            (row["step"], row["grad_norm"], row["update_ratio"]) for row in rows if row["layer"] == name
        )
        shade = by_depth(index / max(len(layers) - 1, 1))
        label = name if len(layers) <= 12 or index in (0, len(layers) - 1) else None
        time_axes.plot([s for s, _, _ in series], [g for _, g, _ in series], color=shade, label=label)
        ratio_axes.plot([s for s, _, _ in series], [u for _, _, u in series], color=shade, label=label)
    time_axes.set_title("Gradient norm of each layer over training")
    ratio_axes.set_title("Update / weight norm of each layer")
    ratio_axes.axhline(1e-3, color="grey", linestyle="--", linewidth=1)
    time_axes.legend(fontsize="x-small", ncol=2)
    for axes in (depth_axes, time_axes, ratio_axes):
        # norms span orders of magnitude across depth; a zero (a frozen layer, the last step of a schedule
        # that ends at lr 0) is left off the log scale rather than forcing a linear one
        axes.set_yscale("log", nonpositive="mask")
        axes.grid(alpha=0.3)
    time_axes.set_xlabel("step")
    ratio_axes.set_xlabel("step")
    if title:
        figure.suptitle(title)
    return save_figure(figure, out_png)
