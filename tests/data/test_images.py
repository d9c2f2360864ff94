"""read_image and normalize: image files of any mode and size to model input."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from convlab.data import normalize, read_image
from convlab.data.images import resize_image
from convlab.errors import ConvlabError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8)


def luma(rgb):
    """ITU-R 601, rounded: what RGB -> gray must give."""
    r, g, b = (rgb[..., k].astype(np.int64) for k in range(3))
    return (299 * r + 587 * g + 114 * b + 500) // 1000


def test_rgb_png_is_read_exactly_and_converted_to_gray_by_601_luma(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.dtype == torch.uint8 and image.shape == (3, 12, 16)
    assert torch.equal(image, torch.from_numpy(RGB).permute(2, 0, 1))
    gray = read_image(tmp_path / "a.png", 1)
    assert torch.equal(gray[0], torch.from_numpy(luma(RGB)).to(torch.uint8))


def test_gray_to_rgb_repeats_the_channel(tmp_path):
    Image.fromarray(RGB[..., 0]).save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png").shape == (1, 12, 16)
    rgb = read_image(tmp_path / "g.png", 3)
    assert all(torch.equal(rgb[k], torch.from_numpy(RGB[..., 0])) for k in range(3))


@pytest.mark.parametrize(
    "mode,suffix",
    [
        ("RGBA", ".png"),
        ("P", ".png"),
        ("CMYK", ".jpg"),
        ("RGB", ".bmp"),
        ("RGB", ".webp"),
        ("RGB", ".tiff"),
        ("L", ".pgm"),
        ("RGB", ".ppm"),
        ("P", ".gif"),
    ],
)
def test_any_mode_is_converted_to_rgb_of_the_asked_size(tmp_path, mode, suffix):
    path = tmp_path / f"image{suffix}"
    Image.fromarray(RGB).convert(mode).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    image = read_image(path, 3, (20, 10))
    assert image.shape == (3, 20, 10) and image.dtype == torch.uint8
    # What PIL itself makes of the file, resized the same way, within resampling rounding.
    expected = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
    from torchvision.transforms.v2.functional import resize

    expected = resize(expected, [20, 10], antialias=True)
    assert (image.int() - expected.int()).abs().max() <= 2


def test_rgba_drops_alpha_like_pil(tmp_path):
    rgba = np.dstack([RGB, np.zeros((12, 16), dtype=np.uint8)])  # fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    assert torch.equal(read_image(tmp_path / "t.png", 3), torch.from_numpy(RGB).permute(2, 0, 1))


def test_sixteen_and_thirty_two_bit_and_float_images(tmp_path):
    deep = (np.arange(12 * 16).reshape(12, 16) * 300).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")  # mode I;16
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    image = read_image(tmp_path / "deep.png")
    assert image.shape == (1, 12, 16)
    assert torch.equal(image[0], torch.from_numpy((deep.astype(np.int64) + 128) // 257).to(torch.uint8))
    Image.fromarray(deep.astype(np.int32)).save(tmp_path / "deep.tif")  # mode I: taken as 16-bit
    assert torch.equal(read_image(tmp_path / "deep.tif"), image)
    Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)).save(tmp_path / "half.tif")  # mode F in 0..1
    assert read_image(tmp_path / "half.tif", 3).unique().tolist() == [128]


def test_unreadable_files_raise_one_clear_error(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ConvlabError, match=r"Cannot read image '.*notes.png': cannot identify image file"):
        read_image(tmp_path / "notes.png", 3, (8, 8))
    Image.fromarray(RGB).save(tmp_path / "cut.jpg", quality=95)
    data = (tmp_path / "cut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConvlabError, match=r"Cannot read image '.*cut.jpg': .*runcated"):
        read_image(tmp_path / "cut.jpg")
    with pytest.raises(ConvlabError, match="does not exist"):
        read_image(tmp_path / "missing.png")


def test_normalize_uses_the_zero_one_scale():
    batch = torch.tensor([[[[0, 255]], [[51, 102]]]], dtype=torch.uint8)  # (1, 2, 1, 2)
    out = normalize(batch, (0.5, 0.2), (0.5, 0.1))
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.tensor([[[[-1.0, 1.0]], [[0.0, 2.0]]]]), atol=1e-6)
    assert normalize(batch[0], [0.5, 0.2], [0.5, 0.1]).shape == (2, 1, 2)
    with pytest.raises(ConvlabError, match="1 mean and 1 std values for 2-channel images"):
        normalize(batch, (0.5,), (0.5,))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_turns_the_pixels_as_pil_does(tmp_path, orientation):
    """The decoder turns the tensor (it may have shrunk the image first); PIL's exif_transpose is the reference."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(RGB).save(tmp_path / "o.png", exif=exif.tobytes())
    with Image.open(tmp_path / "o.png") as stored:
        expected = torch.from_numpy(np.array(ImageOps.exif_transpose(stored))).permute(2, 0, 1)
    assert torch.equal(read_image(tmp_path / "o.png"), expected)
    big = np.kron(RGB, np.ones((30, 30, 1), dtype=np.uint8))  # 360 x 480, each pixel a 30 x 30 block
    Image.fromarray(big).save(tmp_path / "big.jpg", exif=exif.tobytes(), quality=95)
    shrunk = read_image(tmp_path / "big.jpg", 3, (8, 12) if orientation < 5 else (12, 8), "squash")
    assert (shrunk.int() - resize_image(expected, shrunk.shape[1:]).int()).abs().float().mean() < 8
