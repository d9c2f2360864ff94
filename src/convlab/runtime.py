"""What every command needs to run a model: the device, the precision, the logits, the run folder.

These sit below evaluation, prediction, export, serving, visualisation and training, which all use
them; none of them needs anything but torch.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import Tensor, nn

from convlab.choices import PRECISIONS
from convlab.errors import ConvlabError

OFF = (None, False, "off", "none", "")  # the ways of saying "float32, no autocast"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when present, else CPU; an unknown or absent device -> ConvlabError."""
    if device is None:
        return torch.device(default_device())
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConvlabError(f"Unknown device '{device}'; accepted: cpu, cuda, cuda:N, mps.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConvlabError(
            f"Device '{device}' was asked for but CUDA is not available here; use --device cpu."
        )
    return resolved


def model_device(model: nn.Module) -> torch.device:
    """Where a model's parameters are (the CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def is_reduced(amp: str | bool | None) -> bool:
    """Whether ``amp`` asks for a reduced precision (anything but float32)."""
    return amp not in OFF


def autocast(amp: str | bool | None, device: torch.device):
    """Mixed precision for the forward pass: ``off``, ``bf16`` or ``fp16`` (``True``/``on`` = the device's best)."""
    if not is_reduced(amp):
        return contextlib.nullcontext()
    if amp in (True, "on", "auto"):
        amp = "fp16" if device.type == "cuda" else "bf16"
    if amp not in PRECISIONS:
        raise ConvlabError(f"Unknown amp mode '{amp}'; accepted: {', '.join(PRECISIONS)}.")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def logits_of(model: nn.Module, images: Tensor) -> Tensor:
    """The main logits of ``model`` (models with auxiliary heads return a tuple; the first is the main one)."""
    output = model(images)
    return output[0] if isinstance(output, (tuple, list)) else output


def run_folder_of(source: str | Path) -> Path | None:
    """The run folder a source belongs to: itself if a folder, else the checkpoint's folder if it is a run."""
    path = Path(source)
    if path.is_dir():
        return path
    if (path.parent / "config.yaml").is_file() or (path.parent / "metrics.csv").is_file():
        return path.parent
    return None
