"""The examples run: examples/make_photo_folder.py makes the folder docs/your-own-data.md walks through;
examples/receptive_field.py holds the two networks of the 7x7 against 3x3 experiment (docs/experiments.md)."""

import runpy
import sys
from pathlib import Path

from PIL import Image

from convlab.data import load_data

EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "make_photo_folder.py")


def test_the_photo_folder_is_a_messy_phone_folder_that_loads(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    monkeypatch.setattr(sys, "argv", [EXAMPLE, str(folder), "--per-class", "6"])
    runpy.run_path(EXAMPLE, run_name="__main__")
    photos = sorted(folder.glob("*/IMG_0*.jpg"))
    assert len(photos) == 24 and {p.parent.name for p in photos} == {"sneaker", "bag", "trouser", "dress"}
    sizes = {Image.open(p).size for p in photos}
    assert sizes <= {(1024, 768), (768, 1024)}
    assert any(Image.open(p).getexif().get(0x0112) == 6 for p in photos)  # a portrait stored sideways
    assert (folder / ".DS_Store").is_file() and (folder / "notes.txt").is_file()
    bundle = load_data(str(folder), image_size=(32, 32))
    assert bundle.classes == ["bag", "dress", "sneaker", "trouser"]
    assert [str(path).endswith("IMG_broken.jpg") for path, _ in bundle.skipped] == [True]


def test_three_3x3_convolutions_see_what_one_7x7_sees_with_fewer_weights():
    from convlab.analysis import summary

    reference = str(Path(EXAMPLE).with_name("receptive_field.py"))
    one = summary(f"{reference}:one_7x7", (1, 28, 28))
    three = summary(f"{reference}:three_3x3", (1, 28, 28))
    # the same receptive field after each stage, at 27 C^2 instead of 49 C^2 weights per C -> C block
    assert one.layer("stages.1").receptive_field == three.layer("stages.1").receptive_field == (10, 10)
    assert one.layer("stages.3").receptive_field == three.layer("stages.3").receptive_field == (24, 24)
    assert one.layer("stages.2.0").params == 64 * 32 * 49 + 64
    assert three.layer("stages.2.3").params == 64 * 64 * 9 + 64  # the second 3x3 (after conv, BN, ReLU)
    assert three.totals.params < one.totals.params and three.totals.macs < one.totals.macs
