"""The prediction service under concurrent clients: requests/s and latency with micro-batching (the default)
against one request per forward pass (--max-batch 1), in float32 and at the precision --amp auto picks.

Each side is a `convlab serve` process on loopback serving ResNet-18 at 224 x 224 (random weights: the
arithmetic is what is measured); CLIENTS threads post the same JPEG for SECONDS each; the sides alternate
(A B A B) and the table gives medians. Bounded: loopback only, a fixed duration per round.

    python benchmarks/bench_serve.py [--clients 16] [--seconds 15] [--rounds 2]
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

CONVLAB = str(Path(sys.executable).with_name("convlab"))
# What serving was before issue 17 (float32, one request per forward pass), the same one request per pass at
# the precision --amp auto picks, and the default: micro-batched at that precision.
SIDES = {
    "one request per pass, float32 (--max-batch 1 --amp off)": ["--max-batch", "1", "--amp", "off"],
    "one request per pass (--max-batch 1)": ["--max-batch", "1"],
    "micro-batched (the defaults)": [],
}
BASELINE, BATCHED = next(iter(SIDES)), list(SIDES)[-1]


def checkpoint(folder: Path) -> Path:
    import torch

    import convlab
    from convlab.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = convlab.create_model("resnet18", num_classes=10)
    record = {
        "classes": [f"class {i}" for i in range(10)],
        "input": {
            "channels": 3,
            "size": [224, 224],
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        },
    }
    return save_checkpoint(folder / "best.safetensors", model, record)


def photo() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load(url: str, image: bytes, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = [0]
    stop = time.perf_counter() + seconds

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as session:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                answer = session.post("/predict", files={"file": ("photo.jpg", image, "image/jpeg")})
                if answer.status_code != 200:
                    errors[0] += 1
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    begun = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - begun
    latencies.sort()
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "errors": errors[0],
    }


def serve_and_load(source: Path, extra: list[str], image: bytes, clients: int, seconds: float) -> dict:
    port = free_port()
    server = subprocess.Popen(
        [CONVLAB, "serve", str(source), "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        server.stdout.readline()  # the ready line: the server answers from here on
        url = f"http://127.0.0.1:{port}"
        load(url, image, clients, 2.0)  # warm-up: first-call allocations, thread pools
        return load(url, image, clients, seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    image = photo()
    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory() as folder:
        source = checkpoint(Path(folder))
        for round_ in range(args.rounds):
            for side, extra in SIDES.items():
                results[side].append(serve_and_load(source, extra, image, args.clients, args.seconds))
                print(f"round {round_ + 1} {side}: {results[side][-1]}", flush=True)
    print(
        f"\nResNet-18 at 224x224, {args.clients} concurrent clients, {args.seconds:g} s a round, median of {args.rounds}"
    )
    medians = {
        side: {
            key: statistics.median(r[key] for r in rounds) for key in ("requests_per_s", "p50_ms", "p99_ms")
        }
        | {"errors": sum(r["errors"] for r in rounds)}
        for side, rounds in results.items()
    }
    alone = medians[BASELINE]["requests_per_s"]
    for side, row in medians.items():
        print(
            f"{side:>56}: {row['requests_per_s']:6.1f} requests/s ({row['requests_per_s'] / alone:.2f}x)  "
            f"p50 {row['p50_ms']:6.0f} ms  p99 {row['p99_ms']:6.0f} ms  errors {row['errors']}"
        )
    result = {
        "clients": args.clients,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "sides": medians,
        "samples": results,
        "baseline": BASELINE,
        "batched": BATCHED,
        "ratio": medians[BATCHED]["requests_per_s"] / alone,
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
