"""Which model, which input, and does it go through: names and sizes resolved, and an input the
architecture cannot take explained with the layer where it fails and the sizes that work.
"""

from __future__ import annotations

import contextlib
import re
from typing import NamedTuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from convlab.analysis.trace import LayerFailure, Trace, run_trace
from convlab.errors import ConvlabError
from convlab.models import create_model, get_model_info, is_reference

INPUT_FORM = "CxHxW, e.g. 3x224x224 (or HxW, or a single size S for CxSxS with the model's channels)"

# Sizes tried when searching for the smallest input that works: meta passes cost the same at any
# size; on a real device (a model that meta cannot run) the search stays near the requested size.
META_SEARCH_LIMIT = 4096


def parse_input_size(value, channels: int | None) -> tuple[int, int, int]:
    """(C, H, W) from ``"3x224x224"``, ``"224x224"``, ``"224"``, ``224`` or a tuple of 1 to 3 ints.

    The short forms take ``channels`` (the model's). A two-part size whose first part looks like a
    channel count ("3x224") is rejected: as HxW it would be a 3-pixel-high image, surely a typo.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if not re.fullmatch(r"\d+(x\d+){0,2}", text):
            raise ConvlabError(f"Input size '{value}' is not of the form {INPUT_FORM}.")
        parts = tuple(int(p) for p in text.split("x"))
    elif isinstance(value, int):
        parts = (value,)
    elif isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value) and 1 <= len(value) <= 3:
        parts = tuple(value)
    else:
        raise ConvlabError(f"Input size {value!r} is not of the form {INPUT_FORM}.")
    if len(parts) == 2 and parts[0] <= 4 < parts[1] // 4:
        raise ConvlabError(f"Input size '{_text(parts)}' looks like channels x size; write {INPUT_FORM}.")
    if any(p < 1 for p in parts):
        raise ConvlabError(f"Input size '{_text(parts)}' has a zero; write {INPUT_FORM}.")
    if len(parts) == 3:
        return parts
    if channels is None:
        raise ConvlabError(
            f"Input size '{_text(parts)}' needs the channels for this model; write {INPUT_FORM}."
        )
    if len(parts) == 1:
        return (channels, parts[0], parts[0])
    return (channels, *parts)


def _text(size) -> str:
    return "x".join(str(s) for s in size)


class _SkipInitOnMeta(TorchFunctionMode):
    """Builds a model on the meta device without running its weight initialisation.

    A meta tensor has no values, so filling it in place changes nothing, yet torch runs random
    fills there through slow Python decompositions: they were half the time of listing the zoo
    (docs/performance.md#smaller-measured-choices). This mode hands such in-place calls their tensor back unchanged.
    """

    IN_PLACE_FILLS = frozenset(
        {
            "normal_",
            "uniform_",
            "trunc_normal_",
            "fill_",
            "zero_",
            "erfinv_",
            "clamp_",
            "mul_",
            "add_",
            "sub_",
            "div_",
            "copy_",
            "exponential_",
            "bernoulli_",
            "random_",
            "log_normal_",
            "cauchy_",
            "geometric_",
        }
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if (
            getattr(func, "__name__", "") in self.IN_PLACE_FILLS
            and args
            and getattr(args[0], "is_meta", False)
        ):
            return args[0]
        return func(*args, **(kwargs or {}))


def model_label(model: nn.Module) -> str:
    spec = getattr(model, "convlab_spec", None)
    return spec.name if spec else type(model).__name__


def resolve_model(
    model_or_name: nn.Module | str,
    input_size=None,
    num_classes: int | None = None,
    device=None,
    **options,
) -> tuple[nn.Module, tuple[int, ...]]:
    """The model to inspect and the (C, H, W) to feed it.

    A name is built by ``create_model`` with ``in_chans`` taken from ``input_size`` (so 1x28x28 gives
    a one-channel network), on the meta device unless ``device`` says otherwise: no weights are
    allocated, which is what makes a ResNet-152 summary take a fraction of a second. A reference to
    your own builder (``path/to/model.py:function``) is built the same way; its code cannot say what
    input it takes, so ``input_size`` is required (CxHxW).
    """
    if isinstance(model_or_name, str):
        size = _input_of_name(model_or_name, input_size)
        build_device = torch.device("meta" if device is None else device)
        try:
            with build_device, _SkipInitOnMeta() if build_device.type == "meta" else contextlib.nullcontext():
                model = create_model(model_or_name, num_classes=num_classes, in_chans=size[0], **options)
        except ConvlabError:
            raise
        except Exception:
            if build_device.type != "meta":
                raise
            model = create_model(model_or_name, num_classes=num_classes, in_chans=size[0], **options)
        return model, tuple(size)
    if not isinstance(model_or_name, nn.Module):
        raise ConvlabError(f"summary takes a model name or an nn.Module, got {type(model_or_name).__name__}.")
    if num_classes is not None or options:
        raise ConvlabError("num_classes and model options apply only when the model is given by name.")
    spec = getattr(model_or_name, "convlab_spec", None)
    if (
        spec is None
        and isinstance(input_size, (tuple, list))
        and all(isinstance(n, int) and n > 0 for n in input_size)
    ):
        return model_or_name, tuple(input_size)  # a plain module: the exact per-sample shape, any rank
    if input_size is None:
        if spec is None:
            raise ConvlabError(
                f"input_size is required for a {type(model_or_name).__name__}, e.g. input_size=(3, 224, 224)."
            )
        return model_or_name, tuple(spec.input_size)
    channels = spec.in_chans if spec else None
    return model_or_name, parse_input_size(input_size, channels)


def _input_of_name(name: str, input_size) -> tuple[int, int, int]:
    """The (C, H, W) to feed a model given by name: the one asked for, else the zoo model's own."""
    if is_reference(name):
        if input_size is None:
            raise ConvlabError(
                f"Give the input size for your network {name} (--input CxHxW, e.g. --input 3x64x64): "
                f"convlab cannot read it from the code."
            )
        return parse_input_size(input_size, None)
    info = get_model_info(name)
    return parse_input_size(input_size, info.input_size[0]) if input_size is not None else info.input_size


class TracedModel(NamedTuple):
    """A model resolved by ``resolve_model``, the name messages give it, its input and its trace."""

    model: nn.Module
    label: str
    input_size: tuple[int, ...]
    trace: Trace


def trace_or_explain(
    model_or_name: nn.Module | str,
    input_size=None,
    num_classes: int | None = None,
    device=None,
    **options,
) -> TracedModel:
    """Resolve the model and trace one forward pass, or raise one ConvlabError that says why it
    cannot run: the layer where the input is too small or too large and the sizes that work, the
    wrong channel count, or the first line of any other error with the layer it came from."""
    model, size = resolve_model(model_or_name, input_size, num_classes, device, **options)
    # a zoo model by the name asked for; your own network by its function's name, not the path to it
    zoo_name = isinstance(model_or_name, str) and not is_reference(model_or_name)
    label = model_or_name if zoo_name else model_label(model)
    try:
        trace = run_trace(model, size, device)
    except LayerFailure as failure:
        raise explain_failure(model, label, size, failure, device) from None
    except ConvlabError:
        raise
    except Exception as error:
        raise run_error(label, size, error) from error
    return TracedModel(model, label, size, trace)


def check_input_size(model_or_name: nn.Module | str, input_size=None, device=None, **options) -> None:
    """Raise ConvlabError if ``input_size`` cannot go through the model, naming the layer where the
    feature map vanishes (or the classifier whose input size is fixed) and the sizes that work; or
    ``model expects 3 input channels, got 1`` for a wrong channel count."""
    trace_or_explain(model_or_name, input_size, device=device, **options)


def _direction(failure: LayerFailure | None) -> str | None:
    """Which way the input size has to move: "up", "down", or None when it works ("stop": unknown)."""
    if failure is None:
        return None
    if failure.kind == "vanish":
        return "up"
    if failure.kind == "features":
        return "up" if failure.received < failure.expected else "down"
    return "stop"


def _probe(model: nn.Module, channels: int, device):
    results: dict[int, LayerFailure | None] = {}

    def probe(side: int):
        if side not in results:
            try:
                run_trace(model, (channels, side, side), device)
                results[side] = None
            except LayerFailure as failure:
                results[side] = failure
            except Exception as error:  # any other failure: the search cannot go on through it
                results[side] = LayerFailure(
                    "error", getattr(error, "convlab_layer", ""), "", None, detail=str(error)
                )
        return results[side]

    return probe


def working_sizes(model: nn.Module, channels: int, start: int, device=None) -> tuple[int | None, int | None]:
    """(smallest, largest) square side that runs, searched by doubling then bisecting with forward
    passes; largest is None when every size up to the search limit runs, smallest None when none does.
    Relies on the feature map growing with the input, which holds for convolution and pooling."""
    limit = META_SEARCH_LIMIT if device is None or str(device) == "meta" else max(4 * start, 64)
    probe = _probe(model, channels, device)

    def too_small(side: int) -> bool:
        return _direction(probe(side)) == "up"

    # smallest side that is not too small: bracket it in (low, high], then bisect
    low, high = 0, max(1, start)
    if too_small(high):
        low, high = high, high * 2
        while too_small(high):
            low, high = high, high * 2
            if high > limit:
                return None, None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if too_small(middle) else (low, middle)
    smallest = high
    if _direction(probe(smallest)) is not None:
        return None, None
    if _direction(probe(limit)) != "down":
        return smallest, None
    low, high = smallest, limit  # largest side that is not too big lies in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if _direction(probe(middle)) == "down" else (middle, high)
    return smallest, low


def explain_failure(
    model: nn.Module, label: str, size: tuple[int, ...], failure: LayerFailure, device=None
) -> ConvlabError:
    """The one-sentence error for an input that does not go through ``model``."""
    channels, spatial = size[0], size[1:]
    at = _text(spatial)
    layer = f"layer '{failure.layer}' ({failure.description})"
    if failure.kind == "channels":
        return ConvlabError(
            f"model {label} expects {failure.expected} input channels, got {failure.received} "
            f"(input {_text(size)}); use --input {failure.expected}x{at}."
        )
    if failure.kind == "error":
        return ConvlabError(
            f"{label} cannot run on a {_text(size)} input in layer '{failure.layer}': {failure.detail}"
        )
    smallest, largest = working_sizes(model, channels, max(spatial), device)
    if failure.kind == "vanish":
        problem = f"at {at} the feature map vanishes in {layer} which receives {_text(failure.received)}"
    else:
        problem = f"at {at} {layer} receives {failure.received} features but takes {failure.expected}"
    if smallest is None:
        return ConvlabError(
            f"{label} cannot run on a {_text(size)} input: {problem}, and no square input size works."
        )
    if failure.kind == "vanish":
        if largest is None:
            limit = "or larger."
        else:
            limit = (
                f"(up to {largest}x{largest}: beyond that its classifier gets more features than it takes)."
            )
        return ConvlabError(
            f"{label} needs inputs of at least {smallest}x{smallest}: {problem}. "
            f"Use --input {channels}x{smallest}x{smallest} {limit}"
        )
    if largest is None:
        span = f"at least {smallest}x{smallest}"
    elif largest == smallest:
        span = f"exactly {smallest}x{smallest}"
    else:
        span = f"{smallest}x{smallest} to {largest}x{largest}"
    return ConvlabError(
        f"{label} takes inputs of {span} (its classifier has a fixed input size): {problem}. "
        f"Use --input {channels}x{smallest}x{smallest}."
    )


def run_error(label: str, size: tuple[int, ...], error: Exception) -> ConvlabError:
    """A forward pass that failed for a reason the trace does not recognise, as one sentence."""
    layer = getattr(error, "convlab_layer", "")
    where = f" in layer '{layer}'" if layer else ""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ConvlabError(f"{label} cannot run on a {_text(size)} input{where}: {reason}")
