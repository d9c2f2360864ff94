"""Predict the classes of image files with a trained checkpoint, using the preprocessing stored with it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from convlab.checkpoint import load_checkpoint as load
from convlab.errors import ConvlabError
from convlab.record import RunRecord
from convlab.runtime import autocast, check_device, logits_of
from convlab.speed import use_fast_layers

__all__ = ["fast_path", "inference_logits", "load", "load_any", "predict", "predict_tensors"]

EXPORTED_SUFFIXES = (".onnx", ".pt", ".pth")


def load_any(source) -> tuple[torch.nn.Module, RunRecord]:
    """``(model, record)`` from a run folder or checkpoint, or from a file written by ``convlab export``
    (``.onnx`` through onnxruntime, ``.pt``/``.pth`` TorchScript): one prediction path for all of them."""
    if Path(source).suffix.lower() in EXPORTED_SUFFIXES:
        from convlab.exporting.runtime import load_exported

        return load_exported(source)
    return load(source)


def fast_path(model: torch.nn.Module, amp: str = "off", channels_last: bool = False) -> torch.nn.Module:
    """``model`` ready for ``predict_tensors(..., amp, channels_last)``: weights in channels_last when asked.

    bf16 autocast with channels_last is convlab's fastest CPU path for a checkpoint on cores with bf16
    units, top-1 unchanged (docs/performance.md#inference-resnet-18-at-224x224).
    An exported file (ONNX Runtime, TorchScript) runs as it was exported, so both are refused there."""
    autocast(amp, torch.device("cpu"))  # an unknown mode is refused before any work
    fast = amp not in (None, False, "off", "none", "") or channels_last
    exported = not any(True for _ in model.parameters()) or isinstance(model, torch.jit.ScriptModule)
    if fast and exported:
        raise ConvlabError(
            "--amp and --channels-last apply to convlab checkpoints (run folders, .safetensors); "
            "an exported .onnx or .pt file runs as it was exported."
        )
    if not exported and hasattr(model, "convlab_spec"):  # the same sums, faster: convlab.speed
        use_fast_layers(model, model.convlab_spec.input_size)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def inference_logits(
    model: torch.nn.Module, batch: torch.Tensor, *, amp: str = "off", channels_last: bool = False
) -> torch.Tensor:
    """float32 main logits of a preprocessed batch, without autograd; ``amp`` (off, bf16, fp16) runs the
    forward pass under autocast and ``channels_last`` gives the batch that layout (the model's weights
    are put in it once, by ``fast_path``). The model is in eval mode for the call."""
    was_training = model.training
    model.eval()
    if channels_last and batch.dim() == 4:
        batch = batch.contiguous(memory_format=torch.channels_last)
    try:
        with torch.inference_mode(), autocast(amp, batch.device):
            return logits_of(model, batch).float()
    finally:
        model.train(was_training)


def predict_tensors(
    model: torch.nn.Module,
    batch: torch.Tensor,
    classes: Sequence[str],
    topk: int = 5,
    *,
    amp: str = "off",
    channels_last: bool = False,
) -> list[list[dict]]:
    """Top-k ``{"label", "index", "probability"}`` per row of an already preprocessed batch (k capped at
    classes), through ``inference_logits``."""
    probabilities = inference_logits(model, batch, amp=amp, channels_last=channels_last).softmax(dim=-1)
    k = min(topk, probabilities.shape[-1])
    top = probabilities.topk(k, dim=-1)
    return [
        [{"label": classes[i], "index": i, "probability": p} for p, i in zip(row_p, row_i, strict=True)]
        for row_p, row_i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]


def predict(
    source,
    images: str | Path | Sequence[str | Path],
    *,
    topk: int = 5,
    device: str | torch.device | None = None,
    skip_unreadable: bool = False,
    amp: str = "off",
    channels_last: bool = False,
) -> list[dict]:
    """Classify image files with a checkpoint (or a run folder's best checkpoint).

    ``source`` is a checkpoint path, a run folder, an exported ``.onnx``/``.pt`` file, or an
    already loaded ``(model, record)`` pair. Each file is read in any mode and size and converted with the stored preprocessing
    (``record.input``: channels, size, mean, std); all images go through the model as one
    batch. Returns ``[{"image": path, "predictions": [{"label", "index", "probability"}, ...]}]``
    in the order given, best class first. An unreadable file raises a ConvlabError naming it,
    or with ``skip_unreadable=True`` gets ``{"image": path, "error": reason}`` in its place.
    ``amp="bf16"`` with ``channels_last=True`` is the fast CPU path for checkpoints (``fast_path``).
    """
    from convlab.data import normalize, read_image

    if isinstance(images, (str, Path)):
        images = [images]
    images = [str(path) for path in images]
    if not images:
        raise ConvlabError("No images given to predict; pass one or more image files.")
    if int(topk) < 1:
        raise ConvlabError(f"--topk must be a positive integer, got {topk}.")
    device = check_device(device)
    model, record = source if isinstance(source, tuple) else load_any(source)
    model = fast_path(model.to(device), amp, channels_last)
    spec = record.require_input()

    pixels, readable, results = [], [], []
    for path in images:
        try:
            pixels.append(read_image(path, spec.channels, spec.size))
            readable.append(len(results))
            results.append({"image": path, "predictions": []})
        except ConvlabError as error:
            if not skip_unreadable:
                raise
            results.append({"image": path, "error": str(error)})
    if pixels:
        batch = normalize(torch.stack(pixels).to(device), spec.mean, spec.std)
        found = predict_tensors(model, batch, record.classes, topk, amp=amp, channels_last=channels_last)
        for index, predictions in zip(readable, found, strict=True):
            results[index]["predictions"] = predictions
    return results
