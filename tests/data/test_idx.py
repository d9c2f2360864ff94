"""IDX files (MNIST's format): reading, writing, bad files, and idx: sources."""

import gzip
import struct

import numpy as np
import pytest
import torch

from convlab.data import load_data, read_idx, write_idx
from convlab.data.idx import IMAGES_MAGIC, LABELS_MAGIC
from convlab.errors import ConvlabError


def write_idx_pair(folder, prefix, images, labels):
    """Write images (N, H, W) uint8 and labels (N,) as gzip IDX files; return their paths."""
    images_path = write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", np.asarray(images, dtype=np.uint8))
    labels_path = write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.asarray(labels, dtype=np.uint8))
    return images_path, labels_path


def test_reads_a_file_written_byte_by_byte_from_the_specification(tmp_path):
    # LeCun's description: 0x00000803, then N, rows, columns as big-endian uint32, then the pixels.
    pixels = bytes(range(2 * 3 * 4))
    (tmp_path / "images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, 2, 3, 4) + pixels)
    array = read_idx(tmp_path / "images-idx3-ubyte", IMAGES_MAGIC)
    assert array.shape == (2, 3, 4) and array.dtype == np.uint8
    assert array[1, 2, 3] == 23 and array[0, 1, 0] == 4
    # A big-endian int32 file (type code 0x0C) comes back in native order.
    (tmp_path / "ints").write_bytes(
        struct.pack(">BBBBI", 0, 0, 0x0C, 1, 3) + struct.pack(">iii", -1, 256, 70000)
    )
    assert read_idx(tmp_path / "ints").tolist() == [-1, 256, 70000]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["values.idx", "values.idx.gz"])
def test_round_trip_of_every_idx_type(tmp_path, dtype, name):
    array = (np.arange(2 * 5 * 3).reshape(2, 5, 3) - 7).astype(dtype)
    write_idx(tmp_path / name, array)
    assert (tmp_path / name).read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\x00\x00")
    back = read_idx(tmp_path / name)
    assert back.dtype == array.dtype and back.shape == (2, 5, 3)
    assert np.array_equal(back, array)


def test_wrong_magic_number_is_a_clear_error(tmp_path):
    path = tmp_path / "labels-idx1-ubyte.gz"
    write_idx(path, np.zeros(5, dtype=np.uint8))
    with pytest.raises(ConvlabError, match=r"magic number 0x00000801 .*expected 0x00000803 \(images\)"):
        read_idx(path, IMAGES_MAGIC)
    (tmp_path / "notes.gz").write_bytes(gzip.compress(b"PK\x03\x04 this is a zip, not idx"))
    with pytest.raises(ConvlabError, match="notes.gz' is not an IDX file: magic number 0x504B0304"):
        read_idx(tmp_path / "notes.gz")


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "images"
    write_idx(path, np.zeros((10, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ConvlabError, match=r"holds 7740 bytes of values, but its header says 10 x 28 x 28"):
        read_idx(path, IMAGES_MAGIC)


def test_sizes_are_checked_against_the_file_before_values_are_read(tmp_path):
    # Issue 16: a header claiming 10^9 images of 10^4 x 10^4 is refused from its 16 bytes, before any allocation.
    path = tmp_path / "huge.gz"
    path.write_bytes(gzip.compress(struct.pack(">IIII", 0x803, 10**9, 10**4, 10**4) + bytes(100)))
    with pytest.raises(
        ConvlabError, match=r"declares 1000000000 x 10000 x 10000 values of 1 byte = 100,000,000,000,000,000"
    ):
        read_idx(path, IMAGES_MAGIC)
    # Within the limit, a gzip file is inflated only as far as its header says, then must end there.
    values = struct.pack(">II", 0x801, 3) + bytes([1, 2, 3])
    (tmp_path / "short.gz").write_bytes(gzip.compress(values[:-1]))
    with pytest.raises(
        ConvlabError, match=r"holds 2 bytes of values, but its header says 3 values of 1 byte"
    ):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "long.gz").write_bytes(gzip.compress(values + b"\x04"))
    with pytest.raises(ConvlabError, match=r"holds more values than its header says \(3 values"):
        read_idx(tmp_path / "long.gz")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(values)[:-4])
    with pytest.raises(
        ConvlabError, match=r"damaged gzip file: the compressed stream is cut off before its end"
    ):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "appended.gz").write_bytes(gzip.compress(values) + gzip.compress(values))
    with pytest.raises(
        ConvlabError, match=r"has bytes after the end of its gzip stream; an IDX file holds one"
    ):
        read_idx(tmp_path / "appended.gz")
    (tmp_path / "exact.gz").write_bytes(gzip.compress(values))
    assert read_idx(tmp_path / "exact.gz").tolist() == [1, 2, 3]


def test_real_fashion_mnist_header():
    labels = read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", LABELS_MAGIC)
    assert labels.shape == (10000,) and labels[:5].tolist() == [9, 2, 1, 1, 6]


def test_idx_source_with_train_and_test_pairs(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    images = rng.integers(0, 256, (60, 12, 10), dtype=np.uint8)
    train = write_idx_pair(tmp_path, "train", images, labels)
    test = write_idx_pair(tmp_path, "t10k", images[:9], labels[:9])
    bundle = load_data(f"idx:{train[0]},{train[1]},{test[0]},{test[1]}", val_split=0.25)
    assert bundle.classes == ["0", "1", "2"]
    assert (bundle.size("train"), bundle.size("val"), bundle.size("test")) == (45, 15, 9)
    assert bundle.image_size == (12, 10) and bundle.in_chans == 1
    assert bundle.mean[0] == pytest.approx(images.mean() / 255, abs=0.01)
    batch, batch_labels = next(iter(bundle.loader("test", 9)))
    unnormalised = batch * bundle.std[0] + bundle.mean[0]
    assert torch.allclose(unnormalised[:, 0] * 255, torch.from_numpy(images[:9]).float(), atol=1e-3)
    assert batch_labels.tolist() == labels[:9].tolist()


def test_idx_source_errors(tmp_path):
    images, labels = write_idx_pair(tmp_path, "train", np.zeros((4, 5, 5)), np.zeros(3))
    with pytest.raises(ConvlabError, match="hold 4 images but labels .* hold 3"):
        load_data(f"idx:{images},{labels}")
    with pytest.raises(ConvlabError, match="names 1 files; give idx:TRAIN_IMAGES,TRAIN_LABELS"):
        load_data(f"idx:{images}")
