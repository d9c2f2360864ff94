"""Distributed training throughput: LeNet-5 on Fashion-MNIST on one process against N (DistributedDataParallel).

Each measurement is one ``convlab train`` command in fresh processes (``--nproc N`` for N > 1), the sides
alternated (A B C A B C ...) so that a change in what else runs on the machine hits them alike; the figure
is the training images/s of the run's last epoch (metrics.csv: training steps only, every process's images
over process 0's clock), the first epoch being the warm-up. Medians of the rounds.

On CPUs the sides share the machine's cores: one process on one thread, one process on all of them, and
N processes (one per core) on one thread each; on GPUs (``--device cuda``), 1, 2, ... processes, one GPU
each. Scaling efficiency is images/s on N workers over N times one worker's.

    python benchmarks/bench_distributed.py                     # this machine's cores
    python benchmarks/bench_distributed.py --device cuda --processes 1,2,4,8
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "distributed.json"
# LeNet-5 as the other benchmarks train it (common.MODELS), at batch 64 for all the processes together.
SETTINGS = [
    "--model", "lenet5", "--option", "pool=max", "--option", "activation=relu", "--data", "fashion-mnist",
    "--optimizer", "momentum", "--lr", "0.01", "--schedule", "constant",
]  # fmt: skip


def log(text: str) -> None:
    print(text, flush=True)


def measure(
    processes: int, threads: int, device: str, images: int, epochs: int, batch: int, work: Path
) -> dict:
    """One run of ``convlab train``: its last epoch's training images/s and the wall seconds it took."""
    out = work / f"run-{processes}x{threads}-{time.time_ns()}"
    command = [
        sys.executable, "-m", "convlab", "train", *SETTINGS, "--limit", str(images), "--epochs", str(epochs),
        "--batch-size", str(batch), "--threads", str(threads), "--device", device, "--out", str(out),
    ]  # fmt: skip
    if processes > 1:
        command += ["--nproc", str(processes)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {"images_per_s": float(rows[-1]["images_per_s"]), "wall_seconds": seconds}


def scaling(
    sides: dict[str, tuple[int, int]],
    device: str = "cpu",
    repeats: int = 3,
    images: int = 30000,
    epochs: int = 2,
    batch: int = 64,
) -> dict:
    """Every side (name -> (processes, threads each)) ``repeats`` times in turn; medians per side."""
    samples: dict[str, list[dict]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="convlab-bench-ddp-") as folder:
        for round_number in range(1, repeats + 1):
            shown = []
            for side, (processes, threads) in sides.items():
                result = measure(processes, threads, device, images, epochs, batch, Path(folder))
                samples[side].append(result)
                shown.append(f"{side} {result['images_per_s']:,.0f} img/s")
            log(f"  [distributed] round {round_number}/{repeats}: " + ", ".join(shown))
    return {
        "device": device,
        "images": images,
        "epochs": epochs,
        "batch": batch,
        "sides": {name: {"processes": p, "threads": t} for name, (p, t) in sides.items()},
        "medians": {
            side: statistics.median(r["images_per_s"] for r in runs) for side, runs in samples.items()
        },
        "samples": {side: [round(r["images_per_s"], 1) for r in runs] for side, runs in samples.items()},
        "wall_seconds": {
            side: statistics.median(r["wall_seconds"] for r in runs) for side, runs in samples.items()
        },
    }


def cpu_sides(cores: int) -> dict[str, tuple[int, int]]:
    return {
        "1 process x 1 thread": (1, 1),
        f"1 process x {cores} threads": (1, cores),
        f"{cores} processes x 1 thread": (cores, 1),
    }


def gpu_sides(counts: list[int], cores: int) -> dict[str, tuple[int, int]]:
    return {f"{n} GPU{'s' if n > 1 else ''}": (n, max(1, cores // n)) for n in counts}


def efficiencies(result: dict) -> dict[str, float]:
    """Images/s on N workers over N x one worker's: a worker is a core on CPUs (against one process on one
    thread; and, apart, N processes against one process using the same cores through its threads), a GPU
    on GPUs."""
    medians, sides, cpu = result["medians"], result["sides"], result["device"] == "cpu"

    def workers(side: dict) -> int:
        return side["processes"] * (side["threads"] if cpu else 1)

    one = next(name for name, side in sides.items() if workers(side) == 1)
    rows = {
        f"{name} / ({workers(side)} x {one})": medians[name] / (workers(side) * medians[one])
        for name, side in sides.items()
        if name != one
    }
    if cpu:
        threaded = next(
            name for name, side in sides.items() if side["processes"] == 1 and side["threads"] > 1
        )
        several = next(name for name, side in sides.items() if side["processes"] > 1)
        rows[f"{several} / {threaded}"] = medians[several] / medians[threaded]
    return rows


def markdown(result: dict) -> str:
    lines = [
        f"LeNet-5 on {result['images']:,} Fashion-MNIST images (90% trained on), batch {result['batch']} for all "
        f"the processes together, training images/s of epoch {result['epochs']}, medians of "
        f"{len(next(iter(result['samples'].values())))} alternated rounds on {result['device']}:",
        "",
        "| side | images/s | samples |",
        "|---|---|---|",
    ]
    for side, median in result["medians"].items():
        samples = ", ".join(f"{value:,.0f}" for value in result["samples"][side])
        lines.append(f"| {side} | {median:,.0f} | {samples} |")
    lines += ["", "| scaling efficiency | value |", "|---|---|"]
    lines += [f"| {name} | {value:.0%} |" for name, value in result["efficiency"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--processes", default=None, help="GPUs: the process counts, e.g. 1,2,4,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=30000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    if args.device == "cpu":
        sides = cpu_sides(cores)
    else:
        import torch

        counts = (
            [int(n) for n in args.processes.split(",")] if args.processes else [1, torch.cuda.device_count()]
        )
        sides = gpu_sides(sorted(set(counts)), cores)
    log(f"distributed training: {', '.join(sides)}; load average {os.getloadavg()[0]:.2f} at the start")
    result = scaling(sides, args.device, args.repeats, args.images, args.epochs, args.batch_size)
    result["efficiency"] = efficiencies(result)
    result["load_average"] = [round(value, 2) for value in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log("\n" + markdown(result))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
