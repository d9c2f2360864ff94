"""Writing files so that a crash never leaves half of one: checkpoints, metrics, reports, configs.

Torch-free, so that every layer, the configuration included, writes the same way.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from convlab.errors import ConvlabError


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates files readable by the owner only; give them the usual umask mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def require_file_or_folder(path: str | Path) -> Path:
    """``path`` when something is there; otherwise the one sentence every command gives for a missing
    checkpoint. Torch-free, so that the command line answers a mistyped path before loading torch."""
    path = Path(path)
    if not path.exists():
        raise ConvlabError(
            f"No checkpoint at '{path}': give a run folder or a .safetensors file written by convlab."
        )
    return path
