"""Training steps with ``convlab.speed.PatchGradConv2d`` (a stride-1 convolution's weight gradient as one
matrix product over patches, on small bf16 maps) against the same model with those layers plain, alternated
in one process; and, with ``--layers``, the weight gradient alone per layer shape.

Both step sides are one model built from the same seed with ``use_fast_layers(..., training=True)``; the plain
side has its PatchGradConv2d layers swapped back to nn.Conv2d, so the two differ only in that lever. Each side
runs bf16 autocast, channels_last, fused SGD with Nesterov momentum, and glibc keeping large buffers
(``convlab.allocator``), as training does. Each round times ``--steps`` steps of each side in turn
(A B A B ...). This machine's speed swings within seconds, so the table gives the median of the per-round
ratios (each ratio's two sides ran back to back) and their quartiles, beside each side's median.
This is where docs/performance.md's "Levers tried" figures for the lever come from:
``python benchmarks/bench_patch_grad.py --threads 2 --layers``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from convlab.allocator import reuse_large_buffers
from convlab.models import create_model
from convlab.speed import patch_weight_gradient, plain_convolutions, use_fast_layers

# model, options, input channels, size, batch: the best recipe's network, and ResNet-18 fine-tuned at 224
STEPS = {
    "vgg_mini": ({"width": 3, "dropout": 0.3}, 1, 28, 256),
    "resnet18": ({}, 3, 224, 32),
}
# batch, maps in, map size, maps out of 3x3 convolutions: vgg_mini width 3's and ResNet-18's stages, and
# shapes on both sides of PATCH_GRAD_MAX_POSITIONS and PATCH_GRAD_MIN_MAPS
LAYERS = [
    (256, 192, 3, 384),
    (256, 192, 7, 192),
    (256, 96, 7, 192),
    (256, 64, 7, 64),
    (256, 96, 14, 96),
    (32, 512, 7, 512),
    (32, 256, 14, 256),
]


def model_pair(name: str) -> tuple[tuple, tuple]:
    """(model, optimizer) with the lever and without it, the same weights."""
    options, chans, size, _ = STEPS[name]
    pair = []
    for lever in (False, True):
        torch.manual_seed(0)
        model = create_model(name, 10, chans, **options)
        use_fast_layers(model, (chans, size, size), training=True)
        if not lever:  # neither network has depthwise convolutions: PatchGradConv2d is all this swaps back
            plain_convolutions(model)
        model = model.to(memory_format=torch.channels_last).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, fused=True)
        pair.append((model, optimizer))
    return pair[0], pair[1]


def steps_per_second(
    model: nn.Module, optimizer, images: torch.Tensor, labels: torch.Tensor, steps: int
) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(images), labels, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def ms_per_call(fn, reps: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1000


def layer_table(rounds: int) -> None:
    print(
        "| batch | maps in -> out | map | oneDNN's weight gradient (ms) | patches and one product (ms) | ratio |"
    )
    print("|---|---|---|---|---|---|")
    for batch, maps_in, size, maps_out in LAYERS:
        torch.manual_seed(0)
        x = torch.randn(batch, maps_in, size, size).bfloat16().contiguous(memory_format=torch.channels_last)
        weight = torch.randn(maps_out, maps_in, 3, 3).bfloat16().contiguous(memory_format=torch.channels_last)
        grad = (
            torch.randn(batch, maps_out, size, size).bfloat16().contiguous(memory_format=torch.channels_last)
        )
        conv_args = ([maps_out], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, True])
        sides = {  # bias gradients included on both sides
            "onednn": functools.partial(torch.ops.aten.convolution_backward, grad, x, weight, *conv_args),
            "patches": lambda grad=grad, x=x: (
                patch_weight_gradient(grad, x, (3, 3), (1, 1)),
                grad.sum((0, 2, 3)),
            ),
        }
        times: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(rounds):
            for side, fn in sides.items():
                times[side].append(ms_per_call(fn, 5))
        a, b = statistics.median(times["onednn"]), statistics.median(times["patches"])
        print(
            f"| {batch} | {maps_in} -> {maps_out} | {size}x{size} | {a:.1f} | {b:.1f} | {a / b:.2f}x |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(STEPS))
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=3, help="steps per side per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layers", action="store_true", help="also time the weight gradient alone per shape")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reuse_large_buffers()
    if args.layers:
        layer_table(max(5, args.rounds // 6))
        print()
    print("| model | batch | plain images/s | with PatchGradConv2d | paired ratio (quartiles) |")
    print("|---|---|---|---|---|")
    for name in args.models.split(","):
        _, chans, size, batch = STEPS[name]
        (plain, plain_opt), (fast, fast_opt) = model_pair(name)
        torch.manual_seed(1)
        images = torch.randn(batch, chans, size, size).contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, 10, (batch,))
        for model, optimizer in ((plain, plain_opt), (fast, fast_opt)):
            steps_per_second(model, optimizer, images, labels, 2)  # warm-up: oneDNN's kernel choice
        rates: dict[str, list[float]] = {"plain": [], "patches": []}
        for _ in range(args.rounds):
            rates["plain"].append(batch * steps_per_second(plain, plain_opt, images, labels, args.steps))
            rates["patches"].append(batch * steps_per_second(fast, fast_opt, images, labels, args.steps))
        ratios = [b / a for a, b in zip(rates["plain"], rates["patches"], strict=True)]
        low, _, high = statistics.quantiles(ratios, n=4)
        a, b = statistics.median(rates["plain"]), statistics.median(rates["patches"])
        print(
            f"| {name} | {batch} | {a:.1f} | {b:.1f} | {statistics.median(ratios):.3f}x ({low:.2f}-{high:.2f}) |"
        )


if __name__ == "__main__":
    main()
