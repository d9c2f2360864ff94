"""Checkpoints: safetensors weights plus one record (convlab.record). The one way to save and load a model.

A checkpoint file holds the model's state_dict as safetensors and, in the safetensors header,
``{"convlab": "<json>"}`` with the record: the model spec, class names, input preprocessing,
convlab version and what training added. safetensors is used because it cannot execute code
on load, unlike pickle.

A network of your own built from a file (``--model model.py:function``) keeps a copy of that file
beside the checkpoint (``model.py``), which the record names relative to its folder: the folder
rebuilds the network wherever it is moved, and building it runs that copy.

A checkpoint may come from anyone, so its record is not trusted for sizes: ``RunRecord.from_json`` holds
it to sane limits, and ``load_checkpoint`` builds the recorded network on the meta device (no memory) and
compares it with the tensors the safetensors header lists before building it for real.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from safetensors.torch import save as safetensors_bytes

from convlab import __version__
from convlab.errors import ConvlabError
from convlab.files import atomic_write, require_file_or_folder
from convlab.models import ModelSpec
from convlab.models._registry import NetworkTooLarge
from convlab.record import FORMAT, RunRecord, record_for

METADATA_KEY = "convlab"  # the safetensors header entry that holds the record
# How many modules, parameters and buffers a network rebuilt from a record may register per tensor its file
# holds, plus a floor for the smallest files: the zoo registers at most 2 per tensor (DenseNet-201: 1,922
# for 1,207 tensors), so a record asking for more (depth 10^6 beside 10 tensors) describes other weights.
REGISTRATIONS_PER_TENSOR = 4
REGISTRATIONS_FLOOR = 1000

Shapes = Mapping[str, tuple[int, ...]]


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
    # Serialised in memory, written by Python: safetensors' save_file reports a full disk as a
    # SafetensorError, where Python's write gives the OSError that atomic_write names (files.WriteError).
    data = safetensors_bytes(tensors, metadata=metadata)
    atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data))
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
    return _read_header(resolve_checkpoint(source))[0]


def _read_header(path: Path) -> tuple[RunRecord, dict[str, tuple[int, ...]]]:
    """The record and each tensor's shape, from the safetensors header alone (no tensor is read)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise ConvlabError(f"'{path}' is not a readable safetensors checkpoint ({error}).") from None
    if METADATA_KEY not in metadata:
        raise ConvlabError(
            f"'{path}' is a safetensors file but not a convlab checkpoint (no convlab metadata)."
        )
    record = RunRecord.from_json(metadata[METADATA_KEY], where=f"The record of '{path}'")
    return record.replace(model=record.model.located(path.parent)), shapes  # a recorded file lies beside it


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
    record, shapes = _read_header(path)
    if model is None:
        model = build_checked(record, shapes, f"Checkpoint '{path}'")
    else:
        model.convlab_spec = record.model  # the record describes these weights from now on
    _load_state(model, path, record, map_location)
    model.eval()
    return model, record


def build_checked(record: RunRecord, shapes: Shapes, where: str) -> torch.nn.Module:
    """The network ``record`` describes, built only once ``check_against_weights`` found that it has the tensors
    ``shapes`` lists and takes the recorded input; ``where`` names the file in a refusal."""
    if check_against_weights(record, shapes, where) is None:
        # A network of yours that does not build on the meta device (its builder reads a tensor's values, or
        # calls what meta tensors lack): its code runs anyway to build it, and the record's sizes are within
        # the record limits, so it is built for real and compared before any weight is read.
        model = record.model.build()
        check_fits(record.model, _shapes_of(model), shapes, where)
        return model
    return record.model.build()


def check_against_weights(record: RunRecord, shapes: Shapes, where: str) -> torch.nn.Module | None:
    """Refuse a record that lies about the weights it travels with (10^8 classes beside weights for 10, an
    input LeNet-5 cannot read): its network is built on the meta device (no memory) within a budget of modules
    the file's tensor count warrants, compared with ``shapes`` (name -> shape, as a safetensors header lists
    them) and, for a zoo network, run once on the recorded input. Returns that meta network; None for a
    network of yours that does not build there (nothing was checked)."""
    budget = REGISTRATIONS_PER_TENSOR * len(shapes) + REGISTRATIONS_FLOOR
    meta = meta_network(record.model, budget, where)
    if meta is not None:
        check_fits(record.model, _shapes_of(meta), shapes, where)
        if record.model.code is None and record.input is not None:
            check_input(meta, record, where)
    return meta


