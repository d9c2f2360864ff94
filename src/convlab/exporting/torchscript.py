"""TorchScript export by tracing, with convlab's record stored as ``convlab.json`` inside the archive.

Tracing, not scripting: ``torch.jit.script`` compiles the Python source and rejects GoogLeNet (its
train/eval outputs differ in type), Inception-v3, ViT and the 1998 LeNet-5 (getattr by computed
name); the zoo's eval-mode forwards have no data-dependent branches, so a trace records them
exactly, and shape reads stay symbolic (``aten::size``), which the check at two batch sizes proves.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from convlab.checkpoint import check_against_weights
from convlab.errors import ConvlabError
from convlab.record import RunRecord

EXTRA_FILE = "convlab.json"


def write_torchscript(model: nn.Module, example: torch.Tensor, path: str | Path, record: RunRecord) -> None:
    """Trace ``model`` (eval mode) on ``example`` and save it with ``record`` as an extra file."""
    name = record.model.name
    with warnings.catch_warnings():
        # torch 2.14 marks torch.jit as deprecated on every call; the user asked for TorchScript, so the
        # notice is noise. TracerWarnings (a shape turned into a constant) still show.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        try:
            with torch.no_grad():
                # check_trace re-runs the same input only; convlab's own check uses real images at two batch sizes
                traced = torch.jit.trace(model, example, check_trace=False)
        except Exception as error:  # tracing raises RuntimeError, TypeError, ... from deep inside the model
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConvlabError(f"Model '{name}' cannot be traced to TorchScript: {first}") from None
        torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: record.to_json()})


def load_torchscript(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[torch.jit.ScriptModule, RunRecord]:
    """``(module, record)`` from a file written by convlab export; the module is in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise ConvlabError(f"No TorchScript file at '{path}'.")
    files = {EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        try:
            module = torch.jit.load(str(path), map_location=map_location, _extra_files=files)
        except (RuntimeError, ValueError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConvlabError(f"'{path}' is not a readable TorchScript file ({first}).") from None
    if not files[EXTRA_FILE]:
        raise ConvlabError(
            f"'{path}' is a TorchScript file but not one exported by convlab (no {EXTRA_FILE} inside)."
        )
    where = f"The record in '{path}'"
    record = RunRecord.from_json(files[EXTRA_FILE], where=where)
    if record.model.code is None:
        # The module's own weights say what the record's network must be: a zoo record is built on the meta
        # device and compared with them, and its input is run through that copy (no memory), so that a record
        # claiming other sizes than its module (the input every served image is resized to) is refused here.
        # A network of yours is not built: loading a TorchScript file runs none of your code, and still runs none.
        shapes = {key: tuple(tensor.shape) for key, tensor in module.state_dict().items()}
        check_against_weights(record, shapes, where)
    # a network of yours built from a file: the record's copy of it lies beside this file
    return module.eval(), record.replace(model=record.model.located(Path(path).parent))
