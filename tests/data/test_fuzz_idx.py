"""Fuzzing the IDX reader (issue 16): whatever bytes a file holds, read_idx gives the array its header declares or
refuses with one ConvlabError, never another exception and never an allocation beyond what the file holds.

The inputs that once broke it are kept in tests/data/untrusted/ (``idx-*``) and read on every run."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convlab.data.idx import IDX_TYPES, read_idx
from convlab.errors import ConvlabError

UNTRUSTED = Path(__file__).parent / "untrusted"
# Python allocations (numpy's included, which tracemalloc sees) while reading one fuzzed file of at most a few
# KB: the values it really holds, copies of them, and zlib's and numpy's working buffers. A header believed
# would ask for up to 2^32^n bytes.
ALLOCATION_BOUND = 4 * 2**20
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

dimension = st.one_of(
    st.integers(0, 6), st.integers(0, 2**32 - 1), st.sampled_from([2**16, 2**31, 2**32 - 1])
)


@st.composite
def idx_files(draw) -> tuple[bytes, tuple[int, ...] | None]:
    """Bytes of a file that is or resembles IDX, and the shape a reader must return (None: must be refused)."""
    type_code = draw(st.one_of(st.sampled_from(sorted(IDX_TYPES)), st.integers(0, 255)))
    ndim = draw(st.one_of(st.integers(0, 4), st.integers(0, 255)))
    shape = tuple(draw(st.lists(dimension, min_size=ndim, max_size=ndim)))
    prefix = draw(st.sampled_from([b"\x00\x00", b"\x00\x00", b"\x00\x00", b"\x1f\x8b", b"\x00\x01"]))
    header = prefix + bytes([type_code, ndim]) + struct.pack(f">{ndim}I", *shape)
    header = header[: draw(st.integers(0, len(header)))] if draw(st.booleans()) else header  # cut short
    declared = (
        int(np.prod(shape, dtype=object)) * IDX_TYPES[type_code].itemsize if type_code in IDX_TYPES else 0
    )
    length = declared if declared <= 4096 else draw(st.integers(0, 4096))
    length = max(0, length + draw(st.sampled_from([0, 0, 0, -1, 1, -7, 13])))  # exact, or truncated, or junk
    values = draw(st.binary(min_size=min(length, 64), max_size=min(length, 64)))
    data = header + (values * (length // max(len(values), 1) + 1))[:length] if values else header
    if draw(st.booleans()):
        data = gzip.compress(data, mtime=0)
        cut = draw(st.sampled_from([0, 0, 1, 4, 9]))  # a gzip stream cut off, in its trailer or its data
        data = data[: len(data) - cut]
        data += draw(st.sampled_from([b"", b"", b"\x00", b"junk after the stream"]))
    return data, shape


def read_checked(path: Path) -> np.ndarray | None:
    """read_idx(path), or None if it refused; fails the test for any other exception or a large allocation."""
    tracemalloc.start()
    try:
        array = read_idx(path)
    except ConvlabError as error:
        message = str(error)
        assert "\n" not in message and str(path) in message
        array = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < max(ALLOCATION_BOUND, 8 * path.stat().st_size), f"{peak:,} bytes allocated"
    return array


@FUZZ
@given(idx_files())
def test_read_idx_returns_the_declared_array_or_one_convlab_error(tmp_path, sample):
    data, shape = sample
    path = tmp_path / "fuzzed-idx"
    path.write_bytes(data)
    array = read_checked(path)
    if array is not None:
        assert array.shape == shape and array.flags.writeable
        type_code = data[2] if data[:2] == b"\x00\x00" else gzip.decompress(data)[2]
        assert array.dtype == IDX_TYPES[type_code].newbyteorder("=")  # native order


@FUZZ
@given(st.binary(max_size=512))
def test_read_idx_of_arbitrary_bytes_is_an_array_or_one_convlab_error(tmp_path, data):
    path = tmp_path / "arbitrary"
    path.write_bytes(data)
    read_checked(path)


# Each idx-* file in tests/data/untrusted/ and what the reader of commit e4f215c did with it. The first three
# were found by the fuzzer above; the others are issue 16's header and the gzip policies (a stream must end
# where the header's values do, and the file with it).
BROKE = {
    "idx-211-dimensions": "ValueError: maximum supported dimension for an ndarray is currently 64, found 211",
    "idx-array-too-big": "ValueError: array is too big (dimensions beside a 0 that overflow numpy's sizes)",
    "idx-product-overflows-int64": "ValueError: cannot reshape (the dimensions' int64 product wrapped to 0)",
    "idx-header-claims-1e17-bytes.gz": "refused only after inflating the whole stream, however large",
    "idx-gzip-cut-in-trailer.gz": "refused (zlib: incomplete or truncated stream)",
    "idx-junk-after-gzip-stream.gz": "read: the bytes after the gzip stream were ignored",
    "idx-values-beyond-the-header.gz": "refused (4 bytes of values for a header of 3)",
}


def test_every_untrusted_idx_file_says_what_it_broke():
    assert sorted(path.name for path in UNTRUSTED.glob("idx-*")) == sorted(BROKE)


@pytest.mark.parametrize("name", sorted(BROKE))
def test_inputs_that_once_broke_the_reader_are_refused(name):
    assert read_checked(UNTRUSTED / name) is None
