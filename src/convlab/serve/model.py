"""The model behind the service, loaded once: a checkpoint (predictions and Grad-CAM), or an exported ONNX or
TorchScript file (predictions), through the same ``load_any`` as ``convlab predict``.

One lock serialises the forward passes: a module's hooks and train/eval flag are shared state, and
Grad-CAM registers hooks that a concurrent prediction would otherwise run through.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Sequence

import torch
from PIL import Image
from torch import nn

from convlab.checkpoint import meta_network
from convlab.data import normalize
from convlab.errors import ConvlabError
from convlab.exporting.runtime import OnnxLogits
from convlab.models import ModelSpec
from convlab.models._registry import MAX_META_REGISTRATIONS
from convlab.prediction import EXPORTED_FORMATS, choose_fast_path, load_any, predict_tensors, resolve_source
from convlab.runtime import check_device
from convlab.viz.cam import grad_cam


def parameter_count(spec: ModelSpec, source: str) -> int:
    """Parameters of the architecture an exported file's record describes, built on the meta device (no
    weights allocated) within MAX_META_REGISTRATIONS modules and tensors: OnnxClassifier checks the record
    against the graph's input and output, but the model's options could still ask for depth 10^6, which
    only building shows."""
    model = meta_network(spec, MAX_META_REGISTRATIONS, f"The record of '{source}'")
    if model is None:  # a network of yours that does not build on the meta device: its code is trusted
        model = spec.build()
    return sum(p.numel() for p in model.parameters())


class ServedModel:
    """``source``: what ``convlab predict`` takes (a run folder, a .safetensors checkpoint, an .onnx or TorchScript
    .pt/.pth file from ``convlab export``) or a loaded ``(model, record)`` pair."""

    def __init__(
        self,
        source,
        device: str | torch.device | None = None,
        amp: str = "off",
        channels_last: bool | str = False,
    ):
        self.lock = threading.Lock()
        if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], nn.Module):
            model, record = source
            self.format, self.source = "checkpoint", "in memory"
        else:
            path = resolve_source(source)
            self.format, self.source = EXPORTED_FORMATS.get(path.suffix.lower(), "checkpoint"), str(path)
            # ONNX Runtime's threads: torch's setting, the process's share of the cores (serve divides them
            # among workers)
            model, record = load_any(path, device, threads=torch.get_num_threads())
        if record.input is None or not record.input.normalised or record.classes is None:
            raise ConvlabError(
                f"'{self.source}' records no classes or input preprocessing (channels, size, mean, "
                "std); serve a checkpoint written by convlab's training or export."
            )
        if self.format == "onnx":
            # where batches are made; onnxruntime copies them to its provider
            self.device = torch.device("cpu")
            self.parameters = parameter_count(record.model, self.source)
        else:
            self.device = check_device(device)
            model.to(self.device)
            self.parameters = sum(p.numel() for p in model.parameters())
        spec = record.input
        # auto: the precision and layout that pay for this model here (convlab.runtime.choose_precision)
        # /predict runs the copy choose_fast_path makes for inference in bf16; Grad-CAM the model's own layers
        self.layers = model
        model, self.precision = choose_fast_path(model, amp, channels_last, (spec.channels, *spec.size))
        self.amp, self.channels_last = self.precision.amp, self.precision.channels_last
        self.runtime = (
            f"onnxruntime {model.classifier.providers[0]}" if isinstance(model, OnnxLogits) else "torch"
        )
        self.model, self.record = model.eval(), record
        self.channels, self.size = spec.channels, list(spec.size)
        self.mean, self.std = list(spec.mean), list(spec.std)
        self.resize = spec.resize  # how an upload of another shape is brought to the size (squash or crop)
        self.classes = list(record.classes)
        self.name = record.model.name

    @property
    def gradcam_available(self) -> bool:
        return self.format == "checkpoint"

    def require_gradcam(self) -> None:
        if not self.gradcam_available:
            kind = "an ONNX" if self.format == "onnx" else "a TorchScript"
            raise ConvlabError(
                f"Grad-CAM needs the PyTorch checkpoint's layers and gradients; this server runs {kind} file, "
                "so only /predict is available. Serve the run folder or its .safetensors checkpoint for Grad-CAM."
            )

    def card(self) -> dict:
        """Architecture (name, options), classes, input spec, parameter count and the run's metrics."""
        return {
            "name": self.name,
            "options": self.record.model.options,
            "num_classes": len(self.classes),
            "classes": self.classes,
            "input": {
                "channels": self.channels,
                "size": self.size,
                "mean": self.mean,
                "std": self.std,
                "resize": self.resize,
            },
            "parameters": self.parameters,
            "metrics": self.record.metrics,
            "epoch": self.record.epoch,
            "data": self.record.data.to_dict() if self.record.data else None,
            "format": self.format,
            "source": self.source,
            "device": self.runtime if self.format == "onnx" else str(self.device),
            "amp": self.amp,
            "channels_last": self.channels_last,
            "precision": str(self.precision),
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
            result = grad_cam((self.layers, self.record), pixels, target=target)
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
