"""Predict the classes of images with a trained model, using the preprocessing stored with it.

``predict(source, images)`` takes image files, folders (every image under them), PIL images, numpy
arrays and torch tensors, and answers the top-k classes of each; ``load_any`` is the one door to every
file a model can come in (run folder, .safetensors checkpoint, .onnx, TorchScript .pt/.pth).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from convlab.allocator import large_buffers_kept
from convlab.checkpoint import load_checkpoint as load
from convlab.checkpoint import resolve_checkpoint
from convlab.data.folder import image_files
from convlab.data.images import (
    IMAGE_EXTENSIONS,
    UnreadableImageError,
    normalize,
    pil_image_pixels,
    read_image,
    resize_image,
    to_channels,
)
from convlab.errors import ConvlabError
from convlab.exporting.runtime import load_exported
from convlab.record import InputSpec, RunRecord
from convlab.runtime import (
    AUTO,
    OFF,
    PrecisionChoice,
    autocast,
    check_amp,
    check_device,
    logits_of,
    resolve_precision,
)
from convlab.speed import for_inference, use_fast_layers

__all__ = [
    "choose_fast_path",
    "fast_path",
    "inference_logits",
    "load",
    "load_any",
    "predict",
    "predict_tensors",
    "resolve_source",
]

EXPORTED_FORMATS = {
    ".onnx": "onnx",
    ".pt": "torchscript",
    ".pth": "torchscript",
}  # by suffix; else a checkpoint
EXPORTED_SUFFIXES = tuple(EXPORTED_FORMATS)
SOURCES = (
    "a run folder, a .safetensors checkpoint, or an .onnx or TorchScript .pt/.pth file from `convlab export`"
)
INPUTS = (
    "image files, folders of them, PIL images, numpy uint8 arrays (H x W or H x W x C), torch uint8 tensors "
    "of pixels (C x H x W, or N x C x H x W) or float tensors of normalised model input, or a list of these"
)
BATCH_SIZE = 64  # images decoded and predicted at a time: a folder of photos never sits in memory whole


def resolve_source(source: str | Path) -> Path:
    """The file ``load_any`` reads for ``source``, checked to exist; nothing is loaded (cheap, for early errors)."""
    path = Path(source)
    if path.suffix.lower() in EXPORTED_SUFFIXES and not path.is_dir():
        if not path.is_file():
            raise ConvlabError(f"No model file at '{path}'; accepted: {SOURCES}.")
        return path
    return resolve_checkpoint(path)


def load_any(
    source, device: str | torch.device | None = None, *, threads: int | None = None
) -> tuple[torch.nn.Module, RunRecord]:
    """``(model, record)`` from a run folder or checkpoint (on the CPU), or from a file written by ``convlab
    export``: ``.onnx`` through onnxruntime (its provider chosen for ``device``, ``threads`` its intra-op
    threads), ``.pt``/``.pth`` TorchScript (onto ``device``). One prediction path for all of them."""
    path = resolve_source(source)
    if path.suffix.lower() in EXPORTED_SUFFIXES:
        return load_exported(path, device, threads=threads)
    return load(path)


def fast_path(model: torch.nn.Module, amp: str = "off", channels_last: bool | str = False) -> torch.nn.Module:
    """``model`` ready for ``predict_tensors(..., amp, channels_last)``: weights in channels_last when asked
    (``choose_fast_path``, which also says what ``auto`` chose)."""
    return choose_fast_path(model, amp, channels_last)[0]


def choose_fast_path(
    model: torch.nn.Module,
    amp: str = AUTO,
    channels_last: bool | str = AUTO,
    input_size: Sequence[int] | None = None,
) -> tuple[torch.nn.Module, PrecisionChoice]:
    """``(model, choice)``: ``model`` ready to predict in the precision and layout of ``choice``
    (``convlab.runtime.choose_precision`` resolves ``auto``, for (C, H, W) images of ``input_size``, default
    the model's declared size), weights in channels_last when chosen; pass ``choice.amp`` and
    ``choice.channels_last`` to ``predict_tensors``.

    bf16 autocast with channels_last is convlab's fastest CPU path for a checkpoint on cores with bf16
    units, top-1 unchanged (docs/performance.md#inference-resnet-18-at-224x224); in bf16 the model returned
    is a copy for inference alone (``convlab.speed.for_inference``: BatchNorm folded into the convolutions,
    their weights held in bf16), and ``model`` itself stays as it was but for its layout.
    An exported file (ONNX Runtime, TorchScript) runs as it was exported: ``auto`` leaves it so, and a
    precision or layout given is refused there."""
    check_amp(amp)  # an unknown mode is refused before any work
    exported = not any(True for _ in model.parameters()) or isinstance(model, torch.jit.ScriptModule)
    if exported:
        if (amp not in OFF and amp != AUTO) or channels_last is True:
            raise ConvlabError(
                "--amp and --channels-last apply to convlab checkpoints (run folders, .safetensors); "
                "an exported .onnx or .pt file runs as it was exported."
            )
        auto = AUTO in (amp, channels_last)
        return model, PrecisionChoice(
            "off", False, "auto: an exported file runs as exported" if auto else "as given"
        )
    spec = getattr(model, "convlab_spec", None)
    if spec is not None:  # the same sums, faster: convlab.speed
        use_fast_layers(model, spec.input_size)
    size = input_size if input_size is not None else getattr(spec, "input_size", None)
    choice = resolve_precision(model, size, None, amp, channels_last)
    if choice.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if choice.amp == "bf16":  # BatchNorm folded, weights held in bf16: a copy for inference (convlab.speed)
        model = for_inference(model, choice.amp)
    return model, choice


def inference_logits(
    model: torch.nn.Module, batch: torch.Tensor, *, amp: str = "off", channels_last: bool | str = False
) -> torch.Tensor:
    """float32 main logits of a preprocessed batch, without autograd; ``amp`` (off, bf16, fp16) runs the
    forward pass under autocast and ``channels_last`` gives the batch that layout (the model's weights
    are put in it once, by ``fast_path``); ``auto`` is what ``choose_fast_path`` chose for the model.
    The model is in eval mode for the call."""
    if AUTO in (amp, channels_last) and batch.dim() == 4:
        choice = resolve_precision(model, batch.shape[1:], batch.device, amp, channels_last)
        amp, channels_last = choice.amp, choice.channels_last
    elif AUTO in (amp, channels_last):  # not a batch of images: nothing to lay out, nothing counted
        amp, channels_last = "off" if amp == AUTO else amp, False
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
    channels_last: bool | str = False,
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


# ---- what predict takes: each kind of input to one normalised C x H x W float tensor


def fit_pixels(pixels: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """uint8 (C, H, W) pixels, C of 1 to 4 (2 and 4 carry alpha, dropped), at ``spec``'s channels and size
    by its resize rule: what ``read_image`` makes of a file."""
    if pixels.shape[0] in (2, 4):
        pixels = pixels[:-1]
    return resize_image(to_channels(pixels, spec.channels), spec.size, spec.resize)


def _from_file(path: Path, spec: InputSpec) -> torch.Tensor:
    return read_image(path, spec.channels, spec.size, resize=spec.resize)


def _from_pil(image: Image.Image, spec: InputSpec) -> torch.Tensor:
    return fit_pixels(pil_image_pixels(image), spec)  # upright by its EXIF orientation, as a file is read


def _from_array(array: np.ndarray, spec: InputSpec) -> torch.Tensor:
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] > 4):
        raise ConvlabError(
            f"A numpy array to predict must be uint8 pixels, H x W or H x W x C with C of 1 to 4; got "
            f"{array.dtype} {' x '.join(map(str, array.shape))}. Accepted: {INPUTS}."
        )
    pixels = torch.from_numpy(np.array(array))  # a copy: the caller's array may be read-only (PIL's are)
    return fit_pixels(pixels.unsqueeze(0) if array.ndim == 2 else pixels.permute(2, 0, 1), spec)


def _from_tensor(tensor: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """uint8 C x H x W: pixels, converted as a file is. Floating point: model input already normalised with
    the record's mean and std (what convlab's loaders give), of exactly the input shape."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.uint8 and tensor.dim() == 3 and 1 <= tensor.shape[0] <= 4:
        return fit_pixels(tensor, spec)
    if tensor.is_floating_point() and tuple(tensor.shape) == spec.shape:
        return tensor.float()
    raise ConvlabError(
        f"A tensor to predict must be uint8 pixels (C x H x W) or normalised float model input of shape "
        f"{' x '.join(map(str, spec.shape))}; got {str(tensor.dtype).replace('torch.', '')} "
        f"{' x '.join(map(str, tensor.shape))}. A float image in 0..1 is not model input: pass "
        "(image * 255).round().to(torch.uint8)."
    )


# Each kind of input, its name in the results and how it becomes the model's input.
READERS: tuple[tuple[type, str, Callable], ...] = (
    (Path, "file", _from_file),
    (Image.Image, "PIL image", _from_pil),
    (np.ndarray, "numpy array", _from_array),
    (torch.Tensor, "tensor", _from_tensor),
)


def gather_inputs(images) -> list[tuple[str, object]]:
    """``[(name, item)]`` for everything ``images`` holds, in order: a folder becomes its image files, a 4-D
    tensor its rows; a file is named by its path, an in-memory image by its kind and position."""
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    gathered: list[tuple[str, object]] = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if path.is_dir():
                found = image_files(path)
                if not found:
                    raise ConvlabError(
                        f"Folder '{path}' holds no image files (accepted extensions: "
                        f"{', '.join(IMAGE_EXTENSIONS)}; hidden files are skipped)."
                    )
                gathered += [(str(file), file) for file in found]
            else:
                gathered.append((str(item), path))
        elif isinstance(item, torch.Tensor) and item.dim() == 4:
            gathered += [(f"<tensor {len(gathered) + row}>", item[row]) for row in range(item.shape[0])]
        else:
            kind = next((name for cls, name, _ in READERS if isinstance(item, cls)), None)
            if kind is None:
                raise ConvlabError(
                    f"Cannot predict an object of type {type(item).__name__}; accepted: {INPUTS}."
                )
            gathered.append((f"<{kind} {len(gathered)}>", item))
    if not gathered:
        raise ConvlabError(f"No images given to predict; accepted: {INPUTS}.")
    return gathered


def model_input(item, spec: InputSpec) -> torch.Tensor:
    """One input of ``gather_inputs`` as a normalised float C x H x W tensor for the model."""
    reader = next(read for cls, _, read in READERS if isinstance(item, cls))
    found = reader(item, spec)
    return found if found.is_floating_point() else normalize(found, spec.mean, spec.std)


def predict(
    source,
    images,
    *,
    topk: int = 5,
    device: str | torch.device | None = None,
    skip_unreadable: bool = False,
    amp: str = "off",
    channels_last: bool | str = False,
    batch_size: int = BATCH_SIZE,
    on_precision: Callable[[PrecisionChoice], None] | None = None,
) -> list[dict]:
    """Classify images with a checkpoint, a run folder's best checkpoint or an exported file.

    ``source`` is a run folder, a ``.safetensors`` checkpoint, an exported ``.onnx``/``.pt`` file, or an
    already loaded ``(model, record)`` pair. ``images`` is one of these or a list of them:

    - an image file path (any format, mode and size), or a folder: every image file under it,
      recursively, sorted, image extensions only, hidden files skipped;
    - a PIL image (any mode; turned upright by its EXIF orientation, as a file is);
    - a numpy uint8 array, H x W (gray) or H x W x C (C = 3 RGB; 4 RGBA and 2 gray+alpha drop alpha);
    - a torch uint8 tensor of pixels, C x H x W (or N x C x H x W: N images);
    - a torch float tensor of model input, already normalised with the record's mean and std, of exactly
      the input shape C x H x W (or N x C x H x W), as convlab's data loaders give it.

    Pixels are converted with the stored preprocessing (``record.input``: channels, size, resize rule,
    mean, std), so a file, the PIL image opened from it and its pixels as an array give the same answer.
    Anything else is a ConvlabError naming what is accepted. Returns ``[{"image": name, "predictions":
    [{"label", "index", "probability"}, ...]}]`` in the order given, best class first; ``name`` is the
    file's path, or ``<PIL image 2>``, ``<numpy array 0>``, ``<tensor 1>`` by position. An unreadable file
    raises a ConvlabError naming it, or with ``skip_unreadable=True`` gets ``{"image": path, "error":
    reason}`` in its place. Images go through the model ``batch_size`` at a time. ``amp="bf16"`` with
    ``channels_last=True`` is the fast CPU path for checkpoints; ``"auto"`` (both) takes it where it pays
    (``choose_fast_path``), and ``on_precision`` is given the choice, once, before any image is predicted.
    """
    inputs = gather_inputs(images)
    if int(topk) < 1:
        raise ConvlabError(f"--topk must be a positive integer, got {topk}.")
    if int(batch_size) < 1:
        raise ConvlabError(f"batch_size must be a positive integer, got {batch_size}.")
    resolved = check_device(device)
    model, record = source if isinstance(source, tuple) else load_any(source, device)
    spec = record.require_input()
    model, choice = choose_fast_path(model.to(resolved), amp, channels_last, (spec.channels, *spec.size))
    if on_precision is not None:
        on_precision(choice)

    results: list[dict] = []
    # a folder of photos at ImageNet sizes: no fresh pages per batch (convlab.allocator)
    with large_buffers_kept():
        for start in range(0, len(inputs), int(batch_size)):
            rows, places = [], []
            for name, item in inputs[start : start + int(batch_size)]:
                try:
                    rows.append(model_input(item, spec))
                except UnreadableImageError as error:
                    if not skip_unreadable:
                        raise
                    results.append({"image": name, "error": str(error)})
                    continue
                places.append(len(results))
                results.append({"image": name, "predictions": []})
            if rows:
                batch = torch.stack(rows).to(resolved)
                found = predict_tensors(
                    model, batch, record.classes, topk, amp=choice.amp, channels_last=choice.channels_last
                )
                for place, predictions in zip(places, found, strict=True):
                    results[place]["predictions"] = predictions
    return results
