"""Feature maps: what a named layer outputs for one image, captured with a forward hook and drawn as a grid.

Also the layer bookkeeping Grad-CAM shares: which named modules give 4-D (N, C, H, W) outputs, in the
order they finish during a forward pass, and the error that lists them for an unknown name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from convlab.errors import ConvlabError, closest_names
from convlab.viz.inputs import Visualisation, load_subject, output_path, prepare_image, safe_name

MAX_CHANNELS = 64  # feature maps drawn; wider layers show their first 64 channels
LISTED_LAYERS = 30  # layer names an error message lists; the rest are counted


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode (batch norm on running statistics, no dropout), its own mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def forward_hooks(modules: dict[str, nn.Module], hook) -> Iterator[None]:
    """``hook(name, module, inputs, output)`` on each module for the duration of the block; removed after."""
    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: hook(name, m, i, o))
        for name, module in modules.items()
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def trace_layers(model: nn.Module, inputs: torch.Tensor) -> tuple[dict[str, tuple[int, ...]], torch.Tensor]:
    """Every named module whose output is a 4-D tensor, with that shape, in the order the modules finish,
    and the model's logits: one forward pass in eval mode without autograd.

    A module run twice (a ReLU shared inside a block) keeps its last position: containers finish after
    their children, so a stage comes after its last block.
    """
    from convlab.runtime import logits_of

    shapes: dict[str, tuple[int, ...]] = {}

    def record(name, module, args, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            shapes.pop(name, None)
            shapes[name] = tuple(output.shape)

    modules = {name: module for name, module in model.named_modules() if name}
    with eval_mode(model), forward_hooks(modules, record), torch.no_grad():
        logits = logits_of(model, inputs)
    return shapes, logits


def _listing(shapes: dict[str, tuple[int, ...]]) -> str:
    """Up to LISTED_LAYERS names with their C x H x W, outer layers (stages, blocks) first, in forward order."""
    names = sorted(shapes, key=lambda name: name.count("."))  # stable: forward order within each depth
    listed = [f"{name} ({'x'.join(str(s) for s in shapes[name][1:])})" for name in names[:LISTED_LAYERS]]
    more = f", and {len(names) - LISTED_LAYERS} more" if len(names) > LISTED_LAYERS else ""
    return ", ".join(listed) + more


def layer_error(name: str, shapes: dict[str, tuple[int, ...]]) -> ConvlabError:
    """``Unknown layer 'x'; did you mean ...? Layers with feature maps: a (6x28x28), ..., and N more.``"""
    close = closest_names(name, shapes)
    hint = f"; did you mean {', '.join(close)}?" if close else "."
    return ConvlabError(f"Unknown layer '{name}'{hint} Layers with feature maps: {_listing(shapes)}.")


def check_layer(model: nn.Module, layer: str, shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """The output shape of ``layer`` (from ``trace_layers``), or a ConvlabError listing the layers that
    output feature maps."""
    if layer in shapes:
        return shapes[layer]
    modules = dict(model.named_modules())
    if layer in modules and layer:
        raise ConvlabError(
            f"Layer '{layer}' ({type(modules[layer]).__name__}) does not output feature maps (N x C x H x W); "
            f"choose one of: {_listing(shapes)}."
        )
    raise layer_error(layer, shapes)


def first_conv_name(model: nn.Module) -> str:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name
    raise ConvlabError(
        f"Model {type(model).__name__} has no Conv2d layer, so it has no filters or feature maps "
        "to show; give a convolutional model."
    )


def capture_output(model: nn.Module, layer: str, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(model output, layer output)`` of one forward pass; the layer's output as it left the module.

    The hook hands the rest of the network a copy, so an in-place operation after the layer (a
    ``ReLU(inplace=True)``) cannot change the captured values, and gradients reach the captured tensor.
    """
    captured: list[torch.Tensor] = []

    def keep(name, module, args, output):
        captured[:] = [output]  # a module run twice: its last call counts
        return output.clone()

    with forward_hooks({layer: dict(model.named_modules())[layer]}, keep):
        output = model(inputs)
    return output, captured[0]


def feature_maps(
    source,
    image,
    *,
    layer: str | None = None,
    out: str | Path | None = None,
    device: str | torch.device | None = None,
    max_channels: int = MAX_CHANNELS,
) -> Visualisation:
    """The output of ``layer`` (default: the first convolution) for one image, as a grid of channels.

    ``source``: run folder, checkpoint, ``(model, record)`` or model; ``image``: a file, uint8 pixels or
    model input (see ``prepare_image``). Returns ``array`` = the layer's output for the image, C x h x w,
    as computed (not rescaled); the PNG shows the first ``max_channels`` channels, each stretched to its
    own 0..1 (viridis), titled with the layer's name and output shape.
    """
    from convlab.viz.render import grid_columns, save_grid, tile_grid, unit_range

    subject, device = load_subject(source, device)
    model = subject.model
    prepared = prepare_image(image, subject, device)
    layer = layer or first_conv_name(model)
    with eval_mode(model):
        shape = check_layer(model, layer, trace_layers(model, prepared.input)[0])
        with torch.no_grad():
            _, activation = capture_output(model, layer, prepared.input)
    maps = activation[0].float().cpu().numpy()
    shown = maps[:max_channels]
    tiles = unit_range(shown, axes=(1, 2))
    channels = f"{len(shown)} of {shape[1]} channels" if len(shown) < shape[1] else f"{shape[1]} channels"
    title = f"{subject.name} {layer}: output {'x'.join(str(s) for s in shape[1:])} ({channels})"
    png = output_path(out, subject, f"feature-maps-{safe_name(layer)}-{safe_name(prepared.name)}.png")
    if png is not None:
        save_grid(tile_grid(tiles, grid_columns(len(tiles))), title, png, colormap="viridis")
    return Visualisation("feature-maps", maps, layer, title, png, extra={"shape": shape})


__all__ = ["capture_output", "check_layer", "eval_mode", "feature_maps", "first_conv_name", "trace_layers"]
