"""A folder of photos the way a user collects them, small enough for a test: one sub-folder per class of
PNG files with patterns a tiny network tells apart after a few steps. Import as ``from tests.photos import ...``.
"""

from __future__ import annotations

import struct
import zlib
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
# PNG colour type, bit depth and samples a pixel of the PIL modes write_large_png writes.
PNG_MODES = {"L": (0, 8, 1), "RGB": (2, 8, 3), "P": (3, 8, 1), "RGBA": (6, 8, 4), "I;16": (0, 16, 1)}


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


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, mode: str = "RGB") -> bytes:
    """The signature and IHDR chunk of a PNG of ``width`` x ``height`` in ``mode`` (a key of PNG_MODES)."""
    color_type, depth, _ = PNG_MODES[mode]
    fields = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", fields)


def png_without_pixels(width: int, height: int) -> bytes:
    """An RGB PNG whose header says ``width`` x ``height`` and whose data holds no pixels: readable up to its
    header, a decoding error after it. What a decompression bomb looks like to a reader that checks headers."""
    return png_header(width, height) + _png_chunk(b"IDAT", b"no pixels here") + _png_chunk(b"IEND", b"")


def write_large_png(path: Path, width: int, height: int, mode: str = "RGB") -> Path:
    """A PNG of ``width`` x ``height`` in ``mode`` written without its pixels ever in memory: the first row a
    ramp, every other row the same (PNG's "up" filter of zeros), so that even 90 megapixels take a second and a
    megabyte or two. PIL needs the whole raster to write one."""
    color_type, depth, samples = PNG_MODES[mode]
    row_bytes = width * samples * depth // 8
    ramp = (np.arange(row_bytes) * 255 // max(1, row_bytes - 1)).astype(np.uint8).tobytes()
    compressor = zlib.compressobj(1)
    parts = [compressor.compress(b"\x00" + ramp)]  # filter 0 (none): the ramp itself
    rows_at_once = max(1, 2**22 // (row_bytes + 1))
    repeated = (b"\x02" + bytes(row_bytes)) * rows_at_once  # filter 2 (up), no change: the row above again
    for first in range(1, height, rows_at_once):
        parts.append(compressor.compress(repeated[: min(rows_at_once, height - first) * (row_bytes + 1)]))
    parts.append(compressor.flush())
    palette = _png_chunk(b"PLTE", bytes(range(256)) * 3) if mode == "P" else b""
    data = png_header(width, height, mode) + palette + _png_chunk(b"IDAT", b"".join(parts))
    path.write_bytes(data + _png_chunk(b"IEND", b""))
    return path
