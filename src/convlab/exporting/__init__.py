"""Export a trained model to ONNX or TorchScript, with its classes and preprocessing, checked against PyTorch.

``export(checkpoint)`` writes the file through a temporary name and renames it into place only
after the exported model gave the same logits as the PyTorch one (max |difference| <= 1e-4, or
1e-4 of the largest |logit| when logits go beyond +-1) on images of the model's own data.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from convlab import __version__
from convlab.checkpoint import load_checkpoint, read_record, resolve_checkpoint
from convlab.errors import ConvlabError, unknown_name_error
from convlab.exporting.check import TOLERANCE, CheckResult, check_images, compare
from convlab.exporting.onnx import check_opset, write_onnx
from convlab.exporting.runtime import OnnxClassifier, OnnxLogits, load_exported
from convlab.exporting.torchscript import load_torchscript, write_torchscript
from convlab.files import atomic_write
from convlab.record import RunRecord, record_for
from convlab.runtime import run_folder_of

__all__ = [
    "DEFAULT_CHECK_SAMPLES",
    "FORMATS",
    "ExportResult",
    "OnnxClassifier",
    "OnnxLogits",
    "export",
    "export_model",
    "load_exported",
    "load_torchscript",
]

# format -> (file name in a run folder, suffixes accepted for --out); predict and serve pick the runtime by suffix
FORMATS = {
    "onnx": ("model.onnx", (".onnx",)),
    "torchscript": ("model.torchscript.pt", (".pt", ".pth")),
}
DEFAULT_CHECK_SAMPLES = 16
EXAMPLE_BATCH = 2  # the exporters specialise batch sizes 0 and 1, so the traced example has 2 images


@dataclass
class ExportResult:
    """Where the file went and how closely it matched PyTorch (``max_abs_diff`` over all logits checked)."""

    path: Path
    format: str
    max_abs_diff: float
    mean_abs_diff: float
    samples: int
    batch_sizes: list[int]
    inputs: str  # which images the check used, in words
    model: str
    largest_logit: float  # max |logit| PyTorch gave on those images
    tolerance: float = TOLERANCE  # the limit max_abs_diff had to meet: 1e-4 * max(1, largest_logit)
    opset: int | None = None
    source: str | None = None

    def describe(self) -> str:
        kind = f"ONNX opset {self.opset}" if self.format == "onnx" else "TorchScript"
        size = self.path.stat().st_size / 1e6 if self.path.is_file() else 0.0
        origin = f" from {self.source}" if self.source else ""
        return (
            f"Exported {self.model}{origin} to {self.path} ({kind}, dynamic batch, {size:.1f} MB).\n"
            f"Checked against PyTorch on {self.inputs}, in batches of {', '.join(map(str, self.batch_sizes))}: "
            f"max |logit diff| {self.max_abs_diff:.2e}, mean {self.mean_abs_diff:.2e} "
            f"(limit {limit_words(self.tolerance, self.largest_logit)})."
        )


def export(
    source: str | Path,
    format: str = "onnx",
    out: str | Path | None = None,
    opset: int | None = None,
    *,
    check_samples: int = DEFAULT_CHECK_SAMPLES,
    allow_untrained: bool = False,
    data_root: str | Path | None = None,
) -> ExportResult:
    """Export a checkpoint (or a run folder's best checkpoint) to ``format`` ("onnx" or "torchscript").

    ``out`` defaults to ``model.onnx`` / ``model.torchscript.pt`` in the run folder (for a loose
    checkpoint file: its name with that suffix, next to it). ``opset`` is the ONNX opset (default:
    torch's recommended one). The file is kept only if ``check_samples`` images give logits within
    1e-4 of PyTorch's; a checkpoint that records no training is refused unless ``allow_untrained``.
    """
    fmt = check_format(format)
    checkpoint = resolve_checkpoint(source)
    record = read_record(checkpoint)  # refuse before loading any weights
    if not allow_untrained and not record.trained:
        raise ConvlabError(
            f"Checkpoint '{checkpoint}' records no training (no epoch and metrics), so it holds the weights it "
            f"was created with; train it first, or pass --allow-untrained (allow_untrained=True) to export it anyway."
        )
    check_record(record, checkpoint)
    model, record = load_checkpoint(checkpoint, map_location="cpu")
    out = Path(out) if out is not None else default_output(source, checkpoint, fmt)
    return export_model(
        model,
        record,
        fmt,
        out,
        opset=opset,
        check_samples=check_samples,
        data_root=data_root,
        source=str(checkpoint),
    )


def export_model(
    model: nn.Module,
    record: RunRecord | dict,
    format: str,
    out: str | Path,
    *,
    opset: int | None = None,
    check_samples: int = DEFAULT_CHECK_SAMPLES,
    data_root: str | Path | None = None,
    source: str | None = None,
) -> ExportResult:
    """Export an in-memory model whose checkpoint ``record`` gives classes and input (channels, size, mean, std).

    The export runs on the CPU in eval mode (an exported file must load on any machine, and a
    TorchScript trace on CUDA would record the device in its constants); ``model`` is left as it was.
    """
    fmt = check_format(format)
    record = record_for(model, record)
    check_record(record, source)
    if fmt != "onnx" and opset is not None:
        raise ConvlabError(f"--opset applies to ONNX only; the format asked for is {fmt}.")
    opset = check_opset(opset)
    if not isinstance(check_samples, int) or isinstance(check_samples, bool) or check_samples < EXAMPLE_BATCH:
        raise ConvlabError(
            f"--check-samples must be an integer of at least {EXAMPLE_BATCH} (a single image and a "
            f"larger batch test the dynamic batch axis), got {check_samples!r}."
        )
    out = check_output(Path(out), fmt)
    name = record.model.name
    stored = record.replace(export={"format": fmt, "source": source, "convlab_version": __version__})
    # A network of yours built from a file: its record names a copy of the file beside the exported one.
    stored = stored.replace(model=stored.model.saved_beside(out.parent))

    images, inputs = check_images(record, check_samples, data_root)
    was_training = model.training
    ready = all(
        t.device.type == "cpu" and (t.dtype == torch.float32 or not t.is_floating_point())
        for t in (*model.parameters(), *model.buffers())
    )
    cpu_model = (
        model if ready else _cpu_copy(model)
    )  # a float32 CPU copy; the caller's model stays where it is
    cpu_model.eval()  # the zoo's convention: eval-mode forward returns the main logits only (no auxiliary heads)
    outcome: dict = {}

    def write_and_check(tmp: str) -> None:
        example = images[:EXAMPLE_BATCH].clone()
        if fmt == "onnx":
            stored.export["opset"] = write_onnx(cpu_model, example, tmp, stored, opset)
            runner = OnnxClassifier(tmp, providers=["CPUExecutionProvider"])
            check = compare(cpu_model, runner.predict_logits, images, inputs)
            del runner  # release the session before the file is renamed
        else:
            write_torchscript(cpu_model, example, tmp, stored)
            module, _ = load_torchscript(tmp)
            check = compare(cpu_model, module, images, inputs)
        if not check.passed:
            raise ConvlabError(
                f"The {fmt} export of '{name}' disagrees with PyTorch: max |logit difference| "
                f"{check.max_abs_diff:.2e} > {limit_words(check.tolerance, check.largest_logit)} "
                f"on {check.inputs}; {out} was not written."
            )
        outcome["check"] = check

    try:
        atomic_write(out, write_and_check)
    finally:
        model.train(was_training)
    check: CheckResult = outcome["check"]
    return ExportResult(
        path=out,
        format=fmt,
        max_abs_diff=check.max_abs_diff,
        mean_abs_diff=check.mean_abs_diff,
        samples=check.samples,
        batch_sizes=check.batch_sizes,
        inputs=check.inputs,
        model=name,
        largest_logit=check.largest_logit,
        tolerance=check.tolerance,
        opset=stored.export.get("opset"),
        source=source,
    )


def limit_words(tolerance: float, largest_logit: float) -> str:
    """``1e-04``, or ``5.08e-03 (1e-4 of the largest |logit|, 50.8)`` when logits go beyond +-1."""
    if largest_logit <= 1.0:
        return f"{tolerance:.0e}"
    return f"{tolerance:.2e} (1e-4 of the largest |logit|, {largest_logit:.3g})"


def _cpu_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).to("cpu", torch.float32)


def check_format(format: str) -> str:
    key = str(format).lower()
    if key not in FORMATS:
        raise unknown_name_error("export format", str(format), FORMATS)
    return key


def check_record(record: RunRecord, source: str | Path | None) -> None:
    """An exported file must carry its classes and preprocessing: refuse a record without them."""
    subject = f"Checkpoint '{source}'" if source else "The model's record"
    spec = record.input
    missing = (
        ["channels", "size", "mean", "std"] if spec is None else ([] if spec.normalised else ["mean", "std"])
    )
    if record.classes is None or missing:
        raise ConvlabError(
            f"{subject} records no {'classes' if record.classes is None else 'input ' + ', '.join(missing)}; "
            "an exported model needs the classes and input preprocessing (channels, size, mean, std) "
            "that convlab's training stores."
        )
    expected = record.model.num_classes
    if len(record.classes) != expected:
        raise ConvlabError(
            f"{subject} names {len(record.classes)} classes but its model predicts {expected}."
        )


def default_output(source: str | Path, checkpoint: Path, fmt: str) -> Path:
    """``model.onnx`` (``model.torchscript.pt``) in a run folder; ``<checkpoint name>.onnx`` next to a loose file."""
    name, suffixes = FORMATS[fmt]
    run_dir = run_folder_of(source)
    if run_dir is not None:
        return run_dir / name
    return checkpoint.with_name(checkpoint.stem + name[len("model") :])


def check_output(out: Path, fmt: str) -> Path:
    name, suffixes = FORMATS[fmt]
    if out.is_dir():
        return out / name
    if out.suffix.lower() not in suffixes:
        raise ConvlabError(
            f"Output file '{out}' does not end in {' or '.join(suffixes)}, the suffix of the {fmt} format "
            f"(predict and serve choose the runtime by suffix); rename it or choose another --format."
        )
    return out
