"""Checks shared by tests in several folders: import them as ``from tests.helpers import ...``.

Fixtures stay in the conftest files; plain functions that a test calls live here, because a
conftest is pytest's to load and not a module to import from.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path | None, min_side: int = 100) -> tuple[int, int]:
    """A real, non-empty PNG: the 8-byte signature, then a picture at least ``min_side`` pixels a side."""
    assert path is not None and path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
    assert width >= min_side and height >= min_side
    return width, height
