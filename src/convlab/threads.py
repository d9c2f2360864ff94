"""How many intra-op threads torch gets: ``--threads N``, or ``auto``, the cores other processes leave idle.

torch's intra-op threads spin at every barrier, so on cores that other processes keep busy, more
threads than idle cores run several times slower than fewer (docs/performance.md#threads). This is
platform code (it reads Linux's /proc/stat) and needs no torch: the caller says how many threads
the process has and sets the number it gets back (``convlab.training.engine.intra_op_threads``).
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any

from convlab.errors import ConvlabError

PROC_STAT = Path("/proc/stat")
# Long enough for the kernel's tick counters (100-1000 a second) to move on every core, short next to a run.
SAMPLE_SECONDS = 0.2


def parse_threads(value: Any) -> int | str | None:
    """``"auto"``, None, or a positive number of torch intra-op threads (``"2"`` from YAML -> 2)."""
    if value is None or value == "auto":
        return value
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise ConvlabError(f"threads must be a positive integer or 'auto' (the idle cores), got {value!r}.")
    return int(text)


def idle_cores(interval: float = SAMPLE_SECONDS, stat: Path = PROC_STAT) -> float | None:
    """How many cores other processes left idle over ``interval`` seconds, from ``stat`` (/proc/stat).

    None when it cannot tell: no such file (not Linux), a format it does not know, or no tick
    counted in between.
    """

    def sample() -> tuple[int, int]:
        with open(stat) as handle:
            ticks = [int(value) for value in handle.readline().split()[1:9]]
        return ticks[3] + ticks[4], sum(ticks)  # idle + iowait; user .. steal

    try:
        idle_before, total_before = sample()
        time.sleep(interval)
        idle_after, total_after = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total_after <= total_before:
        return None
    cores = sum(1 for line in stat.read_text().splitlines() if re.match(r"cpu\d", line))
    return (idle_after - idle_before) / (total_after - total_before) * cores


def resolve_threads(threads: int | str | None, available: int) -> int:
    """The number of threads the setting ``threads`` gives a process that has ``available`` now.

    None: ``available``; N: N; ``"auto"``: the idle cores, rounded half up, at least 1 and never
    more than ``available`` (auto only lowers).
    """
    if threads is None:
        return available
    if threads != "auto":
        return int(threads)
    if available <= 1:
        return available  # nothing to lower, so no sample to wait for
    idle = idle_cores()
    if idle is None:
        return available  # how busy the cores are is unknown here: keep the process's own setting
    return max(1, min(available, math.floor(idle + 0.5)))
