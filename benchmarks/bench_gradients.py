"""What --log-gradients costs: LeNet-5 training images/s with the gradient log off and on (every 50 and
every 10 steps), each side a fresh `convlab train` process, the sides alternated (A B C A B C ...).

Off, the engine builds no GradientLog and no hook is registered, so "off" is the plain training loop.
On, a logging step copies the parameters and reduces each layer's gradient, weights and update; the
forward hooks on the other steps only test a flag. Prints medians and the ratios to "off".

    python benchmarks/bench_gradients.py [--rounds 3] [--limit 20000]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PYTHON = sys.executable
CONVLAB = [str(Path(PYTHON).with_name("convlab"))]
SIDES = {"off": [], "every 50 steps": ["--log-gradients", "50"], "every 10 steps": ["--log-gradients", "10"]}


def images_per_second(extra: list[str], limit: int, threads: int) -> float:
    """Training images/s of one epoch (metrics.csv's images_per_s: training alone, no validation)."""
    with tempfile.TemporaryDirectory() as folder:
        command = [*CONVLAB, "train", "--model", "lenet5", "--data", "fashion-mnist", "--limit", str(limit)]
        command += ["--epochs", "1", "--threads", str(threads), "--out", f"{folder}/run", *extra]
        subprocess.run(command, check=True, capture_output=True)
        with open(f"{folder}/run/metrics.csv", newline="") as handle:
            return float(next(csv.DictReader(handle))["images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=20000, help="training images (default 20000)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    measured: dict[str, list[float]] = {side: [] for side in SIDES}
    for round_ in range(args.rounds):
        for side, extra in SIDES.items():
            measured[side].append(images_per_second(extra, args.limit, args.threads))
            print(f"round {round_ + 1} {side}: {measured[side][-1]:,.0f} img/s", flush=True)
    off = statistics.median(measured["off"])
    print(
        f"\nLeNet-5, Fashion-MNIST ({args.limit} images, batch 64), {args.threads} threads, median of {args.rounds}"
    )
    for side, values in measured.items():
        median = statistics.median(values)
        print(f"{side:>16}: {median:8,.0f} img/s  ({median / off:.2f}x of off)")


if __name__ == "__main__":
    main()
