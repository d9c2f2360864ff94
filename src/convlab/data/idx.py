"""The IDX file format of MNIST and Fashion-MNIST (LeCun et al.), plain or gzip-compressed.

Header: two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per
dimension; the values follow in C order (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS").
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from convlab.errors import ConvlabError

# Type code -> element type, big-endian as the format stores it (LeCun's table).
IDX_TYPES = {
    0x08: np.dtype(">u1"),  # unsigned byte
    0x09: np.dtype(">i1"),  # signed byte
    0x0B: np.dtype(">i2"),  # short
    0x0C: np.dtype(">i4"),  # int
    0x0D: np.dtype(">f4"),  # float
    0x0E: np.dtype(">f8"),  # double
}
IMAGES_MAGIC = 0x00000803  # 2051: uint8, 3 dimensions (N, rows, columns)
LABELS_MAGIC = 0x00000801  # 2049: uint8, 1 dimension (N)
GZIP_MAGIC = b"\x1f\x8b"
# The largest array an IDX header may declare. IDX files are read whole, and a header is untrusted: it
# could claim 10^9 images of 10^4 x 10^4 (10^17 bytes). The largest published IDX set, EMNIST ByClass, holds
# 698k 28 x 28 images (547 MB); 8 GiB is fifteen times that, and no allocation ever exceeds what the file
# really holds besides (the values are read in bounded chunks, never allocated from the header).
MAX_IDX_BYTES = 8 * 2**30
# numpy's arrays have at most 32 dimensions in numpy 1 (64 in numpy 2); MNIST's files have 1 or 3.
MAX_IDX_DIMS = 32
# Compressed bytes read per step: large steps keep zlib's output in few, large pieces (one zlib call on the
# whole buffer measured about 1.5x faster than gzip.open(...).read(): docs/performance.md).
READ_CHUNK = 16 * 2**20


class _Plain:
    """An uncompressed IDX file: ``read(n)`` gives at most n bytes, ``remaining`` what the file still holds."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def read(self, size: int) -> bytearray:
        buffer = bytearray(
            size
        )  # only ever the header's few bytes, or values the file's length has confirmed
        del buffer[self.handle.readinto(buffer) :]
        return buffer

    def remaining(self) -> int:
        return os.fstat(self.handle.fileno()).st_size - self.handle.tell()


class _Gzip:
    """A gzip-compressed IDX file, inflated as it is read: ``read(n)`` inflates at most n bytes, so a header
    that lies about its size costs no more memory than the stream really holds."""

    def __init__(self, handle, path: Path) -> None:
        self.handle, self.path = handle, path
        self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def read(self, size: int) -> bytearray:
        out = bytearray()
        while len(out) < size and not self.inflater.eof:
            # no more than the file has left: a buffered read(n) sets aside n bytes before it reads any
            left = os.fstat(self.handle.fileno()).st_size - self.handle.tell()
            data = self.inflater.unconsumed_tail or self.handle.read(max(0, min(READ_CHUNK, left)))
            if not data:
                break
            try:
                out += self.inflater.decompress(data, size - len(out))
            except zlib.error as error:
                raise ConvlabError(f"IDX file '{self.path}' is a damaged gzip file ({error}).") from None
        return out

    def finish(self) -> None:
        """Refuse a stream that stops short of gzip's end (a truncated download) or has bytes after it."""
        if not self.inflater.eof:
            raise ConvlabError(
                f"IDX file '{self.path}' is a damaged gzip file: the compressed stream is cut off before its end."
            )
        # Trailing bytes after the gzip stream are refused, not skipped: the published files and write_idx
        # hold one stream, and bytes after it are a damaged download or another file appended.
        if self.inflater.unused_data or self.handle.read(1):
            raise ConvlabError(
                f"IDX file '{self.path}' has bytes after the end of its gzip stream; an IDX file holds one stream."
            )


def _open(handle, path: Path) -> _Plain | _Gzip:
    start = handle.read(2)
    handle.seek(0)
    return _Gzip(handle, path) if start == GZIP_MAGIC else _Plain(handle)  # by content, not by the .gz suffix


