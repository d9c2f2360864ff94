"""Image files to uint8 tensors: decoding in any mode, channel and size conversion, normalisation.

torchvision's decoder (libjpeg-turbo) does JPEG at full size; PIL does the rest, JPEG scaled down while
it decodes, and the modes torchvision cannot (32-bit ``I``, ``F``). Both turn the pixels upright by the
file's EXIF orientation, as a photo viewer shows them: a phone stores a portrait photo as landscape
pixels plus an Orientation tag. ``decode_image_file`` is the one decoder every reader uses (training, the
folder cache, ``data info``, predict, serve, viz), and ``read_image`` the one way to a model's input size.

Memory: every reader refuses an image of more than MAX_PIXELS from its header, before decoding. A read
at a model's input size decodes a much larger image smaller (a JPEG at 1/2..1/8 scale; other formats
averaged in blocks a strip at a time), so that one decode holds PIL's raster of the file (at most 4
bytes a pixel, about 341 MiB at the limit; a JPEG's at its scaled size) and little else
(tests/data/test_decode_memory.py measures both).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from convlab.choices import RESIZE_RULES
from convlab.errors import ConvlabError, unknown_name_error

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
# PIL's own decompression-bomb threshold (Image.MAX_IMAGE_PIXELS, about 89.5 megapixels): the most pixels any
# reader decodes, checked from the header before decoding. serve takes another (--max-megapixels); its
# default, convlab.serve.limits.DEFAULT_MAX_PIXELS, is this number (limits.py stays torch-free for --help).
MAX_PIXELS = 89_478_485
BOMB_GUARD = "(a guard against decompression bombs)"
# PIL identifies JPEG (and MPO, the JPEG phones write with a second picture inside) by the file's bytes, not its
# name. At full size they go to torchvision's decoder (libjpeg-turbo, the fast one); its PNG decoder kills the
# process (SIGSEGV) on most corrupted PNGs, where PIL raises a clean error (tests/data/test_untrusted_images.py
# keeps such files), so PNG and every other format go to PIL.
JPEG_FORMATS = ("JPEG", "MPO")
# An image at least this many times the size it is brought to is decoded smaller by whole factors, to no less
# than this many times that size: the antialiased resize then works on a small copy and gives nearly the same
# pixels (PIL's docs find a gap of 3 indistinguishable from resampling the full image). Measured against the
# full decode on 4000 x 3000 photos: mean absolute difference 0.06-0.31 of 255 at 224 x 224, up to 1.4 at
# 32 x 32, no pixel more than 6 apart (tests/data/test_decode_memory.py).
REDUCING_GAP = 3
# PIL holds an image in blocks of 16 MiB, which glibc serves from the heap of the thread that asks and keeps
# there when the image is freed, for that thread's next use: decoded one after another on 4 threads, 4 images of
# 89 MP took 1074 MiB where one raster is 340 MiB. Blocks larger than glibc's largest mmap threshold (32 MiB)
# are mapped for each image and given back to the system when it is freed. PILLOW_BLOCK_SIZE, if set, is the
# user's choice and stays.
PIL_BLOCK_BYTES = 64 * 2**20
if "PILLOW_BLOCK_SIZE" not in os.environ:
    Image.core.set_block_size(PIL_BLOCK_BYTES)
# Pixels converted to 8 bits at a time: a strip's copies take a few MB whatever the size of the image.
STRIP_PIXELS = 2**20
# PIL modes that hold one (gray) channel; every other mode is converted to RGB.
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
# ITU-R BT.601 luma, the weights PIL's convert("L") and libjpeg use, in thousandths so that the
# integer arithmetic below is exact: a gray image expanded to RGB converts back unchanged.
LUMA_601 = (299, 587, 114)
EXIF_ORIENTATION = 0x0112  # the EXIF tag; values 5-8 turn the image a quarter, so its sides swap
QUARTER_TURNS = (5, 6, 7, 8)
# EXIF orientation -> how the stored (..., H, W) pixels turn upright: PIL's ImageOps.exif_transpose, on tensors.
ORIENTATIONS = {
    2: lambda x: x.flip(-1),  # mirrored left to right
    3: lambda x: x.flip(-2, -1),  # turned half round
    4: lambda x: x.flip(-2),  # mirrored top to bottom
    5: lambda x: x.transpose(-2, -1),  # mirrored along the main diagonal
    6: lambda x: x.rot90(-1, (-2, -1)),  # shown turned a quarter clockwise
    7: lambda x: x.transpose(-2, -1).flip(-2, -1),  # mirrored along the other diagonal
    8: lambda x: x.rot90(1, (-2, -1)),  # shown turned a quarter anticlockwise
}


class UnreadableImageError(ConvlabError):
    """An image file that cannot be read or decoded; ``reason`` is the short cause (for ``skipped``)."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path, self.reason = str(path), display_path(reason).rstrip(".")
        super().__init__(f"Cannot read image '{display_path(path)}': {self.reason}.")


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def to_channels(image: torch.Tensor, in_chans: int) -> torch.Tensor:
    """uint8 (..., C, H, W) with C in {1, 3} to ``in_chans`` channels: gray -> RGB by repetition,
    RGB -> gray by ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B, rounded)."""
    channels = image.shape[-3]
    if channels == in_chans:
        return image
    if channels == 1 and in_chans == 3:
        return image.expand(*image.shape[:-3], 3, *image.shape[-2:]).contiguous()
    if channels == 3 and in_chans == 1:
        red, green, blue = image.to(torch.int32).unbind(-3)
        luma = (LUMA_601[0] * red + LUMA_601[1] * green + LUMA_601[2] * blue + 500) // 1000
        return luma.unsqueeze(-3).to(torch.uint8)
    raise ConvlabError(
        f"Cannot convert {channels}-channel images to {in_chans} channels; channels must be 1 or 3."
    )


