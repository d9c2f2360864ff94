"""The examples run: examples/make_photo_folder.py makes the folder docs/your-own-data.md walks through."""

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
