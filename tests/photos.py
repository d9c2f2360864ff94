"""A folder of photos the way a user collects them, small enough for a test: one sub-folder per class of
PNG files with patterns a tiny network tells apart after a few steps. Import as ``from tests.photos import ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 24  # pixels; small enough that an MLP trains in well under a second on one core
# What each class looks like over a dark noisy ground: the names are the folders' names.
PATTERNS = ("stripes", "dots", "plain")
# The run's classes in an order that is not the folders' sorted order, so that a held-out folder (whose
# classes load sorted) must be matched by name.
RUN_CLASSES = ["stripes", "plain", "dots"]


def pattern_pixels(name: str, rng: np.random.Generator, side: int = SIDE) -> np.ndarray:
    """One side x side x 3 uint8 picture of the pattern ``name``, on fresh noise from ``rng``."""
    pixels = rng.integers(0, 50, (side, side, 3)).astype(np.uint8)
    if name == "stripes":  # bright vertical lines every 4 pixels
        pixels[:, ::4] += 190
    elif name == "dots":  # bright dots on a 4-pixel grid
        pixels[::4, ::4] += 190
    elif name == "plain":  # an even mid-grey
        pixels += 100
    elif name == "checks":  # 4-pixel squares, a class the runs never learn
        rows, columns = np.indices((side, side)) // 4
        pixels[(rows + columns) % 2 == 0] += 190
    else:
        raise ValueError(f"no pattern '{name}'")
    return pixels


def write_photo_folder(
    root: Path, per_class: int = 20, seed: int = 0, classes: Sequence[str] = PATTERNS
) -> Path:
    """``root/<class>/<class>-NNN.png`` for each class: ``per_class`` pictures each, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            Image.fromarray(pattern_pixels(name, rng)).save(root / name / f"{name}-{index:03d}.png")
    return root


def train_photo_run(folder: Path, out: Path, **settings) -> Path:
    """A real run folder: convlab's MLP trained for 2 epochs on ``folder`` (split into train/val only), with
    the classes in ``RUN_CLASSES`` order."""
    import convlab

    options = dict(model="mlp", data=str(folder), epochs=2, classes=RUN_CLASSES, device="cpu", seed=0)
    convlab.train(out=str(out), **{**options, **settings})
    return out
