"""Where named sets are looked for, the one error when they are missing, and `convlab data`."""

import json
import time
import urllib.error
import urllib.request

import pytest

import convlab.data.registry as registry
from convlab.cli import main
from convlab.data import default_data_root, load_data
from convlab.errors import ConvlabError


@pytest.fixture
def offline(monkeypatch):
    """No network, as on a machine without internet: every URL fails at once."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_default_data_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVLAB_DATA", str(tmp_path / "sets"))
    assert default_data_root() == tmp_path / "sets"
    monkeypatch.delenv("CONVLAB_DATA")
    assert str(default_data_root()).endswith(".cache/convlab/data")


def test_missing_set_without_download_names_every_place_and_the_command(tmp_path):
    with pytest.raises(ConvlabError) as error:
        load_data("cifar10", data_root=tmp_path, download=False)
    message = str(error.value)
    assert message.startswith("CIFAR-10 is not available: convlab looked in ")
    assert f"{tmp_path}/cifar-10-batches-py" in message
    assert "downloading was not allowed (download=False)" in message
    assert f"`convlab data download cifar10 --data-root {tmp_path}`" in message
    assert (
        f"place data_batch_1 ... data_batch_5, test_batch and batches.meta (the python version) under {tmp_path}/cifar-10-batches-py"
        in message
    )
    assert "\n" not in message


def test_fashion_mnist_missing_from_the_system_location_suggests_the_debian_package(tmp_path, monkeypatch):
    spec = registry.NAMED_SETS["fashion-mnist"]
    gone = str(tmp_path / "usr-share-datasets" / "fashion-mnist")
    monkeypatch.setitem(
        registry.NAMED_SETS, "fashion-mnist", registry.dataclasses.replace(spec, system_folders=(gone,))
    )
    with pytest.raises(ConvlabError) as error:
        load_data("fashion-mnist", data_root=tmp_path / "root", download=False)
    message = str(error.value)
    for place in (tmp_path / "root" / "fashion-mnist", tmp_path / "root" / "FashionMNIST" / "raw", gone):
        assert str(place) in message
    assert "`sudo apt-get install dataset-fashion-mnist`" in message
    assert "`convlab data download fashion-mnist --data-root" in message


def test_a_failed_download_gives_the_same_error_quickly(tmp_path, offline):
    start = time.perf_counter()
    with pytest.raises(ConvlabError) as error:
        load_data("mnist", data_root=tmp_path, download=True)
    assert time.perf_counter() - start < 10
    message = str(error.value)
    assert message.startswith("MNIST is not available: convlab looked in ")
    assert "the download failed (" in message and "Name or service not known" in message
    assert "place train-images-idx3-ubyte.gz" in message and f"under {tmp_path}/mnist" in message


def test_files_placed_under_data_root_are_found_first(tmp_path):
    import numpy as np

    from convlab.data import write_idx

    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, count in (("train", 40), ("t10k", 10)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", np.full((count, 28, 28), 7, dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(count) % 10).astype(np.uint8))
    bundle = load_data("mnist", data_root=tmp_path, download=False)
    assert bundle.source == f"MNIST from {folder}"
    assert bundle.size("test") == 10 and bundle.classes == [str(d) for d in range(10)]
    assert registry.locate("mnist", tmp_path) == folder


def test_unknown_name_lists_the_named_sets():
    with pytest.raises(
        ConvlabError, match="Unknown data set 'cifar-1000'.* Accepted: cifar10, cifar100, digits"
    ):
        registry.named_set("cifar-1000")


def test_cli_data_list_shows_every_set_and_where_it_is(tmp_path, capsys):
    assert main(["data", "list", "--data-root", str(tmp_path), "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"mnist", "fashion-mnist", "cifar10", "cifar100", "svhn", "stl10", "digits"}
    assert rows["fashion-mnist"]["available"] and "dataset-fashion-mnist" in rows["fashion-mnist"]["location"]
    assert not rows["cifar10"]["available"] and rows["cifar10"]["location"] is None
    assert (rows["svhn"]["train"], rows["svhn"]["test"], rows["stl10"]["image_size"]) == (
        73257,
        26032,
        [96, 96],
    )
    assert rows["cifar100"]["classes"] == 100 and rows["digits"]["available"]
    assert main(["data", "list", "--data-root", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "fashion-mnist" in table and "60,000" in table and "convlab data download cifar10" in table


def test_cli_data_info_of_a_named_set(capsys):
    assert main(["data", "info", "digits", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"] == {"train": 1293, "val": 145, "test": 359}
    assert info["image_size"] == [8, 8] and info["in_chans"] == 1 and info["num_classes"] == 10
    assert main(["data", "info", "digits", "--image-size", "16", "--in-chans", "3"]) == 0
    text = capsys.readouterr().out
    assert "images: 16x16 (squash), 3 channel(s)" in text and "splits: train 1,293, val 145, test 359" in text


def test_cli_errors_are_one_line(tmp_path, capsys, offline):
    assert main(["data", "download", "cifar10", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("convlab: error: CIFAR-10 is not available") and "\n" not in err
    assert main(["data", "info", "svhn", "--data-root", str(tmp_path)]) == 2
    assert "downloading was not allowed" in capsys.readouterr().err
