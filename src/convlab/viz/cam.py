"""Where the model looks: Grad-CAM (Selvaraju et al. 2017) and gradient saliency (Simonyan et al. 2013).

Both explain one class score (the logit, before softmax, as both papers do) for one image or a batch;
samples in a batch do not interact in eval mode, so one backward pass of the summed scores gives each
image its own gradients.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from convlab.errors import ConvlabError
from convlab.viz.feature_maps import capture_output, check_layer, eval_mode, trace_layers
from convlab.viz.inputs import (
    PreparedImage,
    Subject,
    Visualisation,
    load_subject,
    output_path,
    prepare_image,
    resolve_target,
    safe_name,
)

# Head-side pooling to a fixed size: at 224x224 it changes nothing, at a smaller input it copies a 1x1 map
# into 7x7 identical cells (VGG on CIFAR), which would make a flat heat map. Never the default layer.
RESAMPLING_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def default_cam_layer(model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> str:
    """The last module to finish whose output is 4-D with more than one position: the deepest feature maps
    that still say *where* (Selvaraju et al. 2017, sec. 3: the last convolutional layer)."""
    modules = dict(model.named_modules())
    spatial = [
        name
        for name, shape in shapes.items()
        if shape[-1] * shape[-2] > 1 and not isinstance(modules[name], RESAMPLING_POOLS)
    ]
    if not spatial:
        raise ConvlabError(
            "The model has no layer with spatial feature maps (N x C x H x W with H x W > 1), "
            "so Grad-CAM has nothing to localise with; use saliency, which needs no layer."
        )
    return spatial[-1]


def _scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, targets.view(-1, 1)).sum()


def grad_cam_maps(
    model: nn.Module, inputs: torch.Tensor, layer: str, targets: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grad-CAM of ``targets`` (default: each image's predicted class) at ``layer`` for a batch.

    Returns ``(heat maps N x H x W at the input size, each scaled to max 1; raw maps N x h x w at the
    layer's size; logits)``. The model runs in eval mode; parameters' ``.grad`` are left untouched.
    """
    inputs = inputs.detach().clone().requires_grad_(True)  # a graph even when every parameter is frozen
    with eval_mode(model), torch.enable_grad():
        output, activation = capture_output(model, layer, inputs)
        logits = output[0] if isinstance(output, (tuple, list)) else output  # main head of aux-head models
        if targets is None:
            targets = logits.argmax(dim=1)
        (gradient,) = torch.autograd.grad(_scores(logits, targets.to(logits.device)), activation)
    activation = activation.detach().float()
    weights = gradient.float().mean(dim=(2, 3), keepdim=True)  # alpha_k^c: Selvaraju et al. 2017, eq. 1
    raw = F.relu((weights * activation).sum(dim=1))  # ReLU(sum_k alpha_k^c A^k): eq. 2
    heat = F.interpolate(raw.unsqueeze(1), size=inputs.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = heat.amax(dim=(1, 2), keepdim=True)
    heat = torch.where(peak > 0, heat / peak.clamp_min(torch.finfo(heat.dtype).tiny), 0.0)
    return heat, raw, logits.detach()


def saliency_maps(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(|d score / d input| max over channels, N x H x W; logits)`` (Simonyan et al. 2013, sec. 3.1)."""
    from convlab.runtime import logits_of

    inputs = inputs.detach().clone().requires_grad_(True)
    with eval_mode(model), torch.enable_grad():
        logits = logits_of(model, inputs)
        if targets is None:
            targets = logits.argmax(dim=1)
        (gradient,) = torch.autograd.grad(_scores(logits, targets.to(logits.device)), inputs)
    return gradient.abs().amax(dim=1), logits.detach()


def _explained(subject: Subject, logits: torch.Tensor, target) -> tuple[list[str], int, int, float]:
    """Class names, the resolved target, the predicted class and its softmax probability, for one image."""
    names = subject.class_names(logits.shape[1])
    probabilities = logits[0].float().softmax(dim=0)
    predicted = int(probabilities.argmax())
    return names, resolve_target(target, names, predicted), predicted, float(probabilities[predicted])


def _prepare(source, image, device) -> tuple[Subject, PreparedImage]:
    subject, device = load_subject(source, device)
    return subject, prepare_image(image, subject, device)


def grad_cam(
    source,
    image,
    *,
    layer: str | None = None,
    target: int | str | None = None,
    out: str | Path | None = None,
    device: str | torch.device | None = None,
) -> Visualisation:
    """Grad-CAM heat map of one image for ``target`` (class name or index; default: the predicted class).

    ``layer`` defaults to the last layer with spatial feature maps (``default_cam_layer``). Returns
    ``array`` = the heat map at the input size in 0..1, ``extra["raw"]`` the map at the layer's size
    before scaling and ``extra["overlay"]`` the (H, W, 3) picture; the PNG shows the image and the overlay.
    """
    from convlab.viz.render import overlay, save_panels

    subject, prepared = _prepare(source, image, device)
    model = subject.model
    shapes, logits = trace_layers(model, prepared.input)
    layer = layer or default_cam_layer(model, shapes)
    check_layer(model, layer, shapes)
    names, target_index, predicted, probability = _explained(subject, logits, target)
    targets = torch.tensor([target_index], device=prepared.input.device)
    heat, raw, _ = grad_cam_maps(model, prepared.input, layer, targets)
    heat_map = heat[0].cpu().numpy()
    picture = overlay(prepared.display, heat_map)
    title = (
        f"{subject.name} Grad-CAM at {layer} for '{names[target_index]}' "
        f"(predicted '{names[predicted]}', p={probability:.2f})"
    )
    png = output_path(
        out, subject, f"gradcam-{safe_name(prepared.name)}-{safe_name(names[target_index])}.png"
    )
    if png is not None:
        save_panels([(prepared.display, "input"), (picture, f"Grad-CAM: {names[target_index]}")], title, png)
    return Visualisation(
        "gradcam",
        heat_map,
        layer,
        title,
        png,
        target_index,
        names[target_index],
        predicted,
        names[predicted],
        probability,
        extra={"raw": raw[0].cpu().numpy(), "overlay": picture},
    )


def saliency(
    source,
    image,
    *,
    target: int | str | None = None,
    out: str | Path | None = None,
    device: str | torch.device | None = None,
) -> Visualisation:
    """Gradient saliency of one image for ``target`` (default: the predicted class).

    Returns ``array`` = |d score / d input|, the maximum over channels, H x W, unscaled (zero where the
    score does not depend on the pixel); the PNG shows the image and the map scaled to its maximum.
    """
    from convlab.runtime import logits_of
    from convlab.viz.render import save_panels

    subject, prepared = _prepare(source, image, device)
    model = subject.model
    with eval_mode(model), torch.no_grad():
        logits = logits_of(model, prepared.input)
    names, target_index, predicted, probability = _explained(subject, logits, target)
    targets = torch.tensor([target_index], device=prepared.input.device)
    maps, _ = saliency_maps(model, prepared.input, targets)
    saliency_map = maps[0].float().cpu().numpy()
    scaled = saliency_map / saliency_map.max() if saliency_map.max() > 0 else np.zeros_like(saliency_map)
    title = (
        f"{subject.name} saliency for '{names[target_index]}' "
        f"(predicted '{names[predicted]}', p={probability:.2f})"
    )
    png = output_path(
        out, subject, f"saliency-{safe_name(prepared.name)}-{safe_name(names[target_index])}.png"
    )
    if png is not None:
        save_panels(
            [(prepared.display, "input"), (scaled, "|d score / d pixel|")], title, png, colormap="hot"
        )
    return Visualisation(
        "saliency",
        saliency_map,
        None,
        title,
        png,
        target_index,
        names[target_index],
        predicted,
        names[predicted],
        probability,
    )


__all__ = ["default_cam_layer", "grad_cam", "grad_cam_maps", "saliency", "saliency_maps"]
