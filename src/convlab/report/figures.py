"""The run report's pictures: the first-layer filters, Grad-CAM on a few validation images, right and wrong,
and the worst-classified validation images with their true and predicted classes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from convlab.data.images import display_path
from convlab.record import RunRecord
from convlab.runtime import logits_of, model_device
from convlab.viz.cam import default_cam_layer, grad_cam_maps
from convlab.viz.feature_maps import eval_mode, trace_layers
from convlab.viz.filters import filters
from convlab.viz.inputs import denormalise
from convlab.viz.render import overlay, save_grid, save_panels

SEARCH_BATCH = 128  # validation images classified per batch while looking for right and wrong examples
SEARCH_LIMIT = 1024  # stop looking after this many: a very accurate model may have few mistakes to show
FILTERS_PNG = "filters.png"
GRADCAM_PNG = "gradcam.png"
MISTAKES_PNG = "mistakes.png"
MISTAKES_SHOWN = 12  # the worst-classified images drawn: three rows of four stay readable


@dataclass
class Mistake:
    """A misclassified image: where it is in its split (and its file, for folder data), what it is and what the
    model said, with both classes' probabilities."""

    index: int
    name: str
    true: str
    predicted: str
    p_predicted: float
    p_true: float
    image: torch.Tensor


def worst_classified(model: nn.Module, bundle, split: str, classes, n: int = MISTAKES_SHOWN) -> list[Mistake]:
    """The ``n`` images of ``split`` the model gets wrong most confidently: lowest probability of the true class."""
    device = model_device(model)
    files = bundle.files(split) if hasattr(bundle, "files") else None
    scores, found, offset = [], [], 0
    with eval_mode(model), torch.no_grad():
        for images, labels in bundle.loader(split, SEARCH_BATCH, device=device):
            probabilities = logits_of(model, images).float().softmax(dim=1)
            p_true = probabilities.gather(1, labels[:, None])[:, 0]
            p_best, predicted = probabilities.max(dim=1)
            for row in torch.nonzero(predicted != labels).flatten().tolist():
                scores.append((float(p_true[row]), offset + row))
                found.append((images[row].cpu(), int(labels[row]), int(predicted[row]), float(p_best[row])))
            offset += len(labels)
    order = sorted(range(len(scores)), key=lambda i: scores[i][0])[:n]
    worst = []
    for i in order:
        p_true, index = scores[i]
        image, label, guess, p_guess = found[i]
        name = display_path(files[index]) if files is not None else f"{split} image {index}"
        worst.append(Mistake(index, name, str(classes[label]), str(classes[guess]), p_guess, p_true, image))
    return worst


def draw_mistakes(mistakes: list[Mistake], bundle, split: str, out_png: Path) -> Path:
    """The mistakes as one picture, each titled true / predicted (probability)."""
    panels = [
        (
            denormalise(m.image, bundle.mean, bundle.std),
            f"true: {m.true}\npredicted: {m.predicted} ({m.p_predicted:.0%})",
        )
        for m in mistakes
    ]
    title = f"The {len(mistakes)} worst-classified {split} images (lowest probability of the true class)"
    return save_panels(panels, title, out_png, columns=min(len(panels), 4))


def _report_split(bundle) -> str:
    splits = bundle.splits()
    return next(split for split in ("val", "test", "train") if split in splits)


def _examples(model: nn.Module, bundle, split: str, n: int, device: torch.device) -> list[tuple]:
    """Up to ``n`` (image, true, predicted) from ``split``: half wrong, half right when there are enough of
    each, the other kind filling in otherwise; right ones first."""
    wanted_wrong = n // 2
    right, wrong, seen = [], [], 0
    with torch.no_grad():
        for images, labels in bundle.loader(split, SEARCH_BATCH, device=device):
            predictions = logits_of(model, images).argmax(dim=1)
            for image, label, predicted in zip(images, labels.tolist(), predictions.tolist()):
                kind = right if label == predicted else wrong
                if len(kind) < n:
                    kind.append((image, label, predicted))
            seen += len(labels)
            if (len(wrong) >= wanted_wrong and len(right) >= n - wanted_wrong) or seen >= SEARCH_LIMIT:
                break
    chosen_wrong = wrong[: max(wanted_wrong, n - len(right))]
    return right[: n - len(chosen_wrong)] + chosen_wrong


def report_figures(
    model: nn.Module, record: RunRecord | None, bundle, run_dir: str | Path, n: int = 4
) -> list[Path]:
    """Write ``filters.png`` (the first convolution's filters) and ``gradcam.png`` (Grad-CAM for the
    predicted class of ``n`` validation images, right and wrong ones, titled true / predicted class)
    into ``run_dir``; returns their paths. The model stays on its device; its mode is restored after.
    """
    run_dir = Path(run_dir)
    drawn = filters((model, record))
    paths = [save_grid(drawn.extra["grid"], drawn.title, run_dir / FILTERS_PNG)]

    device = model_device(model)
    split = _report_split(bundle)
    classes = list((record.classes if record else None) or bundle.classes)
    with eval_mode(model):
        examples = _examples(model, bundle, split, n, device)
        if not examples:
            return paths
        images = torch.stack([image for image, _, _ in examples])
        predicted = torch.tensor([p for _, _, p in examples], device=device)
        layer = default_cam_layer(model, trace_layers(model, images[:1])[0])
        heat, _, _ = grad_cam_maps(model, images, layer, predicted)
    panels = []
    for (image, label, guess), heat_map in zip(examples, heat.cpu().numpy()):
        picture = overlay(denormalise(image, bundle.mean, bundle.std), heat_map)
        panels.append((picture, f"true: {classes[label]}\npredicted: {classes[guess]}"))
    wrong = sum(label != guess for _, label, guess in examples)
    title = (
        f"Grad-CAM at {layer} for the predicted class: {len(examples) - wrong} right and {wrong} wrong "
        f"{split} images"
    )
    paths.append(save_panels(panels, title, run_dir / GRADCAM_PNG, columns=min(len(panels), 4)))
    return paths


__all__ = ["Mistake", "draw_mistakes", "report_figures", "worst_classified"]
