"""What every benchmark worker shares: thread set-up, clocks (wall and CPU), peak memory, the result line.

Each measurement runs in its own process (``python benchmarks/bench_*.py ...``), started by
benchmarks/run.py, so that peak memory (``getrusage`` maxrss) belongs to one side alone and no
side inherits the other's warm caches or thread pools. The worker prints one line
``RESULT {json}`` that run.py reads.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

RESULT_PREFIX = "RESULT "
HERE = Path(__file__).resolve().parent

MODELS = {  # the model options and input size every side trains with, and the convlab side's --amp
    # LeNet-5 takes 32x32: 28x28 images are resized. At batch 64 bf16 does not pay on its 1-, 6- and
    # 16-map layers (-5%; +16% from batch 128: docs/performance.md, "Levers tried").
    "lenet5": ({"pool": "max", "activation": "relu"}, 32, "off"),
    # The CIFAR ResNet-20 ends in global pooling: Fashion-MNIST at its own 28x28; bf16 +70-80% here.
    "resnet20": ({}, 28, "bf16"),
}


def set_threads(threads: int) -> None:
    """The same intra-op thread count for both sides (torch's default, one per core, collapses when other
    processes share the cores: docs/performance.md); then the peak-memory count starts."""
    import torch
    import torchvision  # noqa: F401  (both sides load it: imported before the memory count starts)

    import convlab.data  # noqa: F401

    torch.set_num_threads(int(threads))
    reset_peak_memory()


def live_children_cpu() -> float:
    """CPU seconds of this process's running children (persistent DataLoader workers), from /proc."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():  # fields after "(comm)": state, ppid, ..., utime (12), stime (13)
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def cpu_seconds() -> float:
    """User + system CPU time of this process and its children, finished or running (DataLoader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + live_children_cpu()


class Clock:
    """Wall and CPU seconds between start() and stop()."""

    def start(self) -> Clock:
        self.wall0, self.cpu0 = time.perf_counter(), cpu_seconds()
        return self

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall0, cpu_seconds() - self.cpu0


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


_START_RSS: list[float] = []


def reset_peak_memory() -> None:
    """Start the peak-memory count now, after the imports: importing torch alone peaks near 700 MB of mostly
    shared library pages, which would hide what the measured work adds. Writing 5 to /proc/self/clear_refs
    resets the kernel's high-water mark (VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    _START_RSS[:] = [_status_mb("VmRSS") or 0.0]


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process since reset_peak_memory() (VmHWM; getrusage's maxrss where /proc
    is missing), the resident memory at that reset, and the difference: what the measured work added."""
    peak = _status_mb("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = _START_RSS[0] if _START_RSS else 0.0
    return {
        "peak_rss_mb": round(peak, 1),
        "rss_at_start_mb": round(start, 1),
        "peak_above_start_mb": round(peak - start, 1),
    }


def emit(result: dict) -> None:
    """Print the worker's result line (with peak memory and the thread count) and flush."""
    import torch

    result = {**result, **peak_memory_mb(), "threads": torch.get_num_threads(), "pid": os.getpid()}
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    sys.stdout.flush()


def weights_digest(model) -> str:
    """A short digest of a model's parameters: equal digests prove both sides start from the same weights."""
    import hashlib

    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]
