"""How long the `convlab` command takes to answer where it needs no network: wall seconds per command.

Each command runs as a user runs it, a fresh process of the installed `convlab` script (or
``python -m convlab.cli`` where there is none), its output discarded. The commands take turns
(A B C ... A B C ...) so that other work on the machine hits them alike; the table gives the
median and the fastest of --rounds runs. ``python -c pass`` is the floor (starting Python at
all) and ``python -c 'import torch'`` what any command that does need torch starts at.
Run alone (``python benchmarks/bench_cli.py``) it prints the table; benchmarks/run.py runs it as
its ``cli`` part and reads the RESULT line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULT_PREFIX  # noqa: E402

PYTHON = sys.executable
SCRIPT = Path(PYTHON).with_name("convlab")
CONVLAB = [str(SCRIPT)] if SCRIPT.exists() else [PYTHON, "-m", "convlab.cli"]

# name -> (command, what it shows); the floor first, then what convlab must answer at once
COMMANDS = {
    "python -c pass": ([PYTHON, "-c", "pass"], "floor: starting Python"),
    "convlab --help": ([*CONVLAB, "--help"], "every command's parser built"),
    "convlab --version": ([*CONVLAB, "--version"], ""),
    "convlab train --help": ([*CONVLAB, "train", "--help"], "the longest help"),
    "convlab conv-arith": (
        [*CONVLAB, "conv-arith", "--size", "224", "--kernel", "7", "--stride", "2", "--padding", "3"],
        "AlexNet-style first layer worked out",
    ),
    "usage error": ([*CONVLAB, "train", "--optimzer", "adam"], "a mistyped flag, with did-you-mean"),
    "setting error": ([*CONVLAB, "train", "--optimizer", "adamm"], "a mistyped value, checked before torch"),
    "python -c 'import torch'": ([PYTHON, "-c", "import torch"], "what a command that needs torch starts at"),
}
# The commands held to the "well under a second"; the two python lines are the scale.
ANSWERED_AT_ONCE = [name for name in COMMANDS if not name.startswith("python")]


def wall_seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def measure(rounds: int) -> dict[str, list[float]]:
    """Every command once per round, in turn, after one unmeasured round that warms the file cache."""
    for command, _ in COMMANDS.values():
        wall_seconds(command)
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(rounds):
        for name, (command, _) in COMMANDS.items():
            samples[name].append(wall_seconds(command))
    return samples


def table(rows: dict[str, dict]) -> str:
    lines = [
        "| command | median s | fastest s | above `python -c pass` | |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| `{name}` | {row['median']:.3f} | {row['fastest']:.3f} | {row['above_floor']:+.3f} | "
            f"{COMMANDS[name][1]} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15, help="runs of each command (default 15)")
    args = parser.parse_args()
    samples = measure(args.rounds)
    floor = statistics.median(samples["python -c pass"])
    rows = {
        name: {
            "median": statistics.median(values),
            "fastest": min(values),
            "above_floor": statistics.median(values) - floor,
            "samples": [round(value, 4) for value in values],
        }
        for name, values in samples.items()
    }
    print(
        f"{args.rounds} alternated runs of each command on {os.cpu_count()} cores "
        f"(load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}):"
    )
    print(table(rows))
    slowest = max(ANSWERED_AT_ONCE, key=lambda name: rows[name]["median"])
    result = {
        "rows": rows,
        "rounds": args.rounds,
        "slowest": slowest,
        "slowest_median": rows[slowest]["median"],
    }
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
