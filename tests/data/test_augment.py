"""Batched augmentation of in-memory sets: each name does what it says, and only (seed, epoch) decide it."""

import pytest
import torch
import torch.nn.functional as F

from convlab.data import AUGMENTATIONS, parse_augment
from convlab.data.augment import default_crop_padding
from convlab.data.memory import build_memory_bundle
from convlab.errors import ConvlabError


@pytest.fixture(scope="module")
def colour():
    """64 random RGB images of 16x24 in 4 classes, all training (no validation split)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 16, 24), dtype=torch.uint8, generator=generator)
    labels = torch.arange(64) % 4
    return build_memory_bundle("colour", ["a", "b", "c", "d"], images, labels, val_split=0)


def batches(bundle, augment, epoch=0, seed=0, batch_size=64):
    return torch.cat(
        [x for x, _ in bundle.loader("train", batch_size, augment=augment, epoch=epoch, seed=seed)]
    )


def padding_value(bundle):
    """Black (0) after normalisation, per channel, shaped to broadcast over (C, H, W)."""
    return (-torch.tensor(bundle.mean) / torch.tensor(bundle.std)).view(-1, 1, 1)


def test_parse_augment_names_aliases_and_errors():
    assert parse_augment("flip,crop") == ["flip", "crop"]
    assert parse_augment(["hflip", " cutout ", "flip"]) == ["flip", "erase"]
    assert parse_augment("") == [] and parse_augment(None) == [] and parse_augment("none") == []
    assert set(AUGMENTATIONS) == {
        "crop",
        "flip",
        "translate",
        "erase",
        "pca-lighting",
        "random-resized-crop",
        "color-jitter",
    }
    with pytest.raises(
        ConvlabError, match="Unknown augmentation 'flipp'; did you mean flip.* Accepted: .*crop"
    ):
        parse_augment("crop,flipp")


def test_crop_padding_scales_with_size():
    assert default_crop_padding((32, 32)) == 4  # He et al. 2015, section 4.2: 4 pixels at 32x32
    assert default_crop_padding((28, 28)) == 3
    assert default_crop_padding((96, 96)) == 12 and default_crop_padding((8, 8)) == 1


def test_flip_mirrors_exactly_the_rows_it_flips(colour):
    plain, flipped = batches(colour, ()), batches(colour, "flip")
    mirrored = [torch.equal(f, p.flip(-1)) for f, p in zip(flipped, plain)]
    unchanged = [torch.equal(f, p) for f, p in zip(flipped, plain)]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert 16 < sum(mirrored) < 48  # p = 0.5 over 64 images


def crop_offsets(bundle, cropped, plain, pad):
    """Where in the image zero-padded by ``pad`` each cropped image was cut (every one must be a window)."""
    height, width = bundle.image_size
    offsets = []
    for c, p in zip(cropped, plain):
        padded = F.pad(p - padding_value(bundle), (pad, pad, pad, pad)) + padding_value(bundle)
        found = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.allclose(padded[:, dy : dy + height, dx : dx + width], c, atol=1e-5)
        ]
        assert found, "every crop is a window of the padded image"
        offsets.append(found[0])
    return offsets


@pytest.mark.parametrize("crop_padding", [None, 1, 5])
def test_crop_is_a_window_of_the_zero_padded_image(colour, crop_padding):
    plain = batches(colour, ())
    cropped = torch.cat([x for x, _ in colour.loader("train", 64, augment="crop", crop_padding=crop_padding)])
    pad = (
        default_crop_padding(colour.image_size) if crop_padding is None else crop_padding
    )  # default 2 at 16x24
    offsets = crop_offsets(colour, cropped, plain, pad)
    assert cropped.shape == plain.shape
    assert len(set(offsets)) > min(10, (2 * pad + 1) ** 2 // 2)  # offsets vary from image to image
    # the border reaches its full width: some window starts pad pixels out on some side
    assert max(max(abs(dy - pad), abs(dx - pad)) for dy, dx in offsets) == pad


@pytest.mark.parametrize("bad", [0, -1, 17, 2.5, True])
def test_crop_padding_outside_the_image_is_one_clear_error(colour, bad):
    with pytest.raises(
        ConvlabError,
        match=r"crop_padding \(--crop-padding\) must be a whole number of pixels from 1 to 16 \(the shorter side of the 16x24 images\)",
    ):
        colour.loader("train", 8, augment="crop", crop_padding=bad)


def test_translate_shifts_with_the_edge_pixels_repeated(colour):
    plain, shifted = batches(colour, ()), batches(colour, "translate")
    limit = 2  # 10% of 16, rounded
    for s, p in zip(shifted, plain):
        padded = F.pad(p.unsqueeze(0), (limit,) * 4, mode="replicate")[0]
        assert any(
            torch.allclose(padded[:, dy : dy + 16, dx : dx + 24], s, atol=1e-5)
            for dy in range(2 * limit + 1)
            for dx in range(2 * limit + 1)
        )


def test_erase_zeroes_one_rectangle(colour):
    plain, erased = batches(colour, ()), batches(colour, "erase")
    touched = 0
    for e, p in zip(erased, plain):
        changed = (e != p).any(0)
        if not changed.any():
            continue
        touched += 1
        rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        box = (slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1))
        assert torch.all(e[:, box[0], box[1]] == 0)  # the mean of the training set after normalisation
        outside = torch.ones_like(changed)
        outside[box] = False
        assert torch.equal(e[:, outside], p[:, outside])
        area = (box[0].stop - box[0].start) * (box[1].stop - box[1].start) / (16 * 24)
        assert 0.01 < area < 0.4  # Zhong et al.: 2%-33% of the area, up to rounding
    assert 16 < touched < 48  # p = 0.5


def test_pca_lighting_adds_one_constant_per_image_and_channel(colour):
    plain, lit = batches(colour, ()), batches(colour, "pca-lighting")
    shift = (lit - plain).flatten(2)  # (N, 3, H*W)
    assert torch.allclose(shift, shift[:, :, :1].expand_as(shift), atol=1e-5)
    assert shift[:, :, 0].abs().max() > 1e-3
    # The shifts lie in the span of the RGB covariance's principal axes, scaled by sqrt(eigenvalue).
    eigenvalues, eigenvectors = colour.lighting()
    assert torch.all(eigenvalues > 0) and eigenvectors.shape == (3, 3)


def test_pca_lighting_needs_three_channels():
    images = torch.zeros(8, 1, 8, 8, dtype=torch.uint8)
    gray = build_memory_bundle("gray", ["a", "b"], images, torch.arange(8) % 2, val_split=0)
    with pytest.raises(ConvlabError, match="pca-lighting needs RGB images; this data has 1 channel"):
        gray.loader("train", 4, augment="pca-lighting")
    assert next(iter(gray.with_channels(3).loader("train", 4, augment="pca-lighting")))[0].shape == (
        4,
        3,
        8,
        8,
    )


@pytest.mark.parametrize(
    "augment", ["crop,flip", "translate,erase", "random-resized-crop,color-jitter,pca-lighting"]
)
def test_augmentation_depends_only_on_seed_and_epoch(colour, augment):
    first = batches(colour, augment, epoch=1, seed=3, batch_size=20)
    assert torch.equal(first, batches(colour, augment, epoch=1, seed=3, batch_size=20))
    assert not torch.equal(first, batches(colour, augment, epoch=2, seed=3, batch_size=20))
    assert not torch.equal(first, batches(colour, augment, epoch=1, seed=4, batch_size=20))
    assert first.shape == (64, 3, 16, 24) and torch.isfinite(first).all()


def test_shuffle_order_does_not_change_when_augmentations_are_added(colour):
    plain = [y for _, y in colour.loader("train", 16, shuffle=True, epoch=5)]
    augmented = [y for _, y in colour.loader("train", 16, shuffle=True, epoch=5, augment="crop,flip,erase")]
    assert all(torch.equal(a, b) for a, b in zip(plain, augmented))


def test_color_jitter_and_random_resized_crop_change_pixels_not_shape(colour):
    plain = batches(colour, ())
    for augment in ("color-jitter", "random-resized-crop"):
        changed = batches(colour, augment)
        assert changed.shape == plain.shape
        assert (changed - plain).abs().flatten(1).amax(1).gt(1e-3).float().mean() > 0.9


def test_resizing_per_batch_gives_what_resizing_at_load_gives(colour, monkeypatch):
    import convlab.data.memory as memory

    at_load = colour.resized((20, 30))
    monkeypatch.setattr(memory, "RESIZE_AT_LOAD_MAX_BYTES", 0)  # as if the resized set did not fit in memory
    per_batch = colour.resized((20, 30))
    assert per_batch._resize_per_batch and not at_load._resize_per_batch
    assert tuple(per_batch._images.shape[-2:]) == (16, 24)  # kept at its own size
    first, second = (
        batches(at_load, "crop,flip", batch_size=16),
        batches(per_batch, "crop,flip", batch_size=16),
    )
    assert first.shape == (64, 3, 20, 30)
    assert at_load.mean == pytest.approx(
        per_batch.mean, abs=1e-9
    )  # measured on the resized images either way
    assert torch.allclose(first, second, atol=1e-4)
