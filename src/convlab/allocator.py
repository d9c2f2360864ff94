"""Freed large buffers kept for the next step: glibc's malloc set so that big tensors do not come fresh from the kernel.

glibc's malloc serves every request above its mmap threshold (dynamic, at most 32 MiB) with a fresh
``mmap`` and gives it back with ``munmap`` when it is freed. A training step at ImageNet's sizes
allocates and frees several such tensors every step (ResNet-18 at 224x224, batch 32: the 64 maps of
112x112 are 51 MB in bf16, and so are their gradients and the max-pooling indices), so every step
the kernel maps them again and zeroes each page on its first touch: creating such a tensor costs
11.7 ms here, against 2.4 ms to write the same bytes into memory already mapped. Told to serve them
from its heap (``M_MMAP_MAX`` 0) and to keep a freed heap top (``M_TRIM_THRESHOLD``), malloc hands
the next step the pages the last one freed: ResNet-18's fine-tuning step ran 1.13x faster, its
evaluation at batch 256 1.3x (docs/performance.md#transfer-learning-on-a-folder-of-photos-serving-and-the-limits-issue-17).
Training runs, ``convlab eval`` and ``convlab predict`` hold the setting (``large_buffers_kept``);
``convlab serve`` does not: in its batcher's thread the setting slowed batches of 16 (docs/performance.md).

Written here because PyTorch keeps no cache of CPU memory (its caching allocator is CUDA's), and the
allocators Intel recommends for it (jemalloc, tcmalloc) are system packages loaded by ``LD_PRELOAD``
before the process starts, which a ``pip install`` cannot arrange. The price is that freed memory
stays with the process while it works; ``give_back_freed`` returns it to the system when a run
ends. Other C libraries (musl, macOS) are left as they are. This is platform code: it needs no torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import platform
from collections.abc import Iterator
from functools import cache

# mallopt's parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# A freed heap top up to this size stays mapped for the next step; a larger one goes back at once.
KEEP_FREED_BYTES = 1 << 30


@cache
def _glibc() -> ctypes.CDLL | None:
    """The process's glibc, or None under another C library (or none found)."""
    if platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None


@cache
def reuse_large_buffers() -> bool:
    """Set the process's malloc to keep freed large buffers for reuse (once per process).

    True when glibc took both settings; False under another C library, where nothing changes.
    """
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 when it took the value
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES))


def give_back_freed() -> None:
    """Return the whole pages of freed memory to the system (``malloc_trim``), as at a run's end."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@contextlib.contextmanager
def large_buffers_kept() -> Iterator[None]:
    """For a run or an evaluation: malloc keeps freed large buffers (``reuse_large_buffers``), and the
    freed pages go back to the system at the end (``give_back_freed``)."""
    reuse_large_buffers()
    try:
        yield
    finally:
        give_back_freed()
