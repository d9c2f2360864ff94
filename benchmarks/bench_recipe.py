"""One run of a training recipe end to end, timed as a user meets it (started by benchmarks/run.py).

The clock starts before convlab (and torch) are imported and stops when ``train()`` has returned,
so it covers loading the data, every epoch with its validation, the test evaluation and the
report: what ``convlab train --recipe NAME`` costs. There is no reference side: the recipes'
targets are absolute (e.g. ``fast``: >= 93% Fashion-MNIST test top-1 within 3 minutes).
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recipe")
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    from common import Clock, emit

    clock = Clock().start()  # CPU seconds from here; wall seconds from START
    import convlab

    with tempfile.TemporaryDirectory(prefix="convlab-recipe-") as out:
        result = convlab.train(recipe=args.recipe, threads=args.threads, out=Path(out) / "run")
        seconds = time.perf_counter() - START
        _, cpu = clock.stop()
    config = result.config
    emit(
        {
            "mode": "recipe",
            "recipe": args.recipe,
            "model": config.model,
            "epochs": result.epochs_completed,
            "seconds": seconds,
            "cpu_seconds": cpu,
            "top1": result.test.top1,
            "best_val_top1": result.best_val_top1,
            "images_per_s": [round(row["images_per_s"]) for row in result.history],
        }
    )


if __name__ == "__main__":
    main()