def meta_network(spec: ModelSpec, budget: int, where: str) -> torch.nn.Module | None:
    """``spec``'s network on the meta device, refused once it registers more than ``budget`` modules, parameters
    and buffers; None for a network of yours that does not build there. A zoo spec that does not build (an
    option of the wrong type, a name that is not the zoo's) is refused with one sentence."""
    try:
        return spec.build_on_meta(budget)
    except NetworkTooLarge as error:
        raise ConvlabError(
            f"{where} describes model '{spec.name}' larger than its weights can be: built from the record, "
            f"it registers more than {error.limit:,} modules, parameters and buffers."
        ) from None
    except Exception as error:  # a builder fed a hostile option raises anything: TypeError, OverflowError...
        if spec.code is not None:
            return None
        raise ConvlabError(
            f"{where} records model '{spec.name}' with options convlab cannot build ({_first_line(error)})."
        ) from None


def check_fits(spec: ModelSpec, expected: Shapes, found: Shapes, where: str) -> None:
    """Refuse, with one sentence, weights ``found`` (name -> shape) that are not the ``expected`` ones of ``spec``'s
    network: the first difference, in the record's terms where it can tell (classes, input channels)."""
    if dict(expected) == dict(found):
        return
    wrong = [key for key in expected if key in found and tuple(expected[key]) != tuple(found[key])]
    # load_state_dict lets batch norm fill in a counter a file lacks (state dicts from before torch 0.4.1)
    missing = [key for key in expected if key not in found and not key.endswith(".num_batches_tracked")]
    extra = [key for key in found if key not in expected]
    if wrong:
        key, want, have = wrong[0], tuple(expected[wrong[0]]), tuple(found[wrong[0]])
        if len(want) == len(have) >= 1 and want[1:] == have[1:] and want[0] == spec.num_classes:
            reason = f"the record says {spec.num_classes:,} classes but the weights have {have[0]:,} ({key})"
        elif len(want) == len(have) >= 2 and want[2:] == have[2:] and want[1] == spec.in_chans:
            reason = f"the record says {spec.in_chans} input channels but the weights have {have[1]} ({key})"
        else:
            reason = f"{key} would be {_shape(want)} but the file holds {_shape(have)}"
        more = len(wrong) - 1
    elif missing:
        reason, more = f"the file lacks {missing[0]}", len(missing) - 1
    elif extra:
        reason, more = f"the file holds {extra[0]}, which the recorded network lacks", len(extra) - 1
    else:
        return
    others = (
        (f", and {more:,} more tensors differ" if more > 1 else ", and 1 more tensor differs") if more else ""
    )
    raise ConvlabError(f"{where} does not fit model '{spec.name}' as recorded: {reason}{others}.")


def check_input(meta: torch.nn.Module, record: RunRecord, where: str) -> None:
    """Refuse a record whose input the network cannot read, found by one forward pass on the meta device (no
    memory): every request would otherwise be resized to that input and fail only after the first layers ran
    on it (LeNet-5 at 4096 x 4096 is 400 MB per image before its flatten rejects it)."""
    spec = record.require_input()
    try:
        with torch.no_grad():
            meta.eval()(torch.empty(1, *spec.shape, device="meta"))
    except Exception as error:  # shape errors come as RuntimeError, ValueError, IndexError...
        raise ConvlabError(
            f"{where} does not fit model '{record.model.name}' as recorded: the network cannot take the "
            f"recorded input {spec.describe()} ({_first_line(error)})."
        ) from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    if isinstance(error, ConvlabError):  # a sentence of convlab's already
        return lines[0].rstrip(".") if lines else "no reason given"
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _shapes_of(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape) if shape else "a scalar"


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
