"""What this machine can do at most, and what each workload needs: the denominators of docs/performance.md's
"Limits" tables.

The limit of a precision is the best rate of a large square matrix product at that precision on this
process's threads (torch.mm, 2048x2048 by default, after warm-up, the median of --repeats): the kernel
with the highest arithmetic intensity a CNN's layers turn into (oneDNN's convolutions are matrix products
over patches), so no convolution here runs faster. The arithmetic of a workload per image is counted by
torch's FLOP counter on the real network's forward pass; a training step is 3 times that.

    python benchmarks/bench_limits.py [--threads 2] [--size 2048]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, set_threads  # noqa: E402


def matmul_gflops(dtype, size: int, repeats: int) -> float:
    """Median GFLOP/s of ``size`` x ``size`` matrix products at ``dtype`` (2 size^3 operations each)."""
    import torch

    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    for _ in range(3):  # warm-up: oneDNN picks and prepares its kernel
        torch.mm(a, b)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def workload_gflop(
    model_name: str, size: int, train: bool, in_chans: int = 3, num_classes: int = 10
) -> float:
    """GFLOP per image of ``model_name`` at ``size`` x ``size``: 2 x the multiply-adds --amp auto counts for
    it (``convlab.runtime.multiply_adds``: torch's FLOP counter on the forward pass), times 3 for a training
    step (the backward pass does two products per forward one, the input's gradient and the weights'). The
    counter is not run on the backward pass itself: in torch 2.14 it counts a grouped convolution's backward
    as a dense one (33x the forward for MobileNetV2's depthwise layers)."""
    import convlab
    from convlab.runtime import multiply_adds

    model = convlab.create_model(model_name, num_classes=num_classes, in_chans=in_chans)
    forward = 2 * multiply_adds(model, (in_chans, size, size)) / 1e9
    return 3 * forward if train else forward


WORKLOADS = {  # name -> (model, image side, training step or forward only)
    "resnet18 fine-tune step, 224": ("resnet18", 224, True),
    "mobilenet_v2 fine-tune step, 224": ("mobilenet_v2", 224, True),
    "resnet18 forward (predict, serve, feature pass), 224": ("resnet18", 224, False),
    "lenet5 training step, 32": ("lenet5", 32, True),
    "vgg_mini training step, 28": ("vgg_mini", 28, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    set_threads(args.threads)
    import torch

    limits = {
        "float32": matmul_gflops(torch.float32, args.size, args.repeats),
        "bfloat16": matmul_gflops(torch.bfloat16, args.size, args.repeats),
    }
    arithmetic = {}
    for name, (model, side, train) in WORKLOADS.items():
        in_chans = 1 if model in ("lenet5", "vgg_mini") else 3
        arithmetic[name] = workload_gflop(model, side, train, in_chans)
    emit({"limits_gflops": limits, "gflop_per_image": arithmetic, "matrix_size": args.size})


if __name__ == "__main__":
    main()
