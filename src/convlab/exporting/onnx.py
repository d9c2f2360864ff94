"""ONNX export with torch.export (the dynamo exporter): a dynamic batch axis and convlab's record in metadata_props.

Why ``dynamo=True`` with ``dynamic_shapes`` and not the legacy TorchScript exporter (``dynamo=False``
with ``dynamic_axes``): on torch 2.14 the legacy exporter cannot translate ``adaptive_avg_pool2d``
when the output size does not divide the input size, so AlexNet, ZFNet and all VGGs fail at CIFAR
sizes (their 7x7 or 6x6 pooling after 1x1 maps); it is also deprecated. The dynamo exporter
exported and matched onnxruntime for every model of the zoo, at the price of slower exports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from convlab.errors import ConvlabError
from convlab.record import RunRecord

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"
# torch's exporter writes opset 18 and newer; a lower request silently comes out as 18, so it is refused.
MIN_OPSET = 18


def max_opset() -> int:
    """The newest opset the installed onnx package knows."""
    import onnx

    return int(onnx.defs.onnx_opset_version())


def check_opset(opset: int | None) -> int | None:
    """None (torch's recommended opset) or an integer in MIN_OPSET..max_opset(); anything else is an error."""
    if opset is None:
        return None
    newest = max_opset()
    value = int(opset) if str(opset).strip().isdigit() else None
    if value is None or not MIN_OPSET <= value <= newest:
        raise ConvlabError(f"ONNX opset {opset!r} is not supported; accepted: {MIN_OPSET} to {newest}.")
    return value


def metadata_props(record: RunRecord) -> dict[str, str]:
    """The record as JSON under "convlab", plus keys a person can read in Netron or onnx.load."""
    spec = record.require_input()
    return {
        "convlab": record.to_json(),
        "classes": json.dumps(list(record.classes or [])),
        "input_size": "x".join(str(v) for v in spec.shape),
        "mean": json.dumps(list(spec.mean)),
        "std": json.dumps(list(spec.std)),
        "model": record.model.name,
        "model_options": json.dumps(record.model.options),
        "convlab_version": str((record.export or {}).get("convlab_version", record.convlab_version)),
    }


def doc_string(record: RunRecord) -> str:
    spec = record.require_input()
    size = " x ".join(str(v) for v in spec.shape)
    return (
        f"convlab {record.model.name}: input '{INPUT_NAME}' float32 N x {size}, "
        f"pixels scaled to 0-1 then (x - mean) / std with mean {list(spec.mean)} and std {list(spec.std)}; "
        f"output '{OUTPUT_NAME}' N x {len(record.classes or [])} logits (softmax gives probabilities)."
    )


def write_onnx(
    model: nn.Module, example: torch.Tensor, path: str | Path, record: RunRecord, opset: int | None
) -> int:
    """Export ``model`` (eval mode, on the example's device) to ``path`` with a dynamic batch axis; returns the opset."""
    name = record.model.name
    batch = torch.export.Dim(BATCH_AXIS)
    try:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            verbose=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),  # by position: the zoo's forwards name their argument differently
        )
    except Exception as error:  # the exporter raises many internal types; each becomes one sentence
        raise export_error(error, name, opset) from None
    written = int(program.model.opset_imports.get("", 0))
    if opset is not None and written != opset:
        raise ConvlabError(
            f"torch's ONNX exporter could not write opset {opset} for model '{name}' (it wrote "
            f"{written}); choose an opset from {MIN_OPSET} to {max_opset()}."
        )
    if record.export is not None:
        record = record.replace(export={**record.export, "opset": written})
    program.model.metadata_props.update(metadata_props(record))
    program.model.doc_string = doc_string(record)
    # One self-contained file (zoo models are far below protobuf's 2 GB limit), so the rename is atomic.
    program.save(str(path), external_data=False)
    return written


def export_error(error: BaseException, model_name: str, opset: int | None) -> ConvlabError:
    """One sentence for an exporter failure: the operator and model when an operator has no ONNX translation."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    text = "\n".join(str(e) for e in chain)
    match = re.search(r"OpOverload\(op='([\w.]+)'", text) or re.search(
        r"target=torch\.ops\.([\w.]+?)\.\w+\b", text
    )
    reason = _first_line(chain[-1])
    opset_words = f"opset {opset}" if opset is not None else "the default opset"
    if match:
        detail = "" if reason.startswith("No ONNX function found") else f" ({reason})"  # says the same again
        return ConvlabError(
            f"Model '{model_name}' cannot be exported to ONNX: operator {match.group(1)} has no ONNX translation "
            f"in torch {torch.__version__} at {opset_words}{detail}; try --format torchscript instead."
        )
    return ConvlabError(f"Model '{model_name}' cannot be exported to ONNX: {reason}")


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return text.rstrip(".")
