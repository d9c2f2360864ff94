"""The decode-once cache of image folders: the same pixels, splits and statistics as decoding, and stale caches refused."""

import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from convlab.cli import main as cli_main
from convlab.data import load_data, read_image
from convlab.data.cache import CachedFolderBundle, cache_folder
from convlab.data.folder import FolderBundle


@pytest.fixture(autouse=True)
def _cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLAB_FOLDER_CACHE", str(tmp_path / "cache-home"))


def write_folder(root, per_class=12, classes=("cat", "dog", "owl")):
    """JPEG and PNG files of mixed sizes and modes (RGB, gray), plus one file that is not an image."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for number in range(per_class):
            height, width = (40, 48) if number % 4 else (33, 29)  # most 40x48: the size load_data picks
            pixels = (rng.random((height, width, 3)) * 200 + label * 20).astype(np.uint8)
            image = Image.fromarray(pixels).convert("L" if number % 5 == 0 else "RGB")
            image.save(root / name / f"{number:03d}.{'png' if number % 3 == 0 else 'jpg'}")
    (root / classes[0] / "broken.jpg").write_bytes(b"this is not a JPEG file")
    return root


def batches(bundle, split):
    images, labels = zip(*bundle.loader(split, batch_size=7))
    return torch.cat(images), torch.cat(labels)


def test_cached_folder_gives_exactly_the_decoded_pixels_splits_and_statistics(tmp_path):
    folder = write_folder(tmp_path / "pets")
    options = dict(image_size=(40, 48), val_split=0.25, seed=3, max_bad_fraction=0.1)
    decoded = load_data(str(folder), **options)
    info = cache_folder(folder, image_size=(40, 48), max_bad_fraction=0.1)
    assert (info.images, info.skipped, info.in_chans, info.image_size) == (36, 1, 3, (40, 48))
    assert info.resize == "crop"  # a folder's default rule

    cached = load_data(str(folder), **options)
    assert isinstance(decoded, FolderBundle) and isinstance(cached, CachedFolderBundle)
    assert "decode-once cache" in cached.source
    assert cached.skipped == decoded.skipped and "broken.jpg" in cached.skipped[0][0]
    assert cached.mean == decoded.mean and cached.std == decoded.std  # from the same per-file RGB moments
    for split in ("train", "val"):
        assert cached.files(split) == decoded.files(split)
        assert torch.equal(cached.labels(split), decoded.labels(split))
        cached_images, cached_labels = batches(cached, split)
        decoded_images, decoded_labels = batches(decoded, split)
        assert torch.equal(cached_labels, decoded_labels)
        assert torch.equal(cached_images, decoded_images)  # normalised floats, bit for bit
    # The array rows are the uint8 pixels read_image gives for each file at the cached size, by the crop rule
    # (the 33x29 files lose rows top and bottom to become 40:48).
    rows = cached._split_indices["train"]
    for row, path in zip(rows.tolist(), cached.files("train")):
        assert torch.equal(cached._images[row], read_image(path, 3, (40, 48), resize="crop"))


def test_cache_follows_channels_size_limit_classes_and_split_folders(tmp_path):
    folder = tmp_path / "pets"
    write_folder(folder / "train")
    write_folder(folder / "val", per_class=4)
    options = dict(image_size=(24, 24), in_chans=1, limit=20, classes=["owl", "cat"], max_bad_fraction=0.1)
    decoded = load_data(str(folder), **options)
    cache_folder(folder, image_size=(24, 24), in_chans=1, max_bad_fraction=0.1)
    cached = load_data(str(folder), **options)
    assert isinstance(cached, CachedFolderBundle) and cached.classes == ["owl", "cat"] == decoded.classes
    assert cached.splits() == decoded.splits() == ["train", "val"]
    for split in cached.splits():
        assert cached.files(split) == decoded.files(split)
        assert torch.equal(batches(cached, split)[0], batches(decoded, split)[0])
    # A cache is kept per channels and size: the native RGB one is not this gray 24x24 one.
    assert not isinstance(load_data(str(folder), max_bad_fraction=0.1), CachedFolderBundle)


def test_a_changed_added_or_removed_file_makes_the_cache_stale(tmp_path):
    folder = write_folder(tmp_path / "pets")
    cache_folder(folder, max_bad_fraction=0.1)  # at 224x224 by the crop rule: what training picks for photos
    assert isinstance(load_data(str(folder), image_size=(224, 224), max_bad_fraction=0.1), CachedFolderBundle)

    touched = folder / "dog" / "001.jpg"
    stamp = time.time() + 5
    os.utime(touched, (stamp, stamp))  # same bytes, new mtime: the manifest no longer matches
    stale = load_data(str(folder), image_size=(224, 224), max_bad_fraction=0.1)
    assert isinstance(stale, FolderBundle)
    assert "cache out of date (1 file(s) added, removed or changed" in stale.source
    assert "--image-size 224x224 --in-chans 3 --resize crop`" in stale.source  # the command that refreshes it

    cache_folder(folder, max_bad_fraction=0.1)
    assert isinstance(load_data(str(folder), image_size=(224, 224), max_bad_fraction=0.1), CachedFolderBundle)
    Image.new("RGB", (48, 40), "red").save(folder / "owl" / "new.jpg")
    (folder / "cat" / "000.png").unlink()
    changed = load_data(str(folder), image_size=(224, 224), max_bad_fraction=0.1)
    assert "(2 file(s) added, removed or changed" in changed.source


def test_data_cache_command_writes_the_cache_that_training_then_reads(tmp_path, capsys):
    folder = write_folder(tmp_path / "pets")
    assert cli_main(["data", "cache", str(folder), "--image-size", "32", "--max-bad-fraction", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "Cached 36 images" in out and "3x32x32" in out and "1 unreadable files skipped" in out
    bundle = load_data(str(folder), image_size=(32, 32), max_bad_fraction=0.1)
    assert isinstance(bundle, CachedFolderBundle) and bundle.image_size == (32, 32)
