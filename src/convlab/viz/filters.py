"""Learned filters as pictures: a convolution's weights, each filter stretched to 0..1 and laid out in a grid.

First-layer filters of an RGB network are drawn in colour (Krizhevsky et al. 2012, Fig. 3; Zeiler and
Fergus 2014, Fig. 2), of a gray one in gray; a deeper layer shows one gray tile per (output, input) pair.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from convlab.errors import ConvlabError, closest_names
from convlab.viz.inputs import Visualisation, load_subject, output_path, safe_name

MAX_TILES = 64  # tiles in one picture: past that they get too small to read
PAIR_COLUMNS = 8  # input channels shown per filter when a deeper layer is drawn as (output, input) tiles
LISTED_LAYERS = 30


def conv_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {name: module for name, module in model.named_modules() if isinstance(module, nn.Conv2d)}


def _conv_layer(model: nn.Module, layer: str | None) -> tuple[str, nn.Conv2d]:
    convs = conv_layers(model)
    if not convs:
        raise ConvlabError(
            f"Model {type(model).__name__} has no Conv2d layer, so it has no filters to show; "
            "give a convolutional model."
        )
    if layer is None:
        return next(iter(convs.items()))
    if layer not in convs:
        close = closest_names(layer, convs)
        hint = f"; did you mean {', '.join(close)}?" if close else "."
        names = list(convs)
        more = f", and {len(names) - LISTED_LAYERS} more" if len(names) > LISTED_LAYERS else ""
        raise ConvlabError(
            f"Unknown convolution layer '{layer}'{hint} Conv2d layers: "
            f"{', '.join(names[:LISTED_LAYERS])}{more}."
        )
    return layer, convs[layer]


def filter_tiles(
    weight: torch.Tensor, first_layer: bool, max_tiles: int = MAX_TILES
) -> tuple[np.ndarray, int]:
    """The filters to draw, each normalised to 0..1 over all its values, and the grid's column count.

    Returns (out, in, kh, kw) weights of the filters shown. Colour (in = 3, first layer) and gray (in = 1)
    filters make one tile each; otherwise the first ``PAIR_COLUMNS`` input channels of each filter make a
    row, as many rows as fit in ``max_tiles``.
    """
    from convlab.viz.render import grid_columns, unit_range

    weight = weight.detach().float().cpu().numpy()
    out_channels, in_channels = weight.shape[:2]
    if in_channels == 1 or (in_channels == 3 and first_layer):
        shown = weight[:max_tiles]
        return unit_range(shown, axes=(1, 2, 3)), grid_columns(len(shown))
    columns = min(in_channels, PAIR_COLUMNS, max_tiles)
    rows = min(out_channels, max(1, max_tiles // columns))
    # Normalised over the whole filter, not per tile, so a weak input channel stays visibly weak.
    return unit_range(weight[:rows], axes=(1, 2, 3))[:, :columns], columns


def filters(
    source, *, layer: str | None = None, out: str | Path | None = None, max_tiles: int = MAX_TILES
) -> Visualisation:
    """The filters of the first Conv2d (or of ``layer``) as a grid of tiles.

    ``source``: run folder, checkpoint, ``(model, record)`` or model. Returns ``array`` = the shown
    filters as (out, in, kh, kw), each filter scaled to 0..1, and ``extra["grid"]`` the picture itself.
    """
    from convlab.viz.render import save_grid, tile_grid

    # Weights only: a checkpoint is read onto the CPU, a model passed in is not moved.
    subject, _ = load_subject(source, "cpu" if isinstance(source, (str, Path)) else None)
    model = subject.model
    first_name = next(iter(conv_layers(model)), None)
    name, conv = _conv_layer(model, layer)
    tiles, columns = filter_tiles(conv.weight, first_layer=name == first_name, max_tiles=max_tiles)
    out_channels, in_channels, kernel_h, kernel_w = conv.weight.shape
    colour = in_channels == 3 and name == first_name
    if colour:
        grid = tile_grid(tiles.transpose(0, 2, 3, 1), columns, background=1.0)  # (N, kh, kw, 3) tiles
        layout = ""
    elif in_channels == 1:
        grid = tile_grid(tiles[:, 0], columns)
        layout = ""
    else:
        grid = tile_grid(tiles.reshape(-1, kernel_h, kernel_w), columns)
        layout = "; a row per filter, a column per input channel"
    if len(tiles) < out_channels or (not colour and tiles.shape[1] < in_channels):
        layout += f"; first {len(tiles)} filters" + (
            f" x {tiles.shape[1]} inputs" if not colour and in_channels > 1 else ""
        )
    title = f"{subject.name} {name}: {out_channels} filters of {in_channels}x{kernel_h}x{kernel_w}{layout}"
    png = output_path(out, subject, f"filters-{safe_name(name)}.png")
    if png is not None:
        save_grid(grid, title, png)
    return Visualisation("filters", tiles, name, title, png, extra={"grid": grid})


__all__ = ["conv_layers", "filter_tiles", "filters"]
