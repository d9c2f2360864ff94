"""A confusion matrix as a picture: counts in the cells, colour by the fraction of each true class."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from convlab.errors import ConvlabError
from convlab.viz.render import new_figure, save_figure


def plot_confusion(
    confusion: Sequence[Sequence[int]] | torch.Tensor, classes: Sequence[str], out_png: Path
) -> Path:
    """The confusion matrix (rows true, columns predicted) with counts, coloured by the row-normalised value."""
    matrix = torch.as_tensor(confusion, dtype=torch.float64)
    num_classes = matrix.shape[0]
    if matrix.shape != (num_classes, num_classes) or len(classes) != num_classes:
        raise ConvlabError(
            f"A confusion matrix must be square with one row per class; got {tuple(matrix.shape)} "
            f"for {len(classes)} classes."
        )
    row_totals = matrix.sum(dim=1, keepdim=True)
    normalised = torch.where(row_totals > 0, matrix / row_totals.clamp_min(1), 0.0).numpy()
    side = min(max(4.5, 0.45 * num_classes + 2), 30)
    figure = new_figure(side + 1.2, side)
    axes = figure.subplots()
    image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    if num_classes <= 30:  # beyond that the counts overlap; the colours still tell the story
        size = 9 if num_classes <= 12 else 6
        for true in range(num_classes):
            for predicted in range(num_classes):
                count = int(matrix[true, predicted])
                colour = "white" if normalised[true, predicted] > 0.5 else "black"
                axes.text(predicted, true, str(count), ha="center", va="center", fontsize=size, color=colour)
    if num_classes <= 50:
        axes.set_xticks(range(num_classes), [str(c) for c in classes], rotation=90)
        axes.set_yticks(range(num_classes), [str(c) for c in classes])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"Confusion matrix ({int(matrix.sum())} images)")
    return save_figure(figure, out_png)
