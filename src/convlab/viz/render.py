"""Pictures from arrays: tile grids, heat-map overlays and PNG figures (matplotlib's Agg canvas, no display).

A grid of many tiles is composed here as one numpy image and drawn with a single ``imshow``:
one axes per tile would cost matplotlib a second for 64 feature maps
(docs/performance.md#smaller-measured-choices).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from convlab.files import atomic_write

HEAT_COLORMAP = "jet"  # the colour map of the Grad-CAM paper's figures (Selvaraju et al. 2017, Fig. 1)
OVERLAY_ALPHA = 0.5  # heat map and image mixed half and half: both stay readable
TILE_GAP = 1  # pixels between tiles, drawn in the background colour


def unit_range(values: np.ndarray, axes: tuple[int, ...] | None = None) -> np.ndarray:
    """``values`` shifted and scaled to 0..1 (over ``axes``, or all of it); a constant block becomes 0."""
    values = np.asarray(values, dtype=np.float32)
    low = values.min(axis=axes, keepdims=True)
    span = values.max(axis=axes, keepdims=True) - low
    return np.where(span > 0, (values - low) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)


def grid_columns(count: int) -> int:
    """Columns of a near-square grid of ``count`` tiles."""
    return max(1, math.ceil(math.sqrt(count)))


def tile_grid(tiles: np.ndarray, columns: int, background: float = math.nan) -> np.ndarray:
    """(N, h, w) or (N, h, w, 3) tiles laid out row by row in ``columns`` columns, ``TILE_GAP`` apart.

    Gray tiles get NaN gaps by default (drawn as the figure's background); colour tiles use ``background``.
    """
    tiles = np.asarray(tiles, dtype=np.float32)
    count, height, width = tiles.shape[:3]
    rows = math.ceil(count / columns)
    step_y, step_x = height + TILE_GAP, width + TILE_GAP
    grid = np.full(
        (rows * step_y - TILE_GAP, columns * step_x - TILE_GAP, *tiles.shape[3:]),
        background,
        dtype=np.float32,
    )
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        grid[row * step_y : row * step_y + height, column * step_x : column * step_x + width] = tile
    return grid


def to_display(image: np.ndarray) -> np.ndarray:
    """A (C, H, W) image in 0..1 as (H, W, 3) for drawing: one channel is repeated, three are kept."""
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if image.shape[0] == 1:
        image = np.repeat(image, 3, axis=0)
    elif image.shape[0] != 3:  # neither gray nor RGB: show the mean over channels
        image = np.repeat(image.mean(axis=0, keepdims=True), 3, axis=0)
    return image.transpose(1, 2, 0)


def colorize(heat: np.ndarray, colormap: str = HEAT_COLORMAP) -> np.ndarray:
    """A (H, W) map in 0..1 as (H, W, 3) colours of ``colormap``."""
    from matplotlib import colormaps

    return colormaps[colormap](np.clip(heat, 0.0, 1.0))[..., :3].astype(np.float32)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The (H, W, 3) image with the (H, W) heat map in 0..1 laid over it in colour."""
    return ((1.0 - alpha) * image + alpha * colorize(heat)).astype(np.float32)


def new_figure(width: float, height: float):
    # A Figure on its own Agg canvas, without pyplot: no global state, no display, safe in any thread.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, out_png: Path) -> Path:
    out_png = Path(out_png)
    atomic_write(out_png, lambda tmp: figure.savefig(tmp, format="png", bbox_inches="tight"))
    return out_png


def _draw(axes, picture: np.ndarray, colormap: str | None, title: str | None = None) -> None:
    from matplotlib import colormaps

    if picture.ndim == 2:
        cmap = colormaps[colormap or "gray"].with_extremes(bad="white")  # NaN gaps between tiles
        axes.imshow(np.ma.masked_invalid(picture), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        axes.imshow(np.clip(picture, 0.0, 1.0), interpolation="nearest")
    axes.set_axis_off()
    if title:
        axes.set_title(title, fontsize=9)


def save_grid(grid: np.ndarray, title: str, out_png: Path, colormap: str | None = None) -> Path:
    """One picture (a tile grid, 2-D in 0..1 or (H, W, 3)) with a title, as a PNG sized to its aspect."""
    height, width = grid.shape[:2]
    scale = min(8.0 / width, 8.0 / height, 0.25)  # at most 8 inches a side; small grids enlarged up to 25x
    figure = new_figure(max(3.0, width * scale), max(1.5, height * scale))
    axes = figure.subplots()
    _draw(axes, grid, colormap)
    axes.set_title(title, fontsize=10)  # on the axes, not the figure: it stays just above the picture
    return save_figure(figure, out_png)


def save_panels(
    panels: Sequence[tuple[np.ndarray, str]],
    title: str,
    out_png: Path,
    columns: int | None = None,
    colormap: str | None = None,
) -> Path:
    """Pictures side by side (``columns`` per row), each with its own caption, under one title."""
    columns = columns or len(panels)
    rows = math.ceil(len(panels) / columns)
    figure = new_figure(2.6 * columns, 2.7 * rows + 0.4)
    axes_grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
    for axes, (picture, caption) in zip(axes_grid, panels):
        _draw(axes, picture, colormap, caption)
    for axes in axes_grid[len(panels) :]:
        axes.set_axis_off()
    figure.suptitle(title, fontsize=10)
    return save_figure(figure, out_png)
