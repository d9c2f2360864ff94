"""Run exported files: an ONNX file through onnxruntime, with the classes and preprocessing stored in it.

``load_exported(path)`` is the one door for prediction and serving: ``(module, record)`` for a
``.onnx`` or TorchScript ``.pt`` file, as ``load_checkpoint`` gives for a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.exporting.torchscript import load_torchscript
from convlab.record import RunRecord
from convlab.runtime import check_device

# Tried in this order among the providers the installed onnxruntime offers.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxClassifier:
    """An ONNX file written by ``convlab export``, ready to classify preprocessed batches.

    ``record`` is the checkpoint's RunRecord as stored in the file (classes, input spec, model spec,
    data, metrics, plus ``export``: format, opset, source, convlab version).
    ``predict_logits`` takes a float N x C x H x W batch (numpy or torch, any device) already
    normalised with ``mean``/``std`` and returns float32 N x classes logits as numpy.
    """

    def __init__(
        self, path: str | Path, providers: list[str] | None = None, threads: int | None = None
    ) -> None:
        """``threads``: onnxruntime's intra-op threads (default: its own choice, one per core); a server
        with several worker processes gives each its share so that they do not oversubscribe the cores."""
        import onnxruntime

        self.path = Path(path)
        if not self.path.is_file():
            raise ConvlabError(f"No ONNX file at '{self.path}'.")
        available = onnxruntime.get_available_providers()
        if providers is None:
            providers = [p for p in PREFERRED_PROVIDERS if p in available] or available
        options = onnxruntime.SessionOptions()
        if threads is not None:
            if int(threads) < 1:
                raise ConvlabError(f"threads must be at least 1, got {threads}.")
            options.intra_op_num_threads = int(threads)
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), sess_options=options, providers=list(providers)
            )
        except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConvlabError(
                f"'{self.path}' is not an ONNX model onnxruntime can load ({first})."
            ) from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "convlab" not in metadata:
            raise ConvlabError(
                f"'{self.path}' is an ONNX model but not one exported by convlab (no 'convlab' "
                "metadata); export a checkpoint with `convlab export`."
            )
        record = RunRecord.from_json(metadata["convlab"], where=f"The record in '{self.path}'")
        # a network of yours built from a file: the record's copy of it lies beside this file
        self.record = record.replace(model=record.model.located(self.path.parent))
        spec = self.record.require_input()
        self.classes: list[str] = list(self.record.classes or [])
        self.channels, self.size = spec.channels, spec.size  # size: (H, W)
        self.mean, self.std = spec.mean, spec.std
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self._check_record_against_graph()

    def _check_record_against_graph(self) -> None:
        """Refuse a record that disagrees with the graph it travels with: its input size drives the resize of
        every served image, and its classes name the outputs (the graph's own sizes are what it runs; a
        symbolic size, the batch, is not compared)."""
        where = f"The record in '{self.path}'"
        graph_input = list(self.session.get_inputs()[0].shape)
        recorded = [self.channels, *self.size]
        if len(graph_input) == 4 and any(
            isinstance(g, int) and g != r for g, r in zip(graph_input[1:], recorded, strict=True)
        ):
            takes = " x ".join(str(g) for g in graph_input[1:])
            raise ConvlabError(
                f"{where} gives input {' x '.join(map(str, recorded))} but its ONNX graph takes {takes}; "
                "convlab serves a record only with the graph it describes."
            )
        outputs = list(self.session.get_outputs()[0].shape)
        if self.classes and outputs and isinstance(outputs[-1], int) and outputs[-1] != len(self.classes):
            raise ConvlabError(
                f"{where} names {len(self.classes):,} classes but its ONNX graph outputs {outputs[-1]:,}; "
                "convlab serves a record only with the graph it describes."
            )

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def predict_logits(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """Logits (float32, N x classes) of a normalised N x C x H x W batch; a single C x H x W image is a batch of 1."""
        if isinstance(batch, torch.Tensor):
            batch = batch.detach().to("cpu", torch.float32).numpy()
        array = np.ascontiguousarray(batch, dtype=np.float32)
        if array.ndim == 3:
            array = array[None]
        expected = (self.channels, *self.size)
        if array.ndim != 4 or tuple(array.shape[1:]) != expected:
            raise ConvlabError(
                f"'{self.path.name}' takes batches of N x {' x '.join(map(str, expected))} (normalised float), "
                f"got shape {' x '.join(map(str, array.shape))}."
            )
        return self.session.run([self.output_name], {self.input_name: array})[0]

    def __repr__(self) -> str:
        name = self.record.model.name
        return (
            f"OnnxClassifier('{self.path}', model={name}, classes={len(self.classes)}, "
            f"input={self.channels}x{self.size[0]}x{self.size[1]}, providers={self.providers})"
        )


class OnnxLogits(nn.Module):
    """An OnnxClassifier behind nn.Module's call, so code written for checkpoints (``predict_tensors``,
    ``logits_of``) runs ONNX files too: a float batch in, torch logits out on the batch's device."""

    def __init__(self, classifier: OnnxClassifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.classifier.predict_logits(batch)).to(batch.device)


def onnx_providers(device: str | torch.device | None) -> list[str] | None:
    """onnxruntime providers for a ``--device``: None lets the runtime prefer CUDA when it has it."""
    if device is None:
        return None
    if check_device(device).type == "cpu":
        return ["CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def load_exported(
    path: str | Path, device: str | torch.device | None = None, *, threads: int | None = None
) -> tuple[nn.Module, RunRecord]:
    """``(module, record)`` for a file written by ``convlab export``: ``.onnx`` runs in onnxruntime (on the
    provider for ``device``; None: CUDA when its provider is installed, else CPU; ``threads``: its intra-op
    threads), ``.pt``/``.pth`` is TorchScript loaded onto ``device`` (None: the CPU)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        classifier = OnnxClassifier(path, providers=onnx_providers(device), threads=threads)
        return OnnxLogits(classifier).eval(), classifier.record
    if suffix in (".pt", ".pth"):
        return load_torchscript(path, map_location="cpu" if device is None else check_device(device))
    raise ConvlabError(
        f"'{path}' is not an exported model; accepted: .onnx (ONNX) or .pt/.pth (TorchScript) "
        "files written by `convlab export`."
    )
