"""LeNet-5's training step with the speed levers added one at a time, alternated in one process.

Each variant is the previous one plus one lever; the sides take turns (A B C ... A B C ...) for
``--rounds`` rounds of ``--steps`` steps on the same random batch, and the table gives the median
images/s of each and its ratio to the plain step. This is what docs/performance.md's "Levers
tried" rows for LeNet-5 come from: ``python benchmarks/levers.py --threads 2``.
Variants:
  plain         NCHW float32, C5 as nn.Conv2d, SGD with a loop over tensors (torch's foreach off)
  +channels-last  NHWC weights and batches
  +fused-sgd    torch's fused SGD kernel (what convlab.training.build_optimizer picks)
  +covering-c5  C5 as one matrix product at its 5x5 input (convlab.speed.use_fast_layers, as training has it)
  +bf16         bf16 autocast on top of all of the above
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from convlab.models import create_model
from convlab.speed import use_fast_layers

VARIANTS = ("plain", "+channels-last", "+fused-sgd", "+covering-c5", "+bf16")


def build_step(variant: str, batch_size: int):
    levers = VARIANTS[: VARIANTS.index(variant) + 1]
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10, in_chans=1, pool="max", activation="relu")
    if "+covering-c5" in levers:
        use_fast_layers(model, (1, 32, 32))  # C5 as one matrix product, as training runs it
    images, labels = torch.randn(batch_size, 1, 32, 32), torch.randint(0, 10, (batch_size,))
    if "+channels-last" in levers:
        model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    fused = "+fused-sgd" in levers
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=0.01,
        momentum=0.9,
        fused=True if fused else None,
        foreach=None if fused else False,
    )
    criterion = nn.CrossEntropyLoss()
    bf16 = "+bf16" in levers

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = {variant: build_step(variant, args.batch_size) for variant in VARIANTS}
    rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.rounds):
        for variant, step in steps.items():
            step()  # one untimed step: the variant's buffers are warm again after the others ran
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            rates[variant].append(args.batch_size * args.steps / (time.perf_counter() - start))
    plain = statistics.median(rates["plain"])
    print(
        f"LeNet-5 training step, batch {args.batch_size}, {args.threads} thread(s), medians of {args.rounds} "
        f"alternated rounds of {args.steps} steps"
    )
    for variant in VARIANTS:
        value = statistics.median(rates[variant])
        print(
            f"{variant:16s} {value:8,.0f} images/s  {value / plain:5.2f}x   {[round(r) for r in rates[variant]]}"
        )


if __name__ == "__main__":
    main()
