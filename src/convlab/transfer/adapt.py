"""Where a network's task lives: finding its classifier and first layer, and fitting both to a new task.

Found by module order, the same way for every family: the classifier is the last
``nn.Linear`` (or, in nets without one, the last 1x1 convolution producing ``num_classes``
maps: NiN, All-CNN, SqueezeNet); the first layer is the first convolution reading the
input's channels (or the first ``nn.Linear`` of an MLP, whose input is the flattened image).
"""

from __future__ import annotations

import torch
from torch import nn

from convlab.errors import ConvlabError

# Auxiliary classifiers (GoogLeNet's aux1/aux2, Inception v3's AuxLogits) are the top-level
# children whose name starts with this; they are training aids that also predict the classes.
AUXILIARY_PREFIX = "aux"


def num_classes_of(model: nn.Module) -> int | None:
    spec = getattr(model, "convlab_spec", None)
    return spec.num_classes if spec else None


def in_chans_of(model: nn.Module) -> int | None:
    spec = getattr(model, "convlab_spec", None)
    return spec.in_chans if spec else None


def model_name(model: nn.Module) -> str:
    spec = getattr(model, "convlab_spec", None)
    return spec.name if spec else type(model).__name__


def is_auxiliary(name: str) -> bool:
    """Whether the module ``name`` belongs to an auxiliary classifier (by its top-level child's name)."""
    return name.split(".")[0].lower().startswith(AUXILIARY_PREFIX)


def _is_output_layer(module: nn.Module, num_classes: int | None) -> bool:
    if isinstance(module, nn.Linear):
        return num_classes is None or module.out_features == num_classes
    if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and num_classes is not None:
        return module.out_channels == num_classes
    return False


def _classifier_in(
    modules: list[tuple[str, nn.Module]], num_classes: int | None
) -> tuple[str, nn.Module] | None:
    linear = [(n, m) for n, m in modules if isinstance(m, nn.Linear) and _is_output_layer(m, num_classes)]
    if linear:
        return linear[-1]
    convs = [(n, m) for n, m in modules if isinstance(m, nn.Conv2d) and _is_output_layer(m, num_classes)]
    return convs[-1] if convs else None


def find_classifier(model: nn.Module) -> tuple[str, nn.Module]:
    """``(name, module)`` of the layer whose outputs are the class scores (outside auxiliary classifiers)."""
    modules = [(n, m) for n, m in model.named_modules() if n and not is_auxiliary(n)]
    found = _classifier_in(modules, num_classes_of(model))
    if found is None:
        raise ConvlabError(
            f"Model '{model_name(model)}' has no classifier layer convlab can find (an nn.Linear, or a 1x1 "
            f"convolution producing one map per class)."
        )
    return found


