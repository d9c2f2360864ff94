"""A folder trained for more than one epoch is decoded once into its cache, and the run is the same run."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from convlab.data.cache import CachedFolderBundle, cache_home
from convlab.data.load import load_data
from convlab.training import inputs
from tests.photos import write_photo_folder


def train(folder, out, **settings):
    import convlab

    options = dict(
        model="mlp", data=str(folder), epochs=2, device="cpu", seed=0, image_size=[24, 24], threads=1
    )
    convlab.train(out=str(out), **{**options, **settings})
    return (out / "train.log").read_text()


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLAB_FOLDER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_first_run_builds_the_cache_and_trains_the_same_weights_as_decoding(tmp_path, own_cache):
    folder = write_photo_folder(tmp_path / "photos")
    decoded = train(folder, tmp_path / "decoded", folder_cache="off")
    assert "decode-once cache" not in decoded
    assert not own_cache.exists()

    built = train(folder, tmp_path / "cached")
    assert f"{inputs.CACHE_BUILT} 60 images once at 3x24x24" in built
    assert isinstance(load_data(folder, image_size=(24, 24)), CachedFolderBundle)
    # the cache holds the pixels the decoding loader delivers: the same run, weight for weight
    for name in ("last.safetensors", "best.safetensors"):
        a, b = load_file(tmp_path / "decoded" / name), load_file(tmp_path / "cached" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)

    again = train(folder, tmp_path / "again")
    assert "decode-once cache" not in again  # a current cache is read, not built again


def test_one_epoch_decodes_without_building_a_cache(tmp_path, own_cache):
    folder = write_photo_folder(tmp_path / "photos", per_class=10)
    log = train(folder, tmp_path / "run", epochs=1)
    assert "decode-once cache" not in log
    assert not own_cache.exists()


def test_a_cache_that_cannot_be_written_leaves_the_run_decoding(tmp_path, monkeypatch):
    folder = write_photo_folder(tmp_path / "photos", per_class=10)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CONVLAB_FOLDER_CACHE", str(blocker / "cache"))
    log = train(folder, tmp_path / "run")
    assert f"decode-once cache: could not be written under {cache_home()}" in log
    assert "every epoch decodes the files" in log
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_a_folder_above_the_size_limit_is_not_cached_unasked(tmp_path, own_cache, monkeypatch):
    folder = write_photo_folder(tmp_path / "photos", per_class=10)
    monkeypatch.setattr(inputs, "AUTO_CACHE_BYTES", 1000)
    log = train(folder, tmp_path / "run")
    assert "decode-once cache: not built" in log
    assert f"`convlab data cache {folder} --image-size 24x24` builds it on request" in log
    assert not own_cache.exists()


def test_folder_cache_takes_auto_or_off(tmp_path):
    import convlab
    from convlab.errors import ConvlabError

    with pytest.raises(ConvlabError, match=r"folder_cache \(--folder-cache\).*auto, off"):
        convlab.train(model="mlp", data=str(tmp_path), folder_cache="sometimes")
