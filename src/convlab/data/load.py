"""load_data: the one door to every data source (named set, image folder, IDX files)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from convlab.choices import check_resize
from convlab.data.bundle import DataBundle, Holdout
from convlab.data.cache import load_folder_source
from convlab.data.folder import FOLDER_RESIZE
from convlab.data.memory import build_memory_bundle
from convlab.data.readers import read_idx_pair
from convlab.data.registry import NAMED_SETS, is_named_set, load_named
from convlab.errors import ConvlabError

FORMS = (
    "a folder of class sub-folders (root/<class>/*.png or root/train|val|test/<class>/*.png), "
    "or idx:TRAIN_IMAGES,TRAIN_LABELS[,TEST_IMAGES,TEST_LABELS]"
)
# The resize rule when none is asked: named sets and IDX files hold images of one size, kept unless a size
# is asked, so squashing changes nothing but LeNet-5's 28 -> 32; folders hold photos of any proportions.
DEFAULT_RESIZE = {"named": "squash", "idx": "squash", "folder": FOLDER_RESIZE}


def source_kind(source: str) -> str:
    """What ``load_data`` takes ``source`` for: "idx", "named", "folder", or "unknown" (which it refuses)."""
    source = str(source)
    if source.startswith("idx:"):
        return "idx"
    if is_named_set(source) and "/" not in source and os.sep not in source:  # a folder named so: ./mnist
        return "named"
    return "folder" if Path(source).expanduser().is_dir() else "unknown"


def load_data(
    source: str = "fashion-mnist",
    *,
    data_root: str | Path | None = None,
    image_size: tuple[int, int] | None = None,
    in_chans: int | None = None,
    val_split: float | Holdout = 0.1,
    seed: int = 0,
    download: bool = True,
    max_bad_fraction: float = 0.05,
    limit: int | None = None,
    classes: Sequence[int | str] | str | None = None,
    limit_per_class: int | None = None,
    resize: str | None = None,
) -> DataBundle:
    """A data set ready to train on.

    ``source``: a named set (fashion-mnist, mnist, cifar10, cifar100, svhn, stl10, digits), a
    folder of class sub-folders, or ``idx:IMAGES,LABELS[,TEST_IMAGES,TEST_LABELS]``.
    ``image_size`` (H, W) and ``in_chans`` (1 or 3) convert the images (default: their own);
    ``limit`` keeps that many training images (stratified, seeded) before ``val_split`` of them
    is held out as validation (stratified, seeded by ``seed``) unless the source has its own.
    ``classes`` (numbers or names, a list or ``"5,6,7"``) keeps only those classes in every split,
    relabelled 0..k-1 in the order given, with their names; ``limit_per_class`` keeps that many
    training images of each class (seeded; all of a class that has fewer) instead of ``limit``, so
    "50 labelled images per class" is ``limit_per_class=50`` (and ``val_split=0`` to train on all 50).
    ``val_split`` may also be a ``Holdout``: a minimum per class, or fold k of K for cross-validation.
    ``resize`` is how images are brought to ``image_size``: "crop" (the shorter side scaled to it, the
    centre kept) or "squash" (exactly that size); None: crop for folders, squash for the rest.
    """
    source = str(source)
    resize = check_resize(resize)
    if image_size is not None:
        image_size = _size_pair(image_size)
    if in_chans is not None and int(in_chans) not in (1, 3):
        raise ConvlabError(f"in_chans must be 1 (gray) or 3 (RGB), got {in_chans}.")
    if not 0 <= float(max_bad_fraction) <= 1:
        raise ConvlabError(f"max_bad_fraction must be between 0 and 1, got {max_bad_fraction}.")
    if limit is not None and limit_per_class is not None:
        raise ConvlabError(
            f"Give limit ({limit} images in all) or limit_per_class ({limit_per_class} of each "
            f"class), not both."
        )
    options = dict(
        image_size=image_size,
        in_chans=None if in_chans is None else int(in_chans),
        val_split=val_split if isinstance(val_split, Holdout) else float(val_split),
        seed=int(seed),
        limit=limit,
        keep_classes=classes,
        limit_per_class=limit_per_class,
    )
    kind = source_kind(source)
    if kind != "unknown":
        options["resize"] = resize or DEFAULT_RESIZE[kind]
    if kind == "idx":
        return load_idx_source(source, **options)
    if kind == "named":
        return load_named(source, data_root=data_root, download_missing=download, **options)
    if kind == "folder":  # from its decode-once cache (`convlab data cache`) when that is current
        return load_folder_source(
            Path(source).expanduser(), max_bad_fraction=float(max_bad_fraction), **options
        )
    raise ConvlabError(
        f"Data source '{source}' is neither a named set ({', '.join(NAMED_SETS)}) nor an existing folder; "
        f"accepted: a named set, {FORMS}."
    )


def load_idx_source(source: str, **options) -> DataBundle:
    """``idx:TRAIN_IMAGES,TRAIN_LABELS[,TEST_IMAGES,TEST_LABELS]`` -> a MemoryBundle with classes "0".."K-1"."""
    paths = [p.strip() for p in source[len("idx:") :].split(",") if p.strip()]
    if len(paths) not in (2, 4):
        raise ConvlabError(
            f"IDX source '{source}' names {len(paths)} files; give idx:TRAIN_IMAGES,TRAIN_LABELS or "
            f"idx:TRAIN_IMAGES,TRAIN_LABELS,TEST_IMAGES,TEST_LABELS."
        )
    train_images, train_labels = read_idx_pair(*paths[:2])
    test_images = test_labels = None
    if len(paths) == 4:
        test_images, test_labels = read_idx_pair(*paths[2:])
        if test_images.shape[1:] != train_images.shape[1:]:
            raise ConvlabError(
                f"IDX test images are {tuple(test_images.shape[2:])}, training images "
                f"{tuple(train_images.shape[2:])}; both files must hold images of one size."
            )
    highest = int(train_labels.max()) if train_labels.numel() else 0
    if test_labels is not None and test_labels.numel():
        highest = max(highest, int(test_labels.max()))
    classes = [str(label) for label in range(highest + 1)]
    return build_memory_bundle(
        source,
        classes,
        train_images,
        train_labels,
        test_images,
        test_labels,
        source=f"IDX files {', '.join(paths)}",
        **options,
    )


def _size_pair(image_size) -> tuple[int, int]:
    size = (
        (int(image_size), int(image_size))
        if isinstance(image_size, int)
        else tuple(int(s) for s in image_size)
    )
    if len(size) != 2 or min(size) < 1:
        raise ConvlabError(f"image_size must be two positive integers (H, W), got {image_size!r}.")
    return size
