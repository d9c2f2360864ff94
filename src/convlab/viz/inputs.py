"""What every visualisation starts from (a model or checkpoint, an image, a target class) and what it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from convlab.checkpoint import load_checkpoint, resolve_checkpoint
from convlab.data import normalize, read_image
from convlab.data.images import resize_image, to_channels
from convlab.errors import ConvlabError
from convlab.record import InputSpec, RunRecord
from convlab.runtime import check_device, model_device
from convlab.viz.render import to_display, unit_range

LISTED_NAMES = 20  # class names shown in an error message; the rest are counted


@dataclass
class Visualisation:
    """The arrays behind one picture, and the PNG it was drawn to (None when no folder was given)."""

    kind: str  # "filters", "feature-maps", "gradcam" or "saliency"
    array: np.ndarray  # what the picture shows, described by each function
    layer: str | None
    title: str
    png: Path | None = None
    target: int | None = None  # the class explained (Grad-CAM, saliency)
    target_name: str | None = None
    predicted: int | None = None  # the model's top class for the image, and its softmax probability
    predicted_name: str | None = None
    probability: float | None = None
    extra: dict = field(default_factory=dict)

    def _repr_html_(self) -> str:
        """In a notebook: the title and the picture (when one was drawn)."""
        from convlab.notebook import escape, png_html

        return f"<p>{escape(self.title)}</p>" + (png_html(self.png, self.title) if self.png else "")


@dataclass
class Subject:
    """A model ready to be looked at: its checkpoint record (if any) and where its pictures go by default."""

    model: nn.Module
    record: RunRecord | None
    out_dir: Path | None

    @property
    def name(self) -> str:
        spec = getattr(self.model, "convlab_spec", None)
        return spec.name if spec else type(self.model).__name__

    def class_names(self, num_classes: int) -> list[str]:
        names = list(self.record.classes or []) if self.record else []
        return names if len(names) == num_classes else [str(i) for i in range(num_classes)]

    def preprocessing(self) -> InputSpec | None:
        """The record's input spec (channels, size, mean, std); None for a bare model."""
        return self.record.input if self.record else None


def load_subject(source, device: str | torch.device | None = None) -> tuple[Subject, torch.device]:
    """``source``: a run folder or checkpoint path, a loaded ``(model, record)`` pair, or a bare model.

    A path's model goes to ``device`` (default: CUDA when present); a model passed in stays where it
    is unless ``device`` is given. Pictures of a run go to ``RUN/viz``, of a checkpoint file to ``viz``
    beside it; an in-memory model has no default folder.
    """
    if isinstance(source, nn.Module):
        subject = Subject(source, None, None)
    elif isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], nn.Module):
        subject = Subject(source[0], source[1], None)
    elif isinstance(source, (str, Path)):
        path = resolve_checkpoint(source)
        model, record = load_checkpoint(path)
        folder = Path(source) if Path(source).is_dir() else path.parent
        subject = Subject(model, record, folder / "viz")
        device = check_device(device)
    else:
        raise ConvlabError(
            f"Cannot visualise a {type(source).__name__}; give a run folder, a .safetensors checkpoint, "
            "a (model, record) pair or a torch model."
        )
    if device is not None:
        device = check_device(device)
        subject.model.to(device)
    return subject, model_device(subject.model)


@dataclass
class PreparedImage:
    """One image as the model sees it (1 x C x H x W, normalised) and as a person does ((H, W, 3) in 0..1)."""

    input: torch.Tensor
    display: np.ndarray
    name: str  # for file names: the file's stem, or "image" for a tensor


def denormalise(image: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> np.ndarray:
    image = image.detach().float().cpu()
    if mean is None or std is None:
        return to_display(unit_range(image.numpy()))  # unknown normalisation: stretch to 0..1
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return to_display((image * std_t + mean_t).numpy())


def prepare_image(image, subject: Subject, device: torch.device) -> PreparedImage:
    """An image file, a uint8 (C, H, W) tensor of pixels, or a float tensor that is already model input.

    Files and pixels are converted with the checkpoint's preprocessing (channels, size, mean, std) by the
    data package; without a record, pixels are only scaled to 0..1 at the model's recorded input size.
    """
    stored = subject.preprocessing()
    spec = getattr(subject.model, "convlab_spec", None)
    spec_size = spec.input_size if spec else None
    if stored is not None:
        channels, size, rule = stored.channels, list(stored.size), stored.resize
        mean, std = stored.mean, stored.std
    else:
        channels, size = (spec_size[0], spec_size[1:]) if spec_size else (None, None)
        rule, mean, std = "squash", None, None

    if isinstance(image, (str, Path)):
        pixels, name = read_image(image, channels, size, resize=rule), Path(image).stem
    elif isinstance(image, torch.Tensor) and image.dtype == torch.uint8:
        if image.dim() != 3:
            raise ConvlabError(
                f"An image tensor of pixels must be uint8 C x H x W, got shape {tuple(image.shape)}."
            )
        pixels, name = image, "image"
        if channels is not None:
            pixels = resize_image(to_channels(pixels, channels), size, rule)
    elif isinstance(image, torch.Tensor) and image.is_floating_point():
        batch = image.unsqueeze(0) if image.dim() == 3 else image
        if batch.dim() != 4 or batch.shape[0] != 1:
            raise ConvlabError(
                f"A model-input image must be C x H x W or 1 x C x H x W, got {tuple(image.shape)}."
            )
        batch = batch.to(device=device, dtype=torch.float32)
        return PreparedImage(batch, denormalise(batch[0], mean, std), "image")
    else:
        raise ConvlabError(
            f"Cannot read an image from a {type(image).__name__}; give an image file, a uint8 C x H x W tensor "
            "of pixels or a float tensor of model input."
        )
    if mean is None:
        mean, std = [0.0] * pixels.shape[0], [1.0] * pixels.shape[0]
    batch = normalize(pixels.unsqueeze(0).to(device), mean, std)
    return PreparedImage(batch, to_display(pixels.float().div(255.0).numpy()), name)


def resolve_target(target: int | str | None, class_names: Sequence[str], predicted: int) -> int:
    """None -> the predicted class; a class name or an index (as int or text) -> that index."""
    if target is None:
        return int(predicted)
    if isinstance(target, str) and target in class_names:
        return list(class_names).index(target)
    try:
        index = int(target)
    except (TypeError, ValueError):
        index = None
    if index is not None and 0 <= index < len(class_names):
        return index
    listing = ", ".join(class_names[:LISTED_NAMES])
    if len(class_names) > LISTED_NAMES:
        listing += f", ... ({len(class_names) - LISTED_NAMES} more)"
    raise ConvlabError(
        f"Unknown target class '{target}'; give a class name or an index 0..{len(class_names) - 1}: {listing}."
    )


def output_path(out: str | Path | None, subject: Subject, file_name: str) -> Path | None:
    """``out/file_name``; ``out`` None means the subject's default folder (none for an in-memory model)."""
    folder = Path(out) if out is not None else subject.out_dir
    return None if folder is None else folder / file_name


def safe_name(text: str) -> str:
    """A layer or class name as a file-name part: ``features.c1`` stays, ``T-shirt/top`` -> ``T-shirt-top``."""
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in text).strip("-") or "x"
