"""The model behind the service: a checkpoint (predictions and Grad-CAM) or an ONNX file (predictions), loaded once.

One lock serialises the forward passes: a module's hooks and train/eval flag are shared state, and
Grad-CAM registers hooks that a concurrent prediction would otherwise run through.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from convlab.checkpoint import load_checkpoint, resolve_checkpoint
from convlab.data import normalize
from convlab.errors import ConvlabError
from convlab.exporting.runtime import OnnxClassifier, OnnxLogits
from convlab.models import ModelSpec
from convlab.prediction import fast_path, predict_tensors
from convlab.runtime import check_device
from convlab.viz.cam import grad_cam


def onnx_providers(device) -> list[str] | None:
    """onnxruntime providers for a ``--device``: None lets the runtime prefer CUDA when it has it."""
    if device is None:
        return None
    if check_device(device).type == "cpu":
        return ["CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def parameter_count(spec: ModelSpec) -> int:
    """Parameters of the architecture a record describes, built on the meta device (no weights allocated)."""
    with torch.device("meta"):
        model = spec.build()
    return sum(p.numel() for p in model.parameters())


class ServedModel:
    """``source``: a run folder, a .safetensors checkpoint, an .onnx file or a loaded ``(model, record)`` pair."""

    def __init__(
        self, source, device: str | torch.device | None = None, amp: str = "off", channels_last: bool = False
    ):
        self.lock = threading.Lock()
        if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], nn.Module):
            model, record = source
            self.format, self.source = "checkpoint", "in memory"
        elif Path(source).suffix.lower() == ".onnx":
            # torch's thread setting is the process's share of the cores (serve divides them among workers)
            runtime = OnnxClassifier(
                Path(source), providers=onnx_providers(device), threads=torch.get_num_threads()
            )
            model, record = OnnxLogits(runtime), runtime.record
            self.format, self.source = "onnx", str(source)
        else:
            model, record = load_checkpoint(source)
            self.format, self.source = "checkpoint", str(resolve_checkpoint(source))
        if record.input is None or not record.input.normalised or record.classes is None:
            raise ConvlabError(
                f"'{self.source}' records no classes or input preprocessing (channels, size, mean, "
                "std); serve a checkpoint written by convlab's training or export."
            )
        self.amp, self.channels_last = amp, bool(channels_last)
        if self.format == "checkpoint":
            self.device = check_device(device)
            model.to(self.device)
            self.parameters = sum(p.numel() for p in model.parameters())
        else:
            self.device = torch.device(
                "cpu"
            )  # where batches are made; onnxruntime copies them to its provider
            self.parameters = parameter_count(record.model)
        model = fast_path(model, amp, channels_last)
        self.runtime = (
            "torch" if self.format == "checkpoint" else f"onnxruntime {model.classifier.providers[0]}"
        )
        self.model, self.record = model.eval(), record
        spec = record.input
        self.channels, self.size = spec.channels, list(spec.size)
        self.mean, self.std = list(spec.mean), list(spec.std)
        self.classes = list(record.classes)
        self.name = record.model.name

    @property
    def gradcam_available(self) -> bool:
        return self.format == "checkpoint"

    def require_gradcam(self) -> None:
        if not self.gradcam_available:
            raise ConvlabError(
                "Grad-CAM needs the PyTorch checkpoint's gradients; this server runs an ONNX file, "
                "so only /predict is available. Serve the .safetensors checkpoint for Grad-CAM."
            )

    def card(self) -> dict:
        """Architecture (name, options), classes, input spec, parameter count and the run's metrics."""
        return {
            "name": self.name,
            "options": self.record.model.options,
            "num_classes": len(self.classes),
            "classes": self.classes,
            "input": {"channels": self.channels, "size": self.size, "mean": self.mean, "std": self.std},
            "parameters": self.parameters,
            "metrics": self.record.metrics,
            "epoch": self.record.epoch,
            "data": self.record.data.to_dict() if self.record.data else None,
            "format": self.format,
            "source": self.source,
            "device": str(self.device) if self.format == "checkpoint" else self.runtime,
            "amp": self.amp,
            "channels_last": self.channels_last,
            "gradcam": self.gradcam_available,
            "export": self.record.export,
            "convlab_version": self.record.convlab_version,
        }

    def _batch(self, pixels: Sequence[torch.Tensor]) -> torch.Tensor:
        return normalize(torch.stack(list(pixels)).to(self.device), self.mean, self.std)

    def predict(self, pixels: Sequence[torch.Tensor], topk: int = 5) -> list[list[dict]]:
        """Top-k ``{"label", "index", "probability"}`` for each uint8 (C, H, W) image, all in one batch."""
        batch = self._batch(pixels)
        with self.lock:
            return predict_tensors(
                self.model, batch, self.classes, topk, amp=self.amp, channels_last=self.channels_last
            )

    def gradcam(self, pixels: torch.Tensor, target: int | str | None = None) -> dict:
        """Grad-CAM of one uint8 (C, H, W) image for ``target`` (default: the predicted class) as a PNG overlay."""
        self.require_gradcam()
        with self.lock:
            result = grad_cam((self.model, self.record), pixels, target=target)
        picture = (result.extra["overlay"] * 255.0).round().clip(0, 255).astype("uint8")
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        return {
            "image": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"),
            "layer": result.layer,
            "target": {"label": result.target_name, "index": result.target},
            "predicted": {
                "label": result.predicted_name,
                "index": result.predicted,
                "probability": result.probability,
            },
        }
