"""Is an input size right for an architecture? Says where the feature map vanishes and what size works."""

from __future__ import annotations

import re

from torch import nn

from convlab.errors import ConvlabError

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


def check_input_size(model_or_name: nn.Module | str, input_size=None, device=None, **options) -> None:
    """Raise ConvlabError if ``input_size`` cannot go through the model, naming the layer where the
    feature map vanishes (or the classifier whose input size is fixed) and the sizes that work; or
    ``model expects 3 input channels, got 1`` for a wrong channel count."""
    from convlab.analysis.summary import LayerFailure, model_label, resolve_model, run_error, run_trace

    model, size = resolve_model(model_or_name, input_size, device=device, **options)
    label = model_or_name if isinstance(model_or_name, str) else model_label(model)
    try:
        run_trace(model, size, device)
    except LayerFailure as failure:
        raise explain_failure(model, label, size, failure, device) from None
    except ConvlabError:
        raise
    except Exception as error:
        raise run_error(label, size, error) from error


def _direction(failure) -> str | None:
    """Which way the input size has to move: "up", "down", or None when it works ("stop": unknown)."""
    if failure is None:
        return None
    if failure.kind == "vanish":
        return "up"
    if failure.kind == "features":
        return "up" if failure.received < failure.expected else "down"
    return "stop"


def _probe(model: nn.Module, channels: int, device):
    from convlab.analysis.summary import LayerFailure, run_trace

    results: dict[int, object] = {}

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
    model: nn.Module, label: str, size: tuple[int, ...], failure, device=None
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
