"""Checks and helpers shared by tests in several folders: import them as ``from tests.helpers import ...``.

Fixtures stay in the conftest files; plain functions that a test calls live here, because a
conftest is pytest's to load and not a module to import from.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from convlab.models import create_model

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


def count_parameters(module: nn.Module) -> int:
    """Every parameter's element count, trainable or frozen."""
    return sum(p.numel() for p in module.parameters())


def on_meta(name: str, **options) -> nn.Module:
    """A registry model built on the meta device: shapes and parameter counts without allocating weights."""
    with torch.device("meta"):
        return create_model(name, **options)


def randomise_batch_norms(model: nn.Module) -> None:
    """Give every BatchNorm2d non-trivial running statistics and affine parameters.

    Fresh batch norms are the identity in eval mode, so a wrong eps, a swapped norm or a missing one would
    not show in the outputs. Draws from torch's global generator: seed it first for repeatable values.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)


@contextlib.contextmanager
def serving(*arguments: str, env: dict | None = None):
    """``convlab serve ARGUMENTS`` in a child process, as a user starts it: yields ``(process, lines)`` once it
    printed its ready line, which is ``lines.get()``'s first item (None if it ended first; every later line
    follows, then None at the end). Stopped with Ctrl+C on leaving."""
    command = [sys.executable, "-m", "convlab.cli", "serve", *arguments]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue = queue.Queue()

    def read_lines() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read_lines, daemon=True).start()
    try:
        yield process, lines
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl+C
        process.wait(timeout=60)
