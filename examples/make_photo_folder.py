"""Make a folder of "phone photos" to try the assignment with, offline: Fashion-MNIST garments photographed
on a table, as a user's own collection would look (docs/your-own-data.md).

Each picture is a garment from Fashion-MNIST's test images, enlarged and placed off-centre on a textured
background of its own colour, with camera noise, saved as a JPEG of 1024x768 (landscape) or 768x1024
(portrait). Some portraits are stored sideways with an EXIF Orientation tag, as phones save them; the
folder also gets what real folders collect: a hidden file, a note, and one broken JPEG.

    python examples/make_photo_folder.py photos/ --per-class 40
    python examples/make_photo_folder.py new-photos/ --per-class 5 --seed 1 --clean
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from convlab.data import locate, read_idx

# The garments to photograph: (folder name, Fashion-MNIST class index)
CLASSES = (("sneaker", 7), ("bag", 8), ("trouser", 1), ("dress", 3))
ORIENTATION = 0x0112  # EXIF tag; 6 = rotate 90 degrees clockwise to view
LANDSCAPE, PORTRAIT = (1024, 768), (768, 1024)


def photograph(garment: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """One photo: the 28x28 garment scaled to 45-70% of the shorter side, somewhere on a noisy table."""
    width, height = size
    table = rng.integers(90, 170, 3)
    pixels = np.clip(table + rng.normal(0, 12, (height, width, 3)), 0, 255)
    side = int(min(width, height) * rng.uniform(0.45, 0.7))
    item = (
        np.asarray(Image.fromarray(garment).resize((side, side), Image.Resampling.BILINEAR), np.float64) / 255
    )
    top = rng.integers(0, height - side)
    left = rng.integers(0, width - side)
    colour = rng.integers(20, 90, 3)
    region = pixels[top : top + side, left : left + side]
    pixels[top : top + side, left : left + side] = region * (1 - item[..., None]) + colour * item[..., None]
    return Image.fromarray(pixels.astype(np.uint8))


def make(folder: Path, per_class: int, seed: int, clean: bool) -> None:
    rng = np.random.default_rng(seed)
    where = locate("fashion-mnist")
    if where is None:
        raise SystemExit(
            "Fashion-MNIST is not on this machine: `make data`, or `convlab data download fashion-mnist`."
        )
    images = read_idx(where / "t10k-images-idx3-ubyte.gz")  # 10,000 x 28 x 28 uint8
    labels = read_idx(where / "t10k-labels-idx1-ubyte.gz")
    for name, label in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        pool = np.flatnonzero(labels == label)
        for number, index in enumerate(rng.choice(pool, per_class, replace=False)):
            portrait = rng.random() < 0.4
            photo = photograph(images[index], PORTRAIT if portrait else LANDSCAPE, rng)
            path = folder / name / f"IMG_{seed:02d}{number:03d}.jpg"
            if portrait and rng.random() < 0.5:  # stored sideways, as a phone does; EXIF says how to view it
                exif = Image.Exif()
                exif[ORIENTATION] = 6
                photo.transpose(Image.Transpose.ROTATE_90).save(path, quality=88, exif=exif)
            else:
                photo.save(path, quality=88)
    if not clean:
        (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (folder / "notes.txt").write_text("sneakers from the hallway, bags from the cupboard\n")
        (folder / CLASSES[0][0] / "IMG_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clean", action="store_true", help="no hidden file, note or broken JPEG")
    args = parser.parse_args()
    make(args.folder, args.per_class, args.seed, args.clean)
    print(
        f"wrote {args.per_class} photos of each of {', '.join(name for name, _ in CLASSES)} to {args.folder}"
    )


if __name__ == "__main__":
    main()
