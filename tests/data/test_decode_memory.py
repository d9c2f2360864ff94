"""What one decode costs, and what the decoder's shortcuts change: memory just under the pixel limit, the pixels
of an image decoded smaller than its file, the same pixels for every reader, and the limit itself.

Peak memory is measured in a child process (a fresh interpreter, torch loaded and warmed up first): the peak
resident size is reset through /proc/self/clear_refs before each decode, so the figure is what that decode
added. Where the kernel does not allow the reset, the peak since the start counts, which can only read higher.
"""

import json
import subprocess
import sys
import textwrap
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import convlab
from convlab.data.augment import folder_transform
from convlab.data.cache import CachedFolderBundle, cache_folder
from convlab.data.folder import FolderDataset, decode_target
from convlab.data.images import (
    MAX_PIXELS,
    REDUCING_GAP,
    STRIP_PIXELS,
    UnreadableImageError,
    decode_image_file,
    image_header,
    normalize,
    read_image,
    reduction,
    resize_image,
)
from convlab.prediction import model_input
from convlab.record import InputSpec
from convlab.serve.limits import UploadRejected, decode_upload
from tests.photos import png_without_pixels, write_large_png

MIB = 2**20
# Just under MAX_PIXELS (89,478,485): 89.1 megapixels.
WIDTH, HEIGHT = 9000, 9900
# The stated bound: a decode at a model's input size adds at most PIL's raster of the file (4 bytes a pixel for
# RGB, RGBA and the 32-bit modes; fewer for gray, palette and 16-bit) and this much besides. Measured: 345 MiB
# for the RGB PNG and 346 MiB for the RGBA one (the raster is 340 MiB), 90 MiB palette, 188 MiB 16-bit gray;
# before the decoder worked a strip at a time, 1189, 1189, 934 and 1615 MiB.
PNG_BYTES_PER_PIXEL, PNG_OVERHEAD = 4, 32 * MIB
# A baseline JPEG is decoded at 1/8 scale (libjpeg's DCT scaling): measured 18 MiB at 224 x 224, where the full
# decode took 263 MiB. A progressive JPEG keeps all its DCT coefficients while it decodes (about 3 bytes a
# pixel: 261 MiB, within the PNG bound), whatever the scale.
JPEG_BOUND = 40 * MIB

MEASURE = """
import gc, json, resource, sys
from convlab.data.images import read_image

def status(key):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(key))

def measure(path, size, channels):
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM, the peak resident size, to the current size
        peak = lambda: status("VmHWM")
    except OSError:
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    before = status("VmRSS")
    pixels = read_image(path, channels, size, "crop")
    return peak() - before, list(pixels.shape)

warm_up, jobs = json.loads(sys.argv[1])
for path in warm_up:  # the decoders' libraries and torch's resize kernels load here, not in a measurement
    read_image(path, 3, (224, 224), "crop")
print(json.dumps({path: measure(path, size, channels) for path, size, channels in jobs}))
"""


def peaks_added(jobs, tmp_path) -> dict:
    """{path: (bytes the decode added to the peak, shape)} for ``[(path, size, channels)]``, in one child."""
    warm_up = []
    for suffix in (".png", ".jpg"):
        Image.new("RGB", (700, 700), (10, 200, 30)).save(tmp_path / f"warm-up{suffix}")
        warm_up.append(str(tmp_path / f"warm-up{suffix}"))
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MEASURE), json.dumps([warm_up, jobs])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout)