def read_idx(path: str | Path, expect_magic: int | None = None) -> np.ndarray:
    """The array stored in an IDX file (gz or raw), in native byte order.

    ``expect_magic`` (e.g. IMAGES_MAGIC) checks the type and number of dimensions too.
    Raises ConvlabError naming the file for a bad magic number or a size that does not match. The header is
    checked before any value is read, and no more memory than the file really holds is allocated: a header's
    size is compared with the file's length (for gzip, with the values inflated, read in bounded chunks).
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return _read(_open(handle, path), path, expect_magic)
    except OSError as error:
        raise ConvlabError(f"Cannot read IDX file '{path}' ({error.strerror or error}).") from None


def _read(source: _Plain | _Gzip, path: Path, expect_magic: int | None) -> np.ndarray:
    start = source.read(4)
    if len(start) < 4:
        raise ConvlabError(f"'{path}' is not an IDX file: it has only {len(start)} bytes.")
    (magic,) = struct.unpack(">I", start)
    type_code, ndim = start[2], start[3]
    if start[:2] != b"\x00\x00" or type_code not in IDX_TYPES or ndim == 0:
        raise ConvlabError(
            f"'{path}' is not an IDX file: magic number 0x{magic:08X} (expected 0x0000TTDD with a type "
            f"code TT in {', '.join(f'{t:02X}' for t in IDX_TYPES)} and DD dimensions, e.g. 0x{IMAGES_MAGIC:08X} "
            f"for images, 0x{LABELS_MAGIC:08X} for labels)."
        )
    if expect_magic is not None and magic != expect_magic:
        raise ConvlabError(
            f"IDX file '{path}' has magic number 0x{magic:08X} ({ndim} dimensions); expected 0x{expect_magic:08X} "
            f"({'images' if expect_magic == IMAGES_MAGIC else 'labels' if expect_magic == LABELS_MAGIC else 'another type'})."
        )
    if ndim > MAX_IDX_DIMS:
        raise ConvlabError(
            f"IDX file '{path}' declares {ndim} dimensions; convlab reads arrays of 1 to {MAX_IDX_DIMS} dimensions."
        )
    dims = source.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise ConvlabError(f"IDX file '{path}' ends inside its header ({4 + len(dims)} bytes).")
    shape = struct.unpack(f">{ndim}I", dims)
    dtype = IDX_TYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize  # Python integers: 255 dimensions of 2^32 do not overflow
    unit = "byte" if dtype.itemsize == 1 else "bytes"
    declared = f"{' x '.join(map(str, shape))} values of {dtype.itemsize} {unit} = {expected:,} bytes"
    # The other dimensions count even beside a 0: numpy refuses a shape whose sizes overflow, empty or not.
    if math.prod(d or 1 for d in shape) * dtype.itemsize > MAX_IDX_BYTES:
        raise ConvlabError(
            f"IDX file '{path}' declares {declared}; convlab reads IDX arrays whose dimensions multiply to "
            f"at most {MAX_IDX_BYTES:,} bytes."
        )
    if isinstance(source, _Plain) and source.remaining() != expected:
        raise ConvlabError(
            f"IDX file '{path}' holds {source.remaining()} bytes of values, but its header says {declared}; "
            "the file is truncated or damaged."
        )
    values = source.read(expected)
    if len(values) != expected:
        raise ConvlabError(
            f"IDX file '{path}' holds {len(values)} bytes of values, but its header says {declared}; "
            "the file is truncated or damaged."
        )
    if isinstance(source, _Gzip):
        if source.read(1):  # values beyond the header's count: refused, as an uncompressed file's are above
            raise ConvlabError(
                f"IDX file '{path}' holds more values than its header says ({declared}); the file is damaged."
            )
        source.finish()
    array = np.frombuffer(values, dtype=dtype).reshape(shape)  # a bytearray's: writable, no copy
    native = dtype.newbyteorder("=")
    return array if array.dtype == native else array.astype(native)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``compress`` or the name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_TYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ConvlabError(
            f"IDX cannot store {array.dtype} values; accepted: uint8, int8, int16, int32, float32, float64."
        )
    header = struct.pack(">BBBB", 0, 0, codes[native], array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = header + array.astype(IDX_TYPES[codes[native]], copy=False).tobytes()
    if compress or (compress is None and path.suffix == ".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.write_bytes(data)
    return path
