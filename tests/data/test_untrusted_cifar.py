"""CIFAR pickles are read by an allow-list unpickler: a planted batch that would run code is refused and runs
nothing, while batches of plain data (Python 2 originals, any protocol) still load."""

import io
import os
import pickle

import numpy as np
import pytest

from convlab.data import load_data
from convlab.data.readers import _CifarUnpickler
from convlab.errors import ConvlabError

from .test_readers import write_cifar10


class WritesMarker:
    """Unpickling this object calls os.system: the classic pickle payload."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class OpensMarker:
    """The same through a builtin rather than a module function."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("payload", [WritesMarker, OpensMarker])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_a_planted_batch_is_refused_and_runs_nothing(tmp_path, payload, protocol):
    folder = write_cifar10(tmp_path)
    marker = tmp_path / "marker"
    entry = {"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 3], "x": payload(marker)}
    (folder / "data_batch_1").write_bytes(pickle.dumps(entry, protocol=protocol))
    with pytest.raises(ConvlabError) as caught:
        load_data("cifar10", data_root=tmp_path, download=False)
    message = str(caught.value)
    assert message.startswith(
        f"CIFAR file '{folder / 'data_batch_1'}' is refused without being run: it names "
    )
    assert "plain data from CIFAR pickles (dicts, lists, strings, numbers, numpy arrays)" in message
    assert "\n" not in message and message.count(". ") == 0
    assert not marker.exists()


def test_a_planted_meta_file_is_refused_too(tmp_path):
    folder = write_cifar10(tmp_path)
    marker = tmp_path / "marker"
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": WritesMarker(marker)}, protocol=2))
    with pytest.raises(ConvlabError, match="batches.meta' is refused without being run"):
        load_data("cifar10", data_root=tmp_path, download=False)
    assert not marker.exists()


def _load(raw):
    return _CifarUnpickler(io.BytesIO(raw), encoding="latin1").load()


def _short_string(value):
    return b"U" + bytes([len(value)]) + value


def test_a_python2_batch_as_in_the_release_loads():
    # The opcodes Python 2's cPickle wrote for the release: str as SHORT_BINSTRING, the array through
    # numpy.core.multiarray._reconstruct and a dtype whose state is a tuple.
    data = bytes(range(6))
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + _short_string(b"b")
        + b"\x87R(K\x01K\x02K\x03\x86cnumpy\ndtype\n"
        + _short_string(b"u1")
        + b"K\x00K\x01\x87R(K\x03"
        + _short_string(b"|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
        + _short_string(data)
        + b"tb"
    )
    raw = b"\x80\x02}(" + _short_string(b"data") + array + _short_string(b"labels") + b"](K\x01K\x02eu."
    entry = _load(raw)
    assert entry["labels"] == [1, 2]
    assert entry["data"].dtype == np.uint8 and entry["data"].tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_of_every_protocol_loads(protocol):
    entry = {
        "data": np.arange(12, dtype=np.uint8).reshape(2, 6),
        b"labels": [np.int64(3), 4],
        "fortran": np.asfortranarray(np.arange(6, dtype=np.uint8).reshape(2, 3)),
        "name": b"batch",
    }
    loaded = _load(pickle.dumps(entry, protocol=protocol))
    assert np.array_equal(loaded["data"], entry["data"]) and np.array_equal(
        loaded["fortran"], entry["fortran"]
    )
    assert loaded[b"labels"] == [3, 4] and loaded["name"] == b"batch"


@pytest.mark.parametrize(
    "value",
    [np.array([1, "a"], dtype=object), np.array([(1, "a")], dtype=[("n", "i4"), ("o", "O")])],
    ids=["object", "struct-with-object"],
)
def test_object_arrays_are_refused(value):
    with pytest.raises(pickle.UnpicklingError, match="object dtype"):
        _load(pickle.dumps({"data": value}, protocol=2))


def test_a_forged_array_shape_allocates_nothing():
    raw = pickle.dumps(np.zeros(2, np.uint8), protocol=2)
    huge = b"\x8a\x07" + (10**15).to_bytes(7, "little") + b"\x85"  # LONG1 10^15, TUPLE1
    assert raw.count(b"K\x00\x85") == 1  # _reconstruct's (0,) shape argument
    # _reconstruct asked for 10^15 elements builds an empty array; the state then gives the real two.
    assert np.array_equal(_load(raw.replace(b"K\x00\x85", huge)), np.zeros(2, np.uint8))
    # A state claiming 10^15 elements for two bytes of data is refused by numpy's own size check.
    assert raw.count(b"K\x02\x85") == 1  # the state's (2,) shape
    with pytest.raises(ValueError):
        _load(raw.replace(b"K\x02\x85", huge))