def find_auxiliary_classifiers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, output layer)`` of each auxiliary classifier, in module order."""
    found = []
    for child_name, child in model.named_children():
        if is_auxiliary(child_name) and child is not None:
            modules = [(f"{child_name}.{n}" if n else child_name, m) for n, m in child.named_modules()]
            layer = _classifier_in(modules, num_classes_of(model))
            if layer is not None:
                found.append(layer)
    return found


def head_parameter_names(model: nn.Module, *, auxiliary: bool = True) -> list[str]:
    """Names of the classifier's parameters (and, with ``auxiliary``, of every auxiliary classifier's)."""
    classifier, _ = find_classifier(model)
    names = []
    for name, _ in model.named_parameters():
        owner = name.rsplit(".", 1)[0]
        if owner == classifier or (auxiliary and is_auxiliary(name)):
            names.append(name)
    return names


def find_first_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """``(name, module)`` of the layer that reads the image: its weights depend on the input channels."""
    in_chans = in_chans_of(model)
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and (in_chans is None or module.in_channels == in_chans):
            return name, module
    for name, module in model.named_modules():  # an MLP: the flattened image is C*H*W values, channel first
        if isinstance(module, nn.Linear) and (in_chans is None or module.in_features % in_chans == 0):
            return name, module
    raise ConvlabError(
        f"Model '{model_name(model)}' has no first convolution or linear layer reading its input."
    )


def input_channels(
    layer: nn.Module, weight_shape: torch.Size | tuple[int, ...], model_chans: int
) -> int | None:
    """The input channels a first-layer weight of ``weight_shape`` was made for (None: it cannot be one)."""
    if isinstance(layer, nn.Conv2d):
        same_kernel = len(weight_shape) == 4 and tuple(weight_shape[2:]) == tuple(layer.weight.shape[2:])
        return int(weight_shape[1]) if same_kernel and weight_shape[0] == layer.weight.shape[0] else None
    pixels = layer.in_features // model_chans  # Linear over a flattened C x H x W image
    if len(weight_shape) == 2 and weight_shape[0] == layer.out_features and weight_shape[1] % pixels == 0:
        return int(weight_shape[1]) // pixels
    return None


def adapt_channels(weight: torch.Tensor, from_chans: int, to_chans: int) -> tuple[torch.Tensor, str]:
    """A first-layer weight for ``to_chans`` input channels, and how it was made, in words.

    ``weight`` is a convolution kernel (out, C, kH, kW) or a Linear weight over a flattened
    C x H x W image (out, C*H*W; nn.Flatten is channel-first). Both ways are exact where the
    task allows: N -> 1 sums the kernels over the input channels, so a gray image gives what
    the original gives on that image repeated N times; 1 -> N repeats the kernel N times and
    divides by N, so an image whose N channels are equal gives what the original gives on
    one of them.
    """
    if from_chans == to_chans:
        return weight, "unchanged"
    grid = weight.float().reshape(weight.shape[0], from_chans, -1)  # (out, C, everything else)
    if to_chans == 1:
        adapted, how = grid.sum(dim=1, keepdim=True), "summed over the input channels"
    elif from_chans == 1:
        adapted, how = grid.repeat(1, to_chans, 1) / to_chans, f"repeated and divided by {to_chans}"
    else:
        raise ConvlabError(
            f"Cannot adapt a first layer made for {from_chans} input channels to {to_chans}; "
            f"convlab adapts 1 -> N (repeat, divide by N) and N -> 1 (sum) channels."
        )
    shape = (weight.shape[0], to_chans, *weight.shape[2:]) if weight.ndim == 4 else (weight.shape[0], -1)
    return adapted.reshape(shape).to(weight.dtype), how


def adapt_input_channels(model: nn.Module, in_chans: int) -> str:
    """Change ``model`` in place to read ``in_chans`` channels by adapting its first layer's weights.

    Returns the report line, e.g.
    ``first layer conv1: 3 -> 1 input channels (summed over the input channels)``.
    """
    name, layer = find_first_layer(model)
    current = in_chans_of(model) or (layer.in_channels if isinstance(layer, nn.Conv2d) else 1)
    if current == in_chans:
        return f"first layer {name}: {in_chans} input channels, unchanged"
    weight, how = adapt_channels(layer.weight.detach(), current, in_chans)
    layer.weight = nn.Parameter(weight, requires_grad=layer.weight.requires_grad)
    if isinstance(layer, nn.Conv2d):
        layer.in_channels = in_chans
    else:
        layer.in_features = weight.shape[1]
    spec = getattr(model, "convlab_spec", None)
    if spec is not None:
        model.convlab_spec = spec.with_input_channels(in_chans)
    return f"first layer {name}: {current} -> {in_chans} input channels ({how})"


def _new_output_layer(old: nn.Module, num_classes: int) -> nn.Module:
    with torch.device(old.weight.device):
        if isinstance(old, nn.Linear):
            new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        else:
            new = nn.Conv2d(old.in_channels, num_classes, 1, bias=old.bias is not None)
    return new.to(old.weight.dtype)


def replace_head(model: nn.Module, num_classes: int) -> list[str]:
    """Give ``model`` fresh output layers for ``num_classes`` classes (the classifier and any auxiliary ones).

    The new layers get PyTorch's default initialisation; the backbone is untouched. Returns
    the report lines, e.g. ``head fc: 1000 -> 10 classes, newly initialised``.
    """
    layers = [find_classifier(model), *find_auxiliary_classifiers(model)]
    lines = []
    for index, (name, old) in enumerate(layers):
        before = old.out_features if isinstance(old, nn.Linear) else old.out_channels
        parent_name, _, attribute = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attribute, _new_output_layer(old, num_classes))
        kind = "head" if index == 0 else "auxiliary head"
        change = f"{before} -> {num_classes}" if before != num_classes else f"{num_classes}"
        lines.append(f"{kind} {name}: {change} classes, newly initialised")
    spec = getattr(model, "convlab_spec", None)
    if spec is not None:
        model.convlab_spec = spec.with_head(num_classes)
    return lines
