"""Fuzzing image intake (issue 16): whatever bytes an image file holds, ``read_image`` gives a uint8 tensor of the
asked shape or refuses with one UnreadableImageError, never another exception, never a crash.

Valid PNG, JPEG, GIF, BMP, WebP, TIFF and PPM files of several modes are mutated by hypothesis (bits flipped,
bytes overwritten with values that break size fields, cut short, slices repeated, PNG checksums made right again
so that the damage reaches the decoder) and read at the file's own size and at model input sizes small enough
to take the shrinking path (JPEG drafts, block averages). The whole hypothesis run happens in one child
process: a decoder that kills its process (torchvision's PNG decoder does, tests/data/test_untrusted_images.py)
fails the test instead of the test runner, and the input it died on is kept for a regression file in
tests/data/untrusted/.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

FUZZ_IMAGES = r'''
import io, struct, sys, zlib
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from convlab.data.images import UnreadableImageError, read_image

work = Path(sys.argv[1])
LAST = work / "last-input"  # written before each read: the input a crash died on


def encoded(mode, fmt, **options):
    rng = np.random.default_rng(len(mode) + len(fmt))
    ramp = np.linspace(0, 255, 48 * 64).reshape(48, 64)
    base = np.dstack([ramp, ramp.T.reshape(48, 64), rng.integers(0, 256, (48, 64))]).astype(np.uint8)
    image = Image.fromarray(base).convert(mode) if mode not in ("I;16", "F") else Image.fromarray(
        (ramp * 257).astype(np.uint16) if mode == "I;16" else (ramp / 255).astype(np.float32)
    )
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


exif = Image.Exif()
exif[0x0112] = 6
SEEDS = [
    encoded("RGB", "PNG"), encoded("P", "PNG"), encoded("RGBA", "PNG"), encoded("I;16", "PNG"),
    encoded("L", "PNG", exif=exif.tobytes()),
    encoded("RGB", "JPEG", quality=90), encoded("RGB", "JPEG", progressive=True, exif=exif.tobytes()),
    encoded("L", "JPEG"), encoded("CMYK", "JPEG"),
    encoded("P", "GIF"), encoded("RGB", "BMP"), encoded("P", "BMP"),
    encoded("RGB", "WEBP", quality=80), encoded("RGBA", "WEBP", lossless=True),
    encoded("RGB", "TIFF", compression="tiff_lzw"), encoded("F", "TIFF"), encoded("RGB", "PPM"),
]
INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff",
               b"\x00\x00\x40\x00", b"\x00\x01\x00\x00", b"\xff\xfe"]


def fix_png_checksums(data):
    """Each chunk's CRC made right again, so that PIL's check passes and the damage reaches the decoder."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    out, at = bytearray(data[:8]), 8
    while at + 12 <= len(data):
        length = struct.unpack(">I", data[at : at + 4])[0]
        end = at + 12 + length
        if end > len(data):
            break
        body = data[at + 4 : at + 8 + length]
        out += data[at : at + 8 + length] + struct.pack(">I", zlib.crc32(body))
        at = end
    return bytes(out + data[at:])


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "flip", "overwrite", "overwrite", "cut", "repeat"]))
        # half the changes fall in the first 64 bytes, where the headers and their size fields are
        at = draw(st.one_of(st.integers(0, min(63, len(data) - 1)), st.integers(0, len(data) - 1)))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            value = draw(st.sampled_from(INTERESTING))
            data[at : at + len(value)] = value
        elif kind == "cut":
            del data[max(1, at):]
        else:
            length = draw(st.integers(1, 64))
            data[at:at] = data[at : at + length] * draw(st.integers(1, 8))
        if not data:
            data = bytearray(b"\x00")
    data = bytes(data)
    return fix_png_checksums(data) if draw(st.booleans()) else data


READS = st.sampled_from([(None, None, "squash"), (3, (4, 4), "crop"), (1, (4, 6), "squash"), (3, (16, 16), "crop"),
                         (3, (40, 30), "squash")])
reads = 0


@settings(max_examples=int(sys.argv[2]), deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(mutated(), READS)
def fuzz(data, read):
    global reads
    channels, size, rule = read
    LAST.write_bytes(data)
    (work / "image").write_bytes(data)
    try:
        pixels = read_image(work / "image", channels, size, rule)
    except UnreadableImageError as error:
        assert "\n" not in str(error) and str(error).startswith("Cannot read image"), str(error)
        return
    reads += 1
    assert pixels.dtype == torch.uint8 and pixels.dim() == 3 and pixels.shape[0] in ((1, 3) if channels is None else (channels,))
    if size is not None:
        assert tuple(pixels.shape[1:]) == size


fuzz()
print(reads)
'''

EXAMPLES = 600  # about 15 s on one core; derandomized, so every run tries the same inputs


def test_read_image_gives_the_asked_shape_or_one_clean_error_whatever_the_bytes(tmp_path):
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FUZZ_IMAGES), str(tmp_path), str(EXAMPLES)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    last = tmp_path / "last-input"
    assert child.returncode >= 0, (
        f"a decoder killed the process (signal {-child.returncode}) on the input in {last}; keep it in "
        f"tests/data/untrusted/ and make read_image refuse it cleanly"
    )
    assert child.returncode == 0, child.stderr[-4000:]
    decoded = int(child.stdout.split()[-1])
    assert 0.1 * EXAMPLES < decoded < 0.95 * EXAMPLES  # both outcomes were tried many times
