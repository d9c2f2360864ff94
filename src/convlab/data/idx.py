"""The IDX file format of MNIST and Fashion-MNIST (LeCun et al.), plain or gzip-compressed.

Header: two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per
dimension; the values follow in C order (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS").
"""

from __future__ import annotations

import gzip
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


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConvlabError(f"Cannot read IDX file '{path}' ({error.strerror or error}).") from None
    if data[:2] == GZIP_MAGIC:  # gzip is recognised by content, not by the .gz suffix
        try:
            # One zlib call on the whole buffer, faster than gzip.open(...).read()
            # (docs/performance.md#smaller-measured-choices).
            data = zlib.decompress(data, 16 + zlib.MAX_WBITS)
        except zlib.error as error:
            raise ConvlabError(f"IDX file '{path}' is a damaged gzip file ({error}).") from None
    return data


def read_idx(path: str | Path, expect_magic: int | None = None) -> np.ndarray:
    """The array stored in an IDX file (gz or raw), in native byte order.

    ``expect_magic`` (e.g. IMAGES_MAGIC) checks the type and number of dimensions too.
    Raises ConvlabError naming the file for a bad magic number or a size that does not match.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ConvlabError(f"'{path}' is not an IDX file: it has only {len(data)} bytes.")
    (magic,) = struct.unpack(">I", data[:4])
    type_code, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or type_code not in IDX_TYPES or ndim == 0:
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
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ConvlabError(f"IDX file '{path}' ends inside its header ({len(data)} bytes).")
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = IDX_TYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header_size != expected:
        raise ConvlabError(
            f"IDX file '{path}' holds {len(data) - header_size} bytes of values, but its header says "
            f"{' x '.join(map(str, shape))} of {dtype.itemsize} bytes = {expected}; the file is truncated or damaged."
        )
    values = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return values.astype(dtype.newbyteorder("="), copy=True)  # writable, native order


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
