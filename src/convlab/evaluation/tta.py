"""Test-time augmentation: average the softmax over mirrored, shifted or cropped views of each batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlab.choices import TTA_MODES
from convlab.errors import ConvlabError
from convlab.runtime import logits_of

# ``shift``'s offsets (rows, columns): at rest and one pixel each way, the translations ``crop`` and
# ``translate`` train on, at the smallest step. Measured against the mirror alone, the 8 neighbours
# and 2-pixel shifts in docs/performance.md#test-time-augmentation.
SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))

# The standard ImageNet ratio of crop to resized image (224 of 256); ten-crop views are cut from the
# input enlarged by its inverse, so each crop sees 87.5% of the image (Krizhevsky et al. 2012, sec. 4.1).
CROP_FRACTION = 0.875

# What each mode's views assume the network has learned to ignore, and the training augmentations (any one of
# them) that teach it: averaging over views a network never saw can lower accuracy instead of raising it.
TTA_ASSUMES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "flip": (("mirror images", ("flip",)),),
    "shift": (("mirror images", ("flip",)), ("translations", ("crop", "translate", "random-resized-crop"))),
    "tencrop": (("mirror images", ("flip",)), ("crops", ("random-resized-crop", "crop", "translate"))),
}


def ten_crop_views(images: Tensor) -> Iterator[Tensor]:
    """Four corner crops and the centre crop of the batch enlarged by 1/0.875, then their mirrors.

    Each view is an N x C x H x W batch at the input size: one resize and ten slices per batch.
    """
    height, width = images.shape[-2:]
    big_h, big_w = round(height / CROP_FRACTION), round(width / CROP_FRACTION)
    enlarged = F.interpolate(images, size=(big_h, big_w), mode="bilinear", align_corners=False)
    bottom, right = big_h - height, big_w - width
    corners = [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]
    crops = [enlarged[..., top : top + height, left : left + width] for top, left in corners]
    yield from crops
    for crop in crops:
        yield crop.flip(-1)


def shift_views(images: Tensor) -> Iterator[Tensor]:
    """The batch and its mirror, unmoved and moved one pixel up, down, left and right (10 views).

    The border a shift uncovers repeats the edge pixels, as the ``translate`` augmentation does. Every
    view moves the whole batch by the same step, so one padded copy serves all of them as slices
    (``augment.shift_batch`` gathers a window per image, for steps that differ image by image).
    """
    height, width = images.shape[-2:]
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    for dy, dx in SHIFTS:
        view = (
            images if (dy, dx) == (0, 0) else padded[..., 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        )
        yield view
        yield view.flip(-1)


def untrained_views_note(tta: str | None, augment: Sequence[str] | None) -> str | None:
    """One line saying which views of ``tta`` the training augmentations ``augment`` did not teach, or None.

    ``augment`` is the run's recorded ``config["augment"]``; None (no training configuration recorded) says
    nothing, since nothing is known.
    """
    if tta is None or augment is None:
        return None
    missing = [what for what, teachers in TTA_ASSUMES[tta] if not set(teachers) & set(augment)]
    if not missing:
        return None
    wanted = [*augment, *(teachers[0] for what, teachers in TTA_ASSUMES[tta] if what in missing)]
    return (
        f"TTA {tta} averages over {' and '.join(missing)}, but the model was trained without them "
        f"(augment: {', '.join(augment) or 'none'}), so it may score lower than without TTA; "
        f"train with --augment {','.join(wanted)} for TTA {tta} to help."
    )


def tta_views(images: Tensor, tta: str) -> Iterator[Tensor]:
    if tta == "flip":
        yield images
        yield images.flip(-1)
    elif tta == "shift":
        yield from shift_views(images)
    elif tta == "tencrop":
        yield from ten_crop_views(images)
    else:
        raise ConvlabError(f"Unknown test-time augmentation '{tta}'; accepted: none, {', '.join(TTA_MODES)}.")


def tta_probabilities(model: nn.Module, images: Tensor, tta: str) -> Tensor:
    """N x classes softmax probabilities averaged over the views of ``tta`` (``flip``, ``shift``, ``tencrop``).

    The views go through the model one batch each, so memory stays that of one plain batch.
    """
    total = None
    count = 0
    for view in tta_views(images, tta):
        probabilities = logits_of(model, view.contiguous()).float().softmax(dim=-1)
        total = probabilities if total is None else total + probabilities
        count += 1
    return total / count


def predict_probabilities(model: nn.Module, images: Tensor, tta: str | None = None) -> Tensor:
    """Softmax probabilities for a batch, with or without test-time augmentation."""
    with torch.inference_mode():
        if tta is None:
            return logits_of(model, images).float().softmax(dim=-1)
        return tta_probabilities(model, images, tta)