@pytest.fixture(scope="module")
def big_files(tmp_path_factory):
    """PNGs of four modes and a baseline JPEG, each 9000 x 9900: just under the pixel limit."""
    folder = tmp_path_factory.mktemp("big")
    pngs = {
        mode: write_large_png(folder / f"{mode}.png", WIDTH, HEIGHT, mode)
        for mode in ("RGB", "RGBA", "P", "I;16")
    }
    ramp = Image.linear_gradient("L").resize((WIDTH, HEIGHT))
    colour = Image.merge(
        "RGB",
        (ramp, ramp.transpose(Image.Transpose.ROTATE_180), ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    )
    colour.save(folder / "photo.jpg", quality=80)
    return pngs, folder / "photo.jpg"


def test_a_png_just_under_the_limit_costs_one_raster_and_a_jpeg_an_eighth_of_one(big_files, tmp_path):
    pngs, jpeg = big_files
    assert WIDTH * HEIGHT <= MAX_PIXELS < WIDTH * (HEIGHT + 100)
    jobs = [(str(path), (224, 224), 3) for path in pngs.values()] + [(str(jpeg), (224, 224), 3)]
    measured = peaks_added(jobs, tmp_path)
    for mode, path in pngs.items():
        added, shape = measured[str(path)]
        assert shape == [3, 224, 224]
        assert added <= PNG_BYTES_PER_PIXEL * WIDTH * HEIGHT + PNG_OVERHEAD, f"{mode}: {added / MIB:.0f} MiB"
    added, shape = measured[str(jpeg)]
    assert shape == [3, 224, 224] and added <= JPEG_BOUND, f"JPEG: {added / MIB:.0f} MiB"


# -- the pixels of a shrunk decode -------------------------------------------------------------------------
def photo(height: int, width: int, noise: int, seed: int = 0) -> np.ndarray:
    """Smooth random colours (a camera's picture) with +-``noise`` of grain."""
    rng = np.random.default_rng(seed)
    smooth = np.asarray(
        Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(
            (width, height), Image.BICUBIC
        )
    )
    grain = rng.integers(-noise, noise + 1, smooth.shape)
    return np.clip(smooth.astype(np.int16) + grain, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("noise", [0, 40])
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_an_image_decoded_smaller_gives_nearly_the_pixels_of_the_full_decode(tmp_path, suffix, noise):
    """Measured on 2000 x 1500 photos, against the full decode resized the same way: mean absolute difference
    0.09-0.36 of 255 at 224 x 224, 0.18-0.76 at 32 x 32, 0-0.28 at 300 x 100 (squashed); no pixel more than 4
    apart. (On 4000 x 3000 photos: up to 0.31 at 224 x 224, 1.4 at 32 x 32, no pixel more than 6 apart.)"""
    path = tmp_path / f"photo{suffix}"
    Image.fromarray(photo(1500, 2000, noise)).save(path, quality=90)
    for size, rule in (
        ((224, 224), "crop"),
        ((224, 224), "squash"),
        ((32, 32), "crop"),
        ((300, 100), "squash"),
    ):
        shrunk = read_image(path, 3, size, rule)
        full = resize_image(decode_image_file(path, 3), size, rule)
        difference = (shrunk.int() - full.int()).abs().float()
        assert difference.mean() <= 1.0 and difference.max() <= 6, (
            size,
            rule,
            difference.mean(),
            difference.max(),
        )


def test_strips_join_as_one_reduce_of_the_whole_image(tmp_path):
    """The decoder converts and shrinks a strip of rows at a time; the strips meet exactly where one block
    average of the whole image would put them (the rows that make no whole block left out evenly, 2 at the top
    and 2 at the bottom)."""
    height, width = 2 * STRIP_PIXELS // 1000 + 7, 1000  # three strips, the last one short
    pixels = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "tall.png", compress_level=1)
    size = (height // (5 * REDUCING_GAP), width // (5 * REDUCING_GAP))
    assert reduction(height, width, size, "squash") == (5, 5)
    decoded = decode_image_file(tmp_path / "tall.png", 3, image_size=size, resize="squash")
    whole = Image.fromarray(pixels).reduce(5, box=(0, 2, width, height - 2))
    whole = torch.from_numpy(np.array(whole)).permute(2, 0, 1)
    assert torch.equal(decoded, whole)


def test_a_deep_image_is_scaled_by_what_the_whole_of_it_holds(tmp_path):
    """32-bit values that fit 8 bits are taken as 8-bit, others as 16-bit; floats in 0..1 are scaled by 255. One
    value in the last strip decides for the first strip too."""
    height, width = 2 * STRIP_PIXELS // 500, 500
    deep = np.full((height, width), 200, dtype=np.int32)
    Image.fromarray(deep).save(tmp_path / "eight.tif")
    assert read_image(tmp_path / "eight.tif").unique().tolist() == [200]
    deep[-1, -1] = 60000
    Image.fromarray(deep).save(tmp_path / "sixteen.tif")
    assert read_image(tmp_path / "sixteen.tif")[0, 0, :5].tolist() == [(200 + 128) // 257] * 5
    floats = np.full((height, width), 0.5, dtype=np.float32)
    Image.fromarray(floats).save(tmp_path / "unit.tif")
    assert read_image(tmp_path / "unit.tif", 1, (64, 64)).unique().tolist() == [128]
    floats[-1, -1] = 2.0
    Image.fromarray(floats).save(tmp_path / "wide.tif")
    assert read_image(tmp_path / "wide.tif")[0, 0, :5].tolist() == [0] * 5  # 0.5 of 0..255, rounded


def test_train_cache_predict_and_serve_get_the_same_pixels_of_a_large_photo(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLAB_FOLDER_CACHE", str(tmp_path / "cache-home"))
    monkeypatch.setenv("CONVLAB_NUM_WORKERS", "0")
    root = tmp_path / "photos"
    for label, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        Image.fromarray(photo(1200, 1600, 20, seed=label)).save(root / name / "big.jpg", quality=90)
        Image.fromarray(photo(1600, 1200, 20, seed=label + 2)).save(root / name / "big.png")
    size, rule = (40, 48), "crop"
    files = sorted(root.rglob("big.*"))
    assert reduction(1200, 1600, size, rule) == (10, 10) and reduction(1600, 1200, size, rule) == (8, 8)
    expected = {path: read_image(path, 3, size, rule) for path in files}

    dataset = FolderDataset(
        [str(p) for p in files],
        [0] * len(files),
        3,
        folder_transform([], size, rule),
        decode_target([], size, rule),
    )
    for index, path in enumerate(files):
        assert torch.equal(dataset[(index, 0)][0], expected[path]), path

    cache_folder(root, image_size=size, in_chans=3, resize=rule)
    cached = convlab.load_data(str(root), image_size=size, in_chans=3, resize=rule, val_split=0)
    assert isinstance(cached, CachedFolderBundle)
    for row, name in enumerate(cached.files("train")):
        assert torch.equal(cached._images[cached._split_indices["train"][row]], expected[Path(name)])

    spec = InputSpec(channels=3, size=list(size), mean=[0.5] * 3, std=[0.25] * 3, resize=rule)
    for path in files:
        assert torch.equal(model_input(path, spec), normalize(expected[path], spec.mean, spec.std))
        assert torch.equal(decode_upload(path.read_bytes(), path.name, 3, size, resize=rule), expected[path])


# -- the limit ------------------------------------------------------------------------------------------------
def test_an_image_over_the_limit_is_refused_from_its_header_by_every_reader(tmp_path, monkeypatch):
    """A PNG that claims 9500 x 9500 and holds no pixels at all: only its header is ever read."""
    monkeypatch.setenv("CONVLAB_NUM_WORKERS", "0")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_without_pixels(9500, 9500))
    said = "9500 x 9500 = 90,250,000 pixels, more than the 89,478,485 convlab decodes"
    for read in (
        lambda: read_image(bomb, 3, (32, 32)),
        lambda: image_header(bomb),
        lambda: decode_image_file(bomb),
    ):
        with pytest.raises(UnreadableImageError, match=f"Cannot read image '.*bomb.png': {said}"):
            read()
    (tmp_path / "huge.png").write_bytes(png_without_pixels(15000, 12000))  # PIL refuses it before its sides
    with pytest.raises(
        UnreadableImageError, match="180,000,000 pixels, more than the 89,478,485 convlab decodes"
    ):
        read_image(tmp_path / "huge.png")
    write_large_png(tmp_path / "small.png", 10, 10)
    with pytest.raises(UnreadableImageError, match="10 x 10 = 100 pixels, more than the 99 convlab decodes"):
        read_image(tmp_path / "small.png", max_pixels=99)

    root = tmp_path / "photos"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (16, 16), (80 * k, 40, 200 if name == "cat" else 0)).save(
                root / name / f"{k}.png"
            )
    (root / "dog" / "bomb.png").write_bytes(bomb.read_bytes())
    bundle = convlab.load_data(str(root), image_size=(16, 16), val_split=0, max_bad_fraction=0.5)
    assert bundle.skipped == [
        (str(root / "dog" / "bomb.png"), said + " (a guard against decompression bombs)")
    ]

    with pytest.raises(
        UploadRejected, match="9500 x 9500 = 90,250,000 pixels, more than the 89,478,485"
    ) as refused:
        decode_upload(bomb.read_bytes(), "bomb.png", 3, (32, 32))
    assert refused.value.status == 413


def test_a_jpeg_is_decoded_at_the_scale_the_size_allows(tmp_path):
    """Draft mode: libjpeg scales by 1/2, 1/4 or 1/8 while decoding, never below REDUCING_GAP times the size."""
    buffer = BytesIO()
    Image.fromarray(photo(1200, 1600, 0)).save(buffer, "JPEG", quality=90)
    (tmp_path / "a.jpg").write_bytes(buffer.getvalue())
    for size, shape in (
        ((32, 32), (3, 150, 200)),
        ((100, 100), (3, 300, 400)),
        ((600, 600), (3, 1200, 1600)),
    ):
        assert tuple(decode_image_file(tmp_path / "a.jpg", 3, image_size=size, resize="crop").shape) == shape
