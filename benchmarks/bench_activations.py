"""The bf16 inference copy (``convlab.speed.for_inference``, what ``predict`` and ``serve`` run) with the
bitwise activations it now has, against the same copy with nn.ReLU / nn.ReLU6 put back, alternated in one
process.

Both sides are one copy of the model (BatchNorm folded, weights in bf16, NHWC) under bf16 autocast and
``torch.inference_mode``; they differ only in the activation modules. Each round times ``--reps`` calls
of each side in turn (A B A B ...), and the table gives the medians over ``--rounds`` rounds, their ratio,
and the largest difference between the two sides' logits (0: the int16 clamp is exact). This is where
docs/performance.md's "Levers tried" figures for inference come from:
``python benchmarks/bench_activations.py --threads 2``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from convlab.models import create_model
from convlab.speed import for_inference, plain_activations


def timed(model: nn.Module, images: torch.Tensor, reps: int) -> tuple[float, torch.Tensor]:
    """Milliseconds per call over ``reps`` calls (after 2 untimed), and the last logits."""
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(2):
            model(images)
        start = time.perf_counter()
        for _ in range(reps):
            logits = model(images)
    return (time.perf_counter() - start) / reps * 1000, logits.float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="time per side per round (sets --reps)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| model | batch | nn's activations (ms) | bitwise (ms) | ratio | max abs diff |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = create_model(name, num_classes=1000).eval().to(memory_format=torch.channels_last)
        bitwise = for_inference(model, "bf16")
        plain = plain_activations(copy.deepcopy(bitwise))
        for batch in (int(b) for b in args.batches.split(",")):
            images = torch.randn(batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
            once, _ = timed(plain, images, 1)
            reps = max(1, round(args.seconds * 1000 / once))
            sides: dict[str, list[float]] = {"plain": [], "bitwise": []}
            outputs = {}
            for _ in range(args.rounds):
                for side, net in (("plain", plain), ("bitwise", bitwise)):
                    ms, outputs[side] = timed(net, images, reps)
                    sides[side].append(ms)
            a, b = statistics.median(sides["plain"]), statistics.median(sides["bitwise"])
            diff = (outputs["plain"] - outputs["bitwise"]).abs().max().item()
            print(f"| {name} | {batch} | {a:.2f} | {b:.2f} | {a / b:.2f}x | {diff:.1g} |", flush=True)


if __name__ == "__main__":
    main()
