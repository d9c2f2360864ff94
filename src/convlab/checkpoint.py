"""Checkpoints: safetensors weights plus one record (convlab.record). The one way to save and load a model.

A checkpoint file holds the model's state_dict as safetensors and, in the safetensors header,
``{"convlab": "<json>"}`` with the record: the model spec, class names, input preprocessing,
convlab version and what training added. safetensors is used because it cannot execute code
on load, unlike pickle.

A network of your own built from a file (``--model model.py:function``) keeps a copy of that file
beside the checkpoint (``model.py``), which the record names relative to its folder: the folder
rebuilds the network wherever it is moved, and building it runs that copy.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from convlab import __version__
from convlab.errors import ConvlabError
from convlab.files import atomic_write, require_file_or_folder
from convlab.record import FORMAT, RunRecord, record_for

METADATA_KEY = "convlab"  # the safetensors header entry that holds the record


def save_checkpoint(path: str | Path, model: torch.nn.Module, record: RunRecord | dict | None = None) -> Path:
    """Save ``model``'s weights and ``record`` (classes, input spec, metrics, ...) to ``path``.

    The record's model spec, format and convlab version are always those of ``model`` and of this
    convlab: they describe the weights being written. A network built from your file gets a copy of the
    file beside ``path`` (``model.py``), which the record names.
    """
    full = record_for(model, record).replace(format=FORMAT, convlab_version=__version__)
    full = full.replace(model=full.model.saved_beside(Path(path).parent))
    # safetensors refuses shared or non-contiguous storage; clone detaches views (e.g. tied weights).
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {METADATA_KEY: full.to_json()}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return Path(path)


def resolve_checkpoint(source: str | Path, prefer: str = "best") -> Path:
    """A run folder resolves to its ``best.safetensors`` (else ``last``); a file to itself."""
    path = Path(source)
    if path.is_dir():
        for name in (f"{prefer}.safetensors", "best.safetensors", "last.safetensors"):
            if (path / name).is_file():
                return path / name
        raise ConvlabError(f"Run folder '{path}' holds no checkpoint (best.safetensors or last.safetensors).")
    return require_file_or_folder(path)


def read_record(source: str | Path) -> RunRecord:
    """The record of a checkpoint (or of a run folder's best checkpoint), without loading its weights."""
    path = resolve_checkpoint(source)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise ConvlabError(f"'{path}' is not a readable safetensors checkpoint ({error}).") from None
    if METADATA_KEY not in metadata:
        raise ConvlabError(
            f"'{path}' is a safetensors file but not a convlab checkpoint (no convlab metadata)."
        )
    record = RunRecord.from_json(metadata[METADATA_KEY], where=f"The record of '{path}'")
    return record.replace(model=record.model.located(path.parent))  # a recorded file lies beside it


def load_weights(
    model: torch.nn.Module, source: str | Path, map_location: str | torch.device = "cpu"
) -> RunRecord:
    """Load a checkpoint's (or run folder's) weights into ``model`` in place; returns the checkpoint's record."""
    path = resolve_checkpoint(source)
    record = read_record(path)
    _load_state(model, path, record, map_location)
    return record


def load_checkpoint(
    source: str | Path, map_location: str | torch.device = "cpu", *, model: torch.nn.Module | None = None
) -> tuple[torch.nn.Module, RunRecord]:
    """Rebuild the model a checkpoint (or run folder) describes and load its weights: ``(model, record)``.

    ``model``: a network you built with the code the run was trained with, to load the weights into
    instead (``convlab.load(run, model=MyNet())``), for a run whose record cannot rebuild it alone.
    """
    path = resolve_checkpoint(source)
    record = read_record(path)
    if model is None:
        model = record.model.build()
    else:
        model.convlab_spec = record.model  # the record describes these weights from now on
    _load_state(model, path, record, map_location)
    model.eval()
    return model, record


def _load_state(model: torch.nn.Module, path: Path, record: RunRecord, map_location) -> None:
    """The weights of the checkpoint at ``path`` into ``model``; a misfit is one sentence."""
    state = load_file(str(path), device=str(map_location))
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[1:3]
        raise ConvlabError(
            f"Checkpoint '{path}' does not fit model '{record.model.name}' as recorded: {' '.join(first).strip()}"
        ) from None
