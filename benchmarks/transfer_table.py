"""The transfer-learning table of docs/transfer.md: LeNet-5 trained on Fashion-MNIST classes 0-4, reused on
classes 5-9 with 10, 50 and 500 labelled images per class, against training from scratch.

Runs the `convlab train` commands it prints (one process each, as a user would) and writes
``table.md`` and ``results.json`` into the output folder::

    python benchmarks/transfer_table.py                 # about 3 minutes on 2 CPU cores
    python benchmarks/transfer_table.py --per-class 10  # one row group only
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

# The network: LeNet-5 with ReLU and max pooling (LeCun et al. 1998, modernised), 61k parameters: it
# pre-trains in under a minute on one CPU core, so the whole table stays within a few minutes.
MODEL = ["--model", "lenet5", "--activation", "relu", "--option", "pool=max"]
SOURCE_CLASSES = "0,1,2,3,4"  # T-shirt/top, Trouser, Pullover, Dress, Coat
TARGET_CLASSES = "5,6,7,8,9"  # Sandal, Shirt, Sneaker, Bag, Ankle boot
SEED = 0
# Pre-training: Adam at its default lr, 5 epochs over the 27,000 training images of classes 0-4.
SOURCE = ["--data", "fashion-mnist", "--classes", SOURCE_CLASSES, "--epochs", "5", "--optimizer", "adam"]
# Every transfer run: all N labelled images train (no validation split), batches of 16, Adam at 0.01 with
# the cosine schedule. One lr for every scenario; at Adam's default 0.001 the feature-extract head, a new
# linear layer on fixed features, is still far from fitted at the end of the 10/class budget.
BATCH_SIZE = 16
LR = 0.01
# Epochs per size: about 180, 450 and 1,560 optimizer steps; the small sets get more passes.
EPOCHS = {10: 60, 50: 30, 500: 10}
SCENARIOS = {
    "from scratch": MODEL,
    "feature-extract": ["--transfer", "feature-extract"],
    "finetune all, backbone lr x0.1": ["--transfer", "finetune", "--backbone-lr-scale", "0.1"],
    "linear-probe": ["--transfer", "linear-probe"],
}
TEST_TOP1 = re.compile(r"test top-1 (\d+\.\d+)%")


def command(run_dir: Path, arguments: list[str], threads: int) -> list[str]:
    return [
        "convlab",
        "train",
        *arguments,
        "--seed",
        str(SEED),
        "--threads",
        str(threads),
        "--out",
        str(run_dir),
    ]


def target_arguments(per_class: int, scenario: str, source_dir: Path) -> list[str]:
    arguments = [
        "--data",
        "fashion-mnist",
        "--classes",
        TARGET_CLASSES,
        "--limit-per-class",
        str(per_class),
        "--val-split",
        "0",
    ]
    if scenario != "linear-probe":  # the probe is one scikit-learn fit: no epochs, batches or lr
        arguments += [
            "--epochs",
            str(EPOCHS[per_class]),
            "--batch-size",
            str(BATCH_SIZE),
            "--optimizer",
            "adam",
            "--lr",
            str(LR),
        ]
    if scenario != "from scratch":
        arguments += ["--pretrained", str(source_dir)]
    return arguments + SCENARIOS[scenario]


def run(argv: list[str]) -> dict:
    """Run one `convlab train` command; its test top-1 (train.log's last line), wall and training seconds."""
    print("$ " + shlex.join(argv), flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "convlab.cli", *argv[1:]], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    run_dir = Path(argv[argv.index("--out") + 1])
    found = TEST_TOP1.findall((run_dir / "train.log").read_text())
    with open(run_dir / "metrics.csv", newline="") as handle:
        train_seconds = sum(float(row["seconds"]) for row in csv.DictReader(handle))
    return {
        "command": shlex.join(argv),
        "test_top1": float(found[-1]) / 100,
        "wall_seconds": wall,
        "train_seconds": train_seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path("runs/transfer-table"), help="a new folder for the runs"
    )
    parser.add_argument("--per-class", default="10,50,500", help="labelled images per class, comma-separated")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1 was faster than 2 on the "
        "shared 2-core machine the documented table comes from)",
    )
    args = parser.parse_args()
    sizes = [int(n) for n in args.per_class.split(",")]
    if args.out.exists():
        parser.error(f"{args.out} exists; give a new --out folder (runs are never overwritten)")

    source_dir = args.out / "source"
    results = {
        "threads": args.threads,
        "source": run(command(source_dir, [*MODEL, *SOURCE], args.threads)),
        "runs": [],
    }
    for per_class in sizes:
        for scenario in SCENARIOS:
            run_dir = args.out / f"{per_class}-per-class" / scenario.split(",")[0].replace(" ", "-")
            outcome = run(command(run_dir, target_arguments(per_class, scenario, source_dir), args.threads))
            results["runs"].append({"per_class": per_class, "scenario": scenario, **outcome})

    source = results["source"]
    lines = [
        f"Source: LeNet-5 on Fashion-MNIST classes {SOURCE_CLASSES}, test top-1 {source['test_top1']:.2%} "
        f"on their 5,000 test images ({source['wall_seconds']:.0f} s).",
        "",
        "| labelled / class | scenario | test top-1 (classes 5-9, 5,000 images) | train s | command s |",
        "|---:|---|---:|---:|---:|",
    ]
    for row in results["runs"]:
        lines.append(
            f"| {row['per_class']} | {row['scenario']} | {row['test_top1']:.2%} | "
            f"{row['train_seconds']:.1f} | {row['wall_seconds']:.1f} |"
        )
    table = "\n".join(lines)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