def crop_box(height: int, width: int, image_size: Sequence[int]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the largest centred box of ``image_size``'s proportions in an image of
    ``height`` x ``width``: what the crop rule keeps before it resizes."""
    target_height, target_width = int(image_size[0]), int(image_size[1])
    if width * target_height > height * target_width:  # wider than the target: cut left and right
        box_height, box_width = height, max(1, round(height * target_width / target_height))
    else:  # taller (or the same proportions): cut top and bottom
        box_height, box_width = max(1, round(width * target_height / target_width)), width
    return (height - box_height) // 2, (width - box_width) // 2, box_height, box_width


def resize_image(images: torch.Tensor, image_size: Sequence[int], rule: str = "squash") -> torch.Tensor:
    """uint8 (..., C, H, W) to (..., C, *image_size) with antialiased bilinear resampling, by ``rule``:

    - ``squash``: resize to exactly ``image_size`` (proportions not kept);
    - ``crop``: keep the centred box of ``image_size``'s proportions, then resize it, which is the
      shorter side scaled to the size and the centre kept (torchvision's Resize + CenterCrop). Cutting
      first resamples only the pixels that are kept, so crop costs no more than squash.
    """
    if rule not in RESIZE_RULES:
        raise unknown_name_error("resize rule", str(rule), RESIZE_RULES)
    size = [int(image_size[0]), int(image_size[1])]
    if rule == "crop":
        top, left, height, width = crop_box(images.shape[-2], images.shape[-1], size)
        images = images[..., top : top + height, left : left + width]
    if list(images.shape[-2:]) == size:
        return images.contiguous()
    return TF.resize(images, size, antialias=True)


def display_path(path: str | os.PathLike) -> str:
    """``path`` as text any terminal or file can hold: bytes of a name that are not UTF-8 (Python keeps them
    as lone surrogates) become ``\\xNN`` escapes, so that a message, a log or skipped.txt never fails to
    encode it. Other names are unchanged."""
    text = os.fsdecode(path)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no file-system name decodes to
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


@cache
def pil_formats() -> dict[str, str]:
    """PIL format -> file suffix, for the formats convlab reads (IMAGE_EXTENSIONS). Every file is opened as one
    of these only: PIL would otherwise take bytes for any of its ~40 formats (TGA accepts almost anything) and
    run their decoders (EPS runs Ghostscript) on a file named .png."""
    Image.init()  # registers every plugin, so that the extension table is complete
    formats: dict[str, str] = {}
    for suffix in IMAGE_EXTENSIONS:
        name = Image.registered_extensions().get(suffix)
        if name is not None:
            formats.setdefault(name, suffix)
    return formats


def too_many_pixels(width: int, height: int, max_pixels: int) -> str | None:
    """Why an image of width x height is not decoded (None when it is within ``max_pixels``)."""
    if width * height <= max_pixels:
        return None
    return f"{width} x {height} = {width * height:,} pixels, more than the {max_pixels:,} convlab decodes {BOMB_GUARD}"


def _open(path: Path, max_pixels: int):
    """The PIL image of ``path`` with its header read and nothing decoded; refused above ``max_pixels``."""
    try:
        with warnings.catch_warnings():
            # PIL warns above its own limit and refuses at twice it; the check below is the one that counts.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path, formats=list(pil_formats()))
    except Image.DecompressionBombError as error:
        # Refused before PIL gives the sides; its message holds the count. Above twice its own limit PIL opens
        # nothing, whatever ``max_pixels`` says.
        count = re.search(r"\((\d+) pixels\)", str(error))
        if count is None:
            raise
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        raise UnreadableImageError(
            path, f"{int(count[1]):,} pixels, more than the {limit:,} convlab decodes {BOMB_GUARD}"
        ) from None
    refusal = too_many_pixels(*image.size, max_pixels)
    if refusal is not None:
        image.close()
        raise UnreadableImageError(path, refusal)
    return image


def reduction(height: int, width: int, image_size: Sequence[int], rule: str) -> tuple[int, int]:
    """(ky, kx): the whole factors by which a height x width image may shrink before ``resize_image`` brings it to
    ``image_size`` by ``rule``, keeping at least REDUCING_GAP times the size in what the rule keeps; (1, 1) when
    it is not that much larger. Crop keeps proportions, so one factor for both sides; squash shrinks each alone."""
    if rule not in RESIZE_RULES:
        raise unknown_name_error("resize rule", str(rule), RESIZE_RULES)
    down = height // (REDUCING_GAP * int(image_size[0])), width // (REDUCING_GAP * int(image_size[1]))
    if rule == "crop":
        down = (min(down),) * 2
    return max(1, down[0]), max(1, down[1])


def _orientation(image) -> int:
    """The EXIF orientation (1: upright) from the header. A PNG's EXIF may follow its pixels, and PIL would
    decode them all to find it: PNGs count as upright here until they are decoded."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    return int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)


def _stored_size(image_size: Sequence[int] | None, orientation: int) -> Sequence[int] | None:
    """``image_size`` (of the upright picture) in the file's stored orientation: a quarter turn swaps the sides."""
    if image_size is None or orientation not in QUARTER_TURNS:
        return image_size
    return image_size[1], image_size[0]


def _draft_scale(image, image_size: Sequence[int] | None, rule: str) -> int:
    """1, 2, 4 or 8: the scale a JPEG may be decoded at (libjpeg scales while it decodes, so the full image is
    never built) within the reduction for ``image_size``; 1 for other formats and without a size."""
    if image_size is None or image.format not in JPEG_FORMATS:
        return 1
    width, height = image.size
    ky, kx = reduction(height, width, _stored_size(image_size, _orientation(image)), rule)
    return next(s for s in (8, 4, 2, 1) if s <= min(ky, kx))


def _eight_bit(strip, mode: str, deep: tuple[bool, float]):
    """A strip of a PIL image in ``mode`` as a PIL "L" or "RGB" image, by the rules of ``_pixels``."""
    eight_bit_i, float_scale = deep
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(strip, dtype=np.int64)
        pixels = values if eight_bit_i else (np.clip(values, 0, 65535) + 128) // 257
        return Image.fromarray(pixels.astype(np.uint8), "L")
    if mode == "F":
        values = np.asarray(strip, dtype=np.float64)
        pixels = np.clip(np.nan_to_num(values * float_scale), 0, 255).round()
        return Image.fromarray(pixels.astype(np.uint8), "L")
    wanted = "L" if mode in GRAY_MODES else "RGB"
    return strip if mode == wanted else strip.convert(wanted)


def _strips(image, box: tuple[int, int, int, int] | None = None, ky: int = 1) -> Iterator[tuple[int, object]]:
    """(first row, strip) over ``box`` (left, top, right, bottom; None: all) of a PIL image: about STRIP_PIXELS
    each, a whole number of ``ky`` rows; the image itself when it is all of it and that small."""
    left, top, right, bottom = box if box is not None else (0, 0, *image.size)
    rows = ky * max(1, STRIP_PIXELS // ((right - left) * ky))
    whole = (left, top, right, bottom) == (0, 0, *image.size) and rows >= bottom - top
    for first in range(top, bottom, rows):
        yield first - top, image if whole else image.crop((left, first, right, min(bottom, first + rows)))


def shrink_box(
    height: int, width: int, image_size: Sequence[int], rule: str
) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """``(left, top, right, bottom), (ky, kx)``: the part of a height x width image to average in blocks of ky x
    kx (``reduction``) before ``resize_image`` brings it to ``image_size`` by ``rule``. That is crop's box (what
    the rule keeps: cut at full resolution, where a box cut after shrinking would be off by up to a block) or
    the whole image, trimmed evenly to whole blocks, so that a block average keeps the picture's geometry. The
    whole image and (1, 1) when it is not REDUCING_GAP times larger."""
    ky, kx = reduction(height, width, image_size, rule)
    if (ky, kx) == (1, 1):
        return (0, 0, width, height), (1, 1)
    top, left, box_height, box_width = (
        crop_box(height, width, image_size) if rule == "crop" else (0, 0, height, width)
    )
    top, left = top + box_height % ky // 2, left + box_width % kx // 2
    return (left, top, left + box_width // kx * kx, top + box_height // ky * ky), (ky, kx)


def _depth(image) -> tuple[bool, float]:
    """What the whole image says about its deep modes: whether an ``I`` image's values all fit 8 bits, and the
    scale of an ``F`` image (255 if its finite values fit 0..1, else 1)."""
    if image.mode == "I":
        low, high = image.getextrema()
        return 0 <= low and high <= 255, 1.0
    if image.mode == "F":
        low, high = np.inf, -np.inf
        for _, strip in _strips(image):
            values = np.asarray(strip)
            finite = values[np.isfinite(values)]
            if finite.size:
                low, high = min(low, float(finite.min())), max(high, float(finite.max()))
        return False, 255.0 if 0 <= low and high <= 1 else 1.0
    return False, 1.0


def _pixels(
    image, box: tuple[int, int, int, int] | None = None, factors: tuple[int, int] = (1, 1)
) -> torch.Tensor:
    """``box`` (left, top, right, bottom; None: all) of a decoded PIL image of any mode as uint8 (1 or 3,
    height / ky, width / kx) in its stored orientation, built a strip at a time so that no full-size copy
    besides PIL's own raster is ever made.

    16-bit modes are scaled to 8 bits (v / 257, rounded); ``I`` (32-bit, how PIL opens most 16-bit files) is
    taken as 8-bit if its values fit, else as 16-bit; ``F`` as 0..1 if its values fit, else as 0..255
    (clipped). Alpha is dropped, as PIL's and torchvision's own RGB conversion do, so convlab sees the same
    pixels as torchvision's ImageFolder. ``factors`` (ky, kx) average blocks of that many rows and columns
    (PIL's ``reduce``, in uint8); a strip is a whole number of blocks, so strips join as one reduce would.
    """
    mode = image.mode
    left, top, right, bottom = box if box is not None else (0, 0, *image.size)
    ky, kx = factors
    deep = _depth(image)
    out = torch.empty(
        (1 if mode in GRAY_MODES else 3, -(-(bottom - top) // ky), -(-(right - left) // kx)),
        dtype=torch.uint8,
    )
    for first, strip in _strips(image, (left, top, right, bottom), ky):
        strip = _eight_bit(strip, mode, deep)
        if factors != (1, 1):
            strip = strip.reduce((kx, ky))
        array = torch.from_numpy(np.array(strip))
        row = first // ky
        out[:, row : row + array.shape[0]] = array.permute(2, 0, 1) if array.ndim == 3 else array
    return out


def upright(pixels: torch.Tensor, orientation: int) -> torch.Tensor:
    """uint8 (..., H, W) in a file's stored orientation, turned as its EXIF ``orientation`` says a viewer shows
    it (the eight transpositions of PIL's ``ImageOps.exif_transpose``, on the tensor)."""
    turn = ORIENTATIONS.get(orientation)
    return pixels if turn is None else turn(pixels).contiguous()


def pil_image_pixels(image) -> torch.Tensor:
    """A PIL image of any mode as uint8 (1 or 3, H, W), turned upright by its EXIF orientation."""
    image.load()  # full decode: a truncated file raises here, not later
    return upright(_pixels(image), int(image.getexif().get(EXIF_ORIENTATION, 1) or 1))


def _decode_with_pil(image, image_size: Sequence[int] | None, rule: str) -> torch.Tensor:
    """An opened PIL image decoded, shrunk by whole factors where ``image_size`` allows (``shrink_box``: a JPEG
    first by libjpeg's scale) and turned upright."""
    scale = _draft_scale(image, image_size, rule)
    if scale > 1:  # draft keeps the largest of 8, 4, 2, 1 that leaves the size asked: these sizes give scale
        image.draft(None, (image.width // scale, image.height // scale))
    image.load()  # full decode (of the draft's scale): a truncated file raises here, not later
    orientation = int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)  # a PNG's EXIF may follow its pixels
    if image_size is None:
        return upright(_pixels(image), orientation)
    box, factors = shrink_box(image.height, image.width, _stored_size(image_size, orientation), rule)
    return upright(_pixels(image, box, factors), orientation)


def image_header(path: str | Path, max_pixels: int = MAX_PIXELS) -> tuple[tuple[int, int], int]:
    """(H, W) as the decoder delivers the image (upright by its EXIF orientation) and its channels (1 for a
    gray mode, 3 for the rest), from the file header alone; UnreadableImageError for a non-image or one of
    more than ``max_pixels``."""
    try:
        with _open(Path(path), max_pixels) as image:
            width, height = image.size
            if _orientation(image) in QUARTER_TURNS:  # the stored sides swap
                width, height = height, width
            return (height, width), 1 if image.mode in GRAY_MODES else 3
    except UnreadableImageError:
        raise
    except Exception as error:
        raise UnreadableImageError(path, _reason(error)) from None


def native_channels(path: str | Path) -> int:
    """1 for a gray file (L, I;16, I, F...), 3 for any other mode; reads the header only."""
    return image_header(path)[1]


def _reason(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _decode_with_torchvision(path: Path) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image

    with warnings.catch_warnings():
        # torchvision 0.29 announces that TorchCodec will take over image decoding; until then its
        # decoder is the fast one here, and PIL takes over if it ever goes (ImportError below).
        warnings.filterwarnings(
            "ignore", message="The image decoding and encoding capabilities", category=DeprecationWarning
        )
        data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
        # Decoded as RGB always: ImageReadMode.UNCHANGED returns palette indices for "P" PNGs
        # and raw CMYK for CMYK JPEGs, and GRAY uses libpng's Rec. 709 weights, not 601.
        image = decode_image(data, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    if (
        image.ndim == 4
    ):  # an animated GIF decodes to frames x C x H x W: classify its first frame, as PIL does
        image = image[0]
    if image.dtype == torch.uint16:  # 16-bit PNG
        image = ((image.to(torch.int32) + 128) // 257).to(torch.uint8)
    return image


def decode_image_file(
    path: str | Path,
    in_chans: int | None = None,
    *,
    image_size: Sequence[int] | None = None,
    resize: str = "squash",
    max_pixels: int = MAX_PIXELS,
) -> torch.Tensor:
    """The pixels of an image file as uint8 (in_chans, H, W), upright by its EXIF orientation.

    ``in_chans`` None keeps the file's own: 1 for gray modes, 3 for the rest. Without ``image_size`` the image
    comes at the file's own size; with it (the size the caller then brings it to by ``resize_image`` and the
    ``resize`` rule), an image at least REDUCING_GAP times larger comes smaller by whole factors, already cut
    to crop's box for that rule (``shrink_box``): a JPEG decoded at 1/2..1/8 scale, other formats averaged in
    blocks a strip at a time, so that the memory a decode takes stays about one raster of the file (a JPEG's:
    of its scaled size). The pixel count is checked from the header first: more than ``max_pixels`` is
    refused before any decoding. Raises UnreadableImageError naming the file and the reason.
    """
    path = Path(path)
    if not path.exists():
        raise UnreadableImageError(path, "the file does not exist")
    if path.is_dir():
        raise UnreadableImageError(path, "it is a folder, not an image file")
    try:
        image = None
        with _open(path, max_pixels) as opened:
            native = 1 if opened.mode in GRAY_MODES else 3
            # A JPEG at full size goes to torchvision (see JPEG_FORMATS); one that libjpeg may scale down while it
            # decodes, and every other format, to PIL.
            if opened.format not in JPEG_FORMATS or _draft_scale(opened, image_size, resize) > 1:
                image = _decode_with_pil(opened, image_size, resize)
        if image is None:
            try:
                image = _decode_with_torchvision(path)
            except (RuntimeError, ImportError):
                # A mode or variant torchvision cannot do, or a bad file: PIL decides, and its
                # message ("image file is truncated", "cannot identify image file") is the one shown.
                with _open(path, max_pixels) as opened:
                    image = _decode_with_pil(opened, image_size, resize)
    except UnreadableImageError:
        raise
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        raise UnreadableImageError(path, _reason(error)) from None
    return to_channels(image, int(in_chans if in_chans is not None else native))


def read_image(
    path: str | Path,
    in_chans: int | None = None,
    image_size: Sequence[int] | None = None,
    resize: str = "squash",
    *,
    max_pixels: int = MAX_PIXELS,
) -> torch.Tensor:
    """An image file of any mode (L, RGB, RGBA, P, CMYK, I;16, I, F...) and size as uint8
    (in_chans, H, W) at ``image_size`` (None: keep the file's own channels / size).

    Conversion: upright by the EXIF orientation, gray -> RGB by repetition, RGB -> gray by ITU-R 601
    luma, alpha dropped, 16-bit scaled to 8-bit; brought to ``image_size`` by the ``resize`` rule
    (``squash`` or ``crop``: see ``resize_image``) with antialiased bilinear resampling, after the decoder has
    shrunk a much larger image by whole factors (``decode_image_file``). Training, the folder cache, predict
    and serve all read files here, so one file gives them the same pixels. More than ``max_pixels`` pixels
    and unreadable files raise UnreadableImageError with the file name and the reason.
    """
    image = decode_image_file(path, in_chans, image_size=image_size, resize=resize, max_pixels=max_pixels)
    if image_size is not None:
        image = resize_image(image, image_size, resize)
    return image


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (C, H, W) or (N, C, H, W) in 0..255 to float32 ``(x / 255 - mean) / std`` per channel.

    ``mean`` and ``std`` are on the 0-1 scale (as stored in DataBundle and checkpoints).
    """
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    if mean_t.numel() != images.shape[-3] or std_t.numel() != images.shape[-3]:
        raise ConvlabError(
            f"Normalisation has {mean_t.numel()} mean and {std_t.numel()} std values for "
            f"{images.shape[-3]}-channel images; give one value per channel."
        )
    # x * (1 / (255 std)) - mean / std, in place on the one float copy.
    return images.to(torch.float32, copy=True).mul_(1.0 / (255.0 * std_t)).add_(-mean_t / std_t)
