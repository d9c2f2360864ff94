"""Image files to uint8 tensors: decoding in any mode, channel and size conversion, normalisation.

torchvision's decoder (libjpeg-turbo, libpng, libwebp, giflib) does JPEG, PNG, WebP and GIF;
PIL does the rest (BMP, TIFF, PPM/PGM) and the modes torchvision cannot (32-bit ``I``, ``F``).
Both turn the pixels upright by the file's EXIF orientation, as a photo viewer shows them: a phone
stores a portrait photo as landscape pixels plus an Orientation tag. ``decode_image_file`` is the
one decoder every reader uses (training, the folder cache, ``data info``, predict, serve, viz).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from convlab.choices import RESIZE_RULES
from convlab.errors import ConvlabError, unknown_name_error

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
# Only JPEG goes to torchvision's decoder (libjpeg-turbo, the fast one), chosen by the file's bytes, not its
# name. Its PNG decoder kills the process (SIGSEGV) on most corrupted PNGs, where PIL raises a clean error
# (tests/data/test_untrusted_images.py keeps such files), so PNG and every other format go to PIL.
JPEG_MAGIC = b"\xff\xd8\xff"
# PIL modes that hold one (gray) channel; every other mode is converted to RGB.
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
# ITU-R BT.601 luma, the weights PIL's convert("L") and libjpeg use, in thousandths so that the
# integer arithmetic below is exact: a gray image expanded to RGB converts back unchanged.
LUMA_601 = (299, 587, 114)
EXIF_ORIENTATION = 0x0112  # the EXIF tag; values 5-8 turn the image a quarter, so its sides swap


class UnreadableImageError(ConvlabError):
    """An image file that cannot be read or decoded; ``reason`` is the short cause (for ``skipped``)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = str(path), reason.rstrip(".")
        super().__init__(f"Cannot read image '{path}': {self.reason}.")


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


def _pil_to_tensor(image) -> torch.Tensor:
    """A fully decoded PIL image of any mode to uint8 (1 or 3, H, W).

    16-bit modes are scaled to 8 bits (v / 257, rounded); ``I`` (32-bit, how PIL opens most
    16-bit files) is taken as 8-bit if its values fit, else as 16-bit; ``F`` is taken as 0..1
    if its values fit, else as 0..255 (clipped). Alpha is dropped, as PIL's and torchvision's
    own RGB conversion do, so convlab sees the same pixels as torchvision's ImageFolder.
    """
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image, dtype=np.int64)
        if mode == "I" and values.size and values.max() <= 255 and values.min() >= 0:
            pixels = values
        else:
            pixels = (np.clip(values, 0, 65535) + 128) // 257
        return torch.from_numpy(pixels.astype(np.uint8)).unsqueeze(0)
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        finite = values[np.isfinite(values)]
        scale = 255.0 if finite.size and finite.min() >= 0 and finite.max() <= 1 else 1.0
        pixels = np.clip(np.nan_to_num(values * scale), 0, 255).round()
        return torch.from_numpy(pixels.astype(np.uint8)).unsqueeze(0)
    if mode in GRAY_MODES:
        array = np.asarray(image.convert("L"))
        return torch.from_numpy(array.copy()).unsqueeze(0)
    array = np.asarray(image.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def pil_image_pixels(image) -> torch.Tensor:
    """A PIL image of any mode as uint8 (1 or 3, H, W), turned upright by its EXIF orientation."""
    from PIL import ImageOps

    image.load()  # full decode: a truncated file raises here, not later
    if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)  # a turned copy: the caller's image stays as it is
    return _pil_to_tensor(image)


def _decode_with_pil(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as image:
        return pil_image_pixels(image)


def _orientation(image) -> int:
    """The EXIF orientation (1: upright) from the header. A PNG's EXIF may follow its pixels, and PIL would
    decode them all to find it: PNGs count as upright here (their decoder still turns them)."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    return int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)


def image_header(path: str | Path) -> tuple[tuple[int, int], int]:
    """(H, W) as the decoder delivers the image (upright by its EXIF orientation) and its channels (1 for a
    gray mode, 3 for the rest), from the file header alone; UnreadableImageError for a non-image."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            if _orientation(image) in (5, 6, 7, 8):  # a quarter turn: the stored sides swap
                width, height = height, width
            return (height, width), 1 if image.mode in GRAY_MODES else 3
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


def decode_image_file(path: str | Path, in_chans: int | None = None) -> torch.Tensor:
    """The pixels of an image file as uint8 (in_chans, H, W) at the file's own size.

    ``in_chans`` None keeps the file's own: 1 for gray modes, 3 for the rest. Raises
    ConvlabError naming the file and the reason when it cannot be read or decoded.
    """
    path = Path(path)
    if not path.exists():
        raise UnreadableImageError(path, "the file does not exist")
    if path.is_dir():
        raise UnreadableImageError(path, "it is a folder, not an image file")
    if in_chans is None:
        in_chans = native_channels(path)
    try:
        image = None
        with open(path, "rb") as handle:
            is_jpeg = handle.read(len(JPEG_MAGIC)) == JPEG_MAGIC
        if is_jpeg:
            try:
                image = _decode_with_torchvision(path)
            except (RuntimeError, ImportError):
                # A mode or variant torchvision cannot do, or a bad file: PIL decides, and its
                # message ("image file is truncated", "cannot identify image file") is the one shown.
                image = None
        if image is None:
            image = _decode_with_pil(path)
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        raise UnreadableImageError(path, _reason(error)) from None
    return to_channels(image, int(in_chans))


def read_image(
    path: str | Path,
    in_chans: int | None = None,
    image_size: Sequence[int] | None = None,
    resize: str = "squash",
) -> torch.Tensor:
    """An image file of any mode (L, RGB, RGBA, P, CMYK, I;16, I, F...) and size as uint8
    (in_chans, H, W) at ``image_size`` (None: keep the file's own channels / size).

    Conversion: upright by the EXIF orientation, gray -> RGB by repetition, RGB -> gray by ITU-R 601
    luma, alpha dropped, 16-bit scaled to 8-bit; brought to ``image_size`` by the ``resize`` rule
    (``squash`` or ``crop``: see ``resize_image``) with antialiased bilinear resampling.
    Unreadable files raise ConvlabError with the file name and the reason.
    """
    image = decode_image_file(path, in_chans)
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
