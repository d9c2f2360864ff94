"""CIFAR-10/100, SVHN and STL-10 read from tiny files written in the exact layouts torchvision downloads,
and scikit-learn's digits."""

import pickle

import numpy as np
import pytest
import scipy.io
import torch
import torchvision

from convlab.data import load_data
from convlab.errors import ConvlabError


def pattern(count, channels=3, size=32, offset=0):
    """Images whose every pixel tells where it is: value = (17 n + 5 c + 3 i + j + offset) mod 256."""
    n, c, i, j = np.meshgrid(
        np.arange(count), np.arange(channels), np.arange(size), np.arange(size), indexing="ij"
    )
    return ((17 * n + 5 * c + 3 * i + j + offset) % 256).astype(np.uint8)


def write_cifar10(root, per_batch=4, test_count=6, python2_keys=False):
    """cifar-10-batches-py: five training batches, a test batch and batches.meta, as pickled dicts."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    key = (lambda k: k.encode()) if python2_keys else (lambda k: k)
    for number in range(1, 6):
        images = pattern(per_batch, offset=number * 40)
        labels = [(number * per_batch + k) % 10 for k in range(per_batch)]
        entry = {
            key("batch_label"): "training batch",
            key("data"): images.reshape(per_batch, -1),
            key("labels"): labels,
        }
        (folder / f"data_batch_{number}").write_bytes(pickle.dumps(entry, protocol=2))
    test = {key("data"): pattern(test_count).reshape(test_count, -1), key("labels"): list(range(test_count))}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({key("label_names"): names}, protocol=2))
    return folder


def test_cifar10_pickles_are_read_in_channel_planes(tmp_path):
    write_cifar10(tmp_path)
    bundle = load_data("cifar10", data_root=tmp_path, download=False, val_split=0.1)
    assert bundle.classes[:3] == ["airplane", "automobile", "bird"]
    assert bundle.image_size == (32, 32) and bundle.in_chans == 3
    assert bundle.size("train") + bundle.size("val") == 20 and bundle.size("test") == 6
    assert "cifar-10-batches-py" in bundle.source
    # Each row of 3072 bytes is the red plane, then green, then blue, each 32x32 row-major.
    test_images = bundle._images[bundle._split_indices["test"]]
    assert torch.equal(test_images, torch.from_numpy(pattern(6)))
    assert bundle.labels("test").tolist() == [0, 1, 2, 3, 4, 5]


def test_cifar10_python2_pickles_with_byte_keys(tmp_path):
    write_cifar10(tmp_path, python2_keys=True)
    bundle = load_data("cifar10", data_root=tmp_path, download=False)
    assert bundle.size("test") == 6 and bundle.classes[-1] == "truck"


def test_torchvision_reader_refuses_files_that_are_not_the_official_release(tmp_path):
    # Why convlab reads CIFAR itself: torchvision checks each file's MD5 against the release.
    write_cifar10(tmp_path)
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        torchvision.datasets.CIFAR10(str(tmp_path), train=True, download=False)


def test_cifar100_fine_labels_and_names(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train = {
        "data": pattern(200).reshape(200, -1),
        "fine_labels": [k % 100 for k in range(200)],
        "coarse_labels": [k % 20 for k in range(200)],
    }
    test = {
        "data": pattern(5, offset=9).reshape(5, -1),
        "fine_labels": [99, 0, 1, 2, 3],
        "coarse_labels": [0] * 5,
    }
    names = [f"fine{k}" for k in range(100)]
    for name, entry in (("train", train), ("test", test), ("meta", {"fine_label_names": names})):
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    bundle = load_data("cifar100", data_root=tmp_path, download=False, val_split=0.5)
    assert len(bundle.classes) == 100 and bundle.classes[99] == "fine99"
    assert (bundle.size("train"), bundle.size("val"), bundle.size("test")) == (100, 100, 5)
    assert bundle.labels("test").tolist() == [99, 0, 1, 2, 3]


def test_svhn_mat_files_with_zero_labelled_ten(tmp_path):
    folder = tmp_path / "svhn"
    folder.mkdir()
    for name, count in (("train_32x32.mat", 30), ("test_32x32.mat", 7)):
        images = pattern(count, offset=count)  # (N, C, H, W)
        labels = np.arange(count) % 10 + 1  # SVHN stores the digit 0 as 10
        scipy.io.savemat(folder / name, {"X": images.transpose(2, 3, 1, 0), "y": labels.reshape(-1, 1)})
    bundle = load_data("svhn", data_root=tmp_path, download=False)
    assert bundle.size("test") == 7 and bundle.size("train") + bundle.size("val") == 30
    assert bundle.labels("test").tolist() == [1, 2, 3, 4, 5, 6, 7]
    test_images = bundle._images[bundle._split_indices["test"]]
    assert torch.equal(test_images, torch.from_numpy(pattern(7, offset=7)))
    # 3 images per class: round(0.3) = 0, but every class keeps at least one validation image.
    assert torch.bincount(bundle.labels("train"), minlength=10).tolist() == [2] * 10


def test_stl10_binary_files_are_column_major(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    for split, count in (("train", 20), ("test", 4)):
        images = pattern(count, size=96, offset=count)
        # STL-10 stores each channel column by column (MATLAB order): write the transpose.
        (folder / f"{split}_X.bin").write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())
        (folder / f"{split}_y.bin").write_bytes((np.arange(count) % 10 + 1).astype(np.uint8).tobytes())
    (folder / "class_names.txt").write_text(
        "airplane\nbird\ncar\ncat\ndeer\ndog\nhorse\nmonkey\nship\ntruck\n"
    )
    bundle = load_data("stl10", data_root=tmp_path, download=False)
    assert bundle.image_size == (96, 96) and bundle.classes[7] == "monkey"
    assert bundle.labels("test").tolist() == [0, 1, 2, 3]
    test_images = bundle._images[bundle._split_indices["test"]]
    assert torch.equal(test_images, torch.from_numpy(pattern(4, size=96, offset=4)))


def test_stl10_size_mismatch_is_a_clear_error(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    for split in ("train", "test"):
        (folder / f"{split}_X.bin").write_bytes(bytes(3 * 96 * 96 * 2))
        (folder / f"{split}_y.bin").write_bytes(bytes([1, 2, 3]))
    with pytest.raises(ConvlabError, match="not 3 images of 3x96x96"):
        load_data("stl10", data_root=tmp_path, download=False)


def test_digits_from_scikit_learn():
    bundle = load_data("digits", val_split=0.1)
    assert (
        bundle.image_size == (8, 8) and bundle.in_chans == 1 and bundle.classes == [str(d) for d in range(10)]
    )
    # 1,797 images; a fixed stratified 20% test split (round(0.2 n) per class) and 10% of the rest as val.
    assert bundle.size("test") == 359
    assert bundle.size("train") + bundle.size("val") == 1438
    # Per class (178, 182, 177, 183, 181, 182, 181, 179, 174, 180 images) minus test, 10% rounded: 145.
    assert bundle.size("val") == 145
    assert torch.bincount(bundle.labels("test"), minlength=10).tolist() == [
        36,
        36,
        35,
        37,
        36,
        36,
        36,
        36,
        35,
        36,
    ]
    # Values 0..16 scaled to 0..255.
    assert int(bundle._images.max()) == 255 and int(bundle._images.min()) == 0
    assert set(torch.unique(bundle._images).tolist()) <= {round(v * 255 / 16) for v in range(17)}
    # The test split does not depend on the training seed.
    other = load_data("digits", seed=5)
    assert torch.equal(other.labels("test"), bundle.labels("test"))
    assert "scikit-learn" in bundle.source


def test_sizes_a_file_declares_are_checked_before_they_are_allocated(tmp_path):
    # Issue 16: an SVHN header claiming 10^9 images is refused from the headers, before loadmat allocates them.
    import struct

    folder = tmp_path / "svhn"
    folder.mkdir()
    path = folder / "train_32x32.mat"
    scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 5), np.uint8), "y": np.ones((5, 1))})
    data = path.read_bytes()
    for honest, claimed in (((32, 32, 3, 5), (32, 32, 3, 10**9)), ((5, 1), (10**9, 1))):
        assert (
            data.count(struct.pack(f"<{len(honest)}i", *honest)) == 1
        )  # the array's dimensions, as MATLAB v5 writes them
        data = data.replace(
            struct.pack(f"<{len(honest)}i", *honest), struct.pack(f"<{len(claimed)}i", *claimed)
        )
    path.write_bytes(data)
    (folder / "test_32x32.mat").write_bytes(data)
    with pytest.raises(
        ConvlabError,
        match=r"declares 3,072,000,000,000 pixel values in [\d,]+ bytes, more than even a compressed",
    ):
        load_data("svhn", data_root=tmp_path, download=False)


def test_labels_that_are_not_one_class_per_image_are_refused(tmp_path):
    folder = write_cifar10(tmp_path)
    entry = {"data": pattern(4).reshape(4, -1), "labels": [0, 1, 2]}
    (folder / "data_batch_2").write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(
        ConvlabError, match=r"data_batch_2' holds 4 images but 3 labels; expected one per image"
    ):
        load_data("cifar10", data_root=tmp_path, download=False)
    entry["labels"] = [0, 1, 2, 10]
    (folder / "data_batch_2").write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(ConvlabError, match=r"data_batch_2' has labels from 0 to 10; expected 0 to 9"):
        load_data("cifar10", data_root=tmp_path, download=False)

    stl = tmp_path / "stl10_binary"
    stl.mkdir()
    for split in ("train", "test"):
        (stl / f"{split}_X.bin").write_bytes(bytes(3 * 96 * 96 * 3))
        (stl / f"{split}_y.bin").write_bytes(bytes([1, 0, 10]))  # STL-10 stores 1..10; 0 is no class
    with pytest.raises(ConvlabError, match=r"train_y.bin' has labels from 0 to 10; expected 1 to 10"):
        load_data("stl10", data_root=tmp_path, download=False)


def test_a_pickle_declaring_a_terabyte_of_bytes_is_one_sentence_with_a_reason(tmp_path):
    import struct

    folder = write_cifar10(tmp_path)
    # protocol 4, BINBYTES8 of 2^40 bytes, then 3: Python asks for the terabyte (MemoryError, which has no
    # message) or reads what there is (truncated), depending on how the machine overcommits memory
    (folder / "data_batch_3").write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"abc")
    with pytest.raises(
        ConvlabError,
        match=r"Cannot read CIFAR file '.*data_batch_3' \((MemoryError: it declares|pickle data)",
    ):
        load_data("cifar10", data_root=tmp_path, download=False)
