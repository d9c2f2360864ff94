"""ResNet-18 inference at 224x224, one path in its own process (started by benchmarks/run.py).

Paths:
  eager-fp32         PyTorch eager, NCHW, float32, torch.inference_mode (the plain way)
  channels-last      eager, NHWC (channels_last) weights and input, float32
  channels-last-bf16 eager, NHWC, bf16 autocast: oneDNN's bf16 convolutions (AVX-512 BF16, AMX) on the copy
                     convlab.prediction's fast_path makes for inference (BatchNorm folded into the
                     convolutions, their weights held in bf16: convlab.speed.for_inference), what
                     `convlab predict/serve` run by default (--amp auto) on a CPU with bf16 units
  compile            torch.compile (inductor) of the channels-last path (float32);
                     its compile time is reported
  compile-bf16       torch.compile of the channels_last-bf16 path
  onnxruntime        the ONNX file convlab.export wrote, run by onnxruntime's CPU provider

Every path is checked against eager float32 on the same 32 real images (Fashion-MNIST test images
at 224x224 in RGB): max |logit difference| and top-1 agreement are in the result.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import Clock, emit, set_threads  # noqa: E402

PATHS = ("eager-fp32", "channels-last", "channels-last-bf16", "compile", "compile-bf16", "onnxruntime")


def build_model(weights: Path) -> torch.nn.Module:
    from convlab.models import create_model

    model = create_model("resnet18", num_classes=1000, in_chans=3)
    model.load_state_dict(torch.load(weights, weights_only=True))
    return model.eval()


def runner(path: str, weights: Path, onnx_file: Path | None, threads: int):
    """A function batch -> float32 logits (numpy or tensor) for ``path``, and the set-up seconds it took."""
    clock = Clock().start()
    if path == "onnxruntime":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # the same thread count as torch (its default: one per core)
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        name, output = session.get_inputs()[0].name, session.get_outputs()[0].name

        def run(batch):
            return session.run([output], {name: batch.numpy()})[0]

        return run, clock.stop()[0]
    model = build_model(weights)
    if path == "eager-fp32":  # the plain way

        def plain(batch):
            with torch.inference_mode():
                return model(batch)

        return plain, clock.stop()[0]
    # Every other path is convlab's: the layout and precision `convlab predict/serve` set, compiled or not.
    from convlab.prediction import fast_path, inference_logits

    amp = "bf16" if path.endswith("bf16") else "off"
    model = fast_path(model, amp, channels_last=True)
    if path.startswith("compile"):
        model = torch.compile(model)
    return (lambda batch: inference_logits(model, batch, amp=amp, channels_last=True)), clock.stop()[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--path", choices=PATHS, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument(
        "--workdir", type=Path, required=True, help="holds weights.pt, images.pt, logits.pt, model.onnx"
    )
    parser.add_argument("--batches", default="1,32", help="batch sizes to time")
    parser.add_argument("--seconds", type=float, default=4.0, help="time spent timing each batch size")
    args = parser.parse_args()
    set_threads(args.threads)
    images = torch.load(args.workdir / "images.pt", weights_only=True)
    expected = torch.load(args.workdir / "logits.pt", weights_only=True)
    run, setup_seconds = runner(
        args.path, args.workdir / "weights.pt", args.workdir / "model.onnx", args.threads
    )

    first = Clock().start()  # the first call: where torch.compile compiles (and ORT allocates)
    run(images[:1])
    first_call = first.stop()[0]
    outputs = torch.cat([torch.as_tensor(run(images[i : i + 8])) for i in range(0, len(images), 8)])
    difference = (outputs - expected).abs()
    result = {
        "path": args.path,
        "setup_seconds": setup_seconds,
        "first_call_seconds": first_call,
        "max_abs_diff": float(difference.max()),
        "largest_logit": float(expected.abs().max()),
        "top1_agreement": float((outputs.argmax(1) == expected.argmax(1)).float().mean()),
    }
    for batch_size in (int(b) for b in args.batches.split(",")):
        batch = images[:batch_size]
        run(batch)  # warm: a new batch size may allocate or recompile
        times, deadline = [], time.perf_counter() + args.seconds
        while time.perf_counter() < deadline or len(times) < 3:
            start = time.perf_counter()
            run(batch)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        result[f"batch{batch_size}"] = {
            "median_ms": median * 1e3,
            "images_per_s": batch_size / median,
            "calls": len(times),
        }
    emit(result)


if __name__ == "__main__":
    main()
