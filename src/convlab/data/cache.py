"""Decode-once cache for image folders: each file decoded and resized once into a uint8 array on disk.

``convlab data cache FOLDER`` (``cache_folder``) writes ``images.npy`` (N x C x H x W uint8) and
``manifest.json`` (every file's path, size and mtime, its label and row; the skipped files; the RGB
moments of each image) under ``$CONVLAB_FOLDER_CACHE`` (default ``~/.cache/convlab/folders``), not
in the folder itself, where tools such as torchvision's ImageFolder would take it for a class.
``load_data`` of that folder then memory-maps the array with numpy and trains from it like a
named set (one gather and the batched augmentation per batch), as long as the folder still
holds exactly the files of the manifest with the same sizes and mtimes; otherwise it decodes
the files as before and says the cache is out of date.

The cached pixels are what the folder loader produces from each file before augmenting
(decode upright at the asked channels, the resize rule, antialiased resampling), so training sees
the same images; random-resized-crop then resamples the cached image rather than the full-size file.
A cache is kept per channels, size and resize rule.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from convlab.choices import FOLDER_IMAGE_SIZE
from convlab.data.bundle import Holdout, check_target
from convlab.data.folder import (
    FOLDER_RESIZE,
    Moments,
    bad_fraction_error,
    check_readable_classes,
    choose_layout_classes,
    default_num_workers,
    describe_layout,
    load_folder,
    native_target,
    read_headers,
    scan_folder,
    split_layout,
)
from convlab.data.images import UnreadableImageError, display_path, read_image
from convlab.data.memory import MemoryBundle
from convlab.errors import ConvlabError

# Bumped when the layout of manifest.json or images.npy, or the pixels it holds, change (2: EXIF orientation
# applied, the resize rule in the key, the files' sizes and the ignored files in the manifest; 3: an image at
# least 3 times the cached size decoded smaller by whole factors first, as read_image reads it for predict
# and serve, so that a cache holds their very pixels).
CACHE_FORMAT = 3


def cache_home() -> Path:
    """``$CONVLAB_FOLDER_CACHE`` if set, else ``~/.cache/convlab/folders``."""
    return Path(
        os.environ.get("CONVLAB_FOLDER_CACHE") or Path.home() / ".cache" / "convlab" / "folders"
    ).expanduser()


def cache_dir(
    root: str | Path, in_chans: int, image_size: Sequence[int], resize: str = FOLDER_RESIZE
) -> Path:
    """Where the cache of ``root`` at C x H x W by ``resize`` lives: one folder per data folder (named by its
    absolute path), one sub-folder per channels, size and rule."""
    root = Path(root).expanduser().resolve()
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    return (
        cache_home()
        / f"{root.name}-{digest}"
        / f"{in_chans}x{int(image_size[0])}x{int(image_size[1])}-{resize}"
    )


def _file_states(files: Sequence[Path], root: Path) -> list[list]:
    """[relative path, size, mtime_ns] per file: what says whether a file changed since it was cached."""
    states = []
    for path in files:
        stat = path.stat()
        states.append([str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns])
    return states


@dataclass
class CacheInfo:
    """What ``cache_folder`` wrote."""

    path: Path
    images: int
    skipped: int
    in_chans: int
    image_size: tuple[int, int]
    resize: str
    bytes: int
    seconds: float

    def describe(self, root: str | Path) -> str:
        return (
            f"Cached {self.images:,} images of {root} at {self.in_chans}x{self.image_size[0]}x{self.image_size[1]} "
            f"({self.resize}) in {self.path} ({self.bytes / 1e6:.1f} MB, {self.seconds:.1f} s"
            f"{f'; {self.skipped} unreadable files skipped' if self.skipped else ''}); load_data and "
            f"`convlab train --data {root}` read it from now on, until a file in the folder changes."
        )


class _DecodeFiles(torch.utils.data.Dataset):
    """Item i -> (i, pixels at the cached channels and size, RGB moments, error reason or None)."""

    def __init__(self, files: Sequence[Path], in_chans: int, image_size: Sequence[int], resize: str) -> None:
        self.files, self.in_chans = list(files), in_chans
        self.image_size, self.resize = tuple(image_size), resize

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        path = self.files[index]
        try:
            # the folder bundle's statistics come from RGB pixels
            rgb = read_image(path, 3, self.image_size, self.resize)
            pixels = rgb if self.in_chans == 3 else read_image(path, 1, self.image_size, self.resize)
        except UnreadableImageError as error:
            return index, None, None, error.reason
        moments = Moments()
        moments.add(rgb)
        row = np.concatenate([moments.total.numpy(), moments.products.numpy().ravel(), [moments.count]])
        return index, pixels.numpy(), row, None


def cache_folder(
    root: str | Path,
    *,
    image_size: Sequence[int] | None = None,
    in_chans: int | None = None,
    max_bad_fraction: float = 0.05,
    num_workers: int | None = None,
    resize: str = FOLDER_RESIZE,
) -> CacheInfo:
    """Decode every image of folder data set ``root`` once, at ``in_chans`` (default: what load_data would
    choose) x ``image_size`` (default: FOLDER_IMAGE_SIZE square, what training uses for a model that declares
    no size) by the ``resize`` rule, into a memory-mappable array with a manifest; replaces an older cache."""
    start = time.perf_counter()
    root = Path(root).expanduser()
    scan = scan_folder(root)
    files = [path for pairs in scan.layout.values() for path, _ in pairs]
    sizes, channels, _ = read_headers(files)  # the channels load_folder would pick
    if not sizes:
        raise ConvlabError(f"None of the {len(files)} files can be read as an image.")
    native_chans, native_size = native_target(sizes, channels)
    target_chans = int(in_chans) if in_chans is not None else native_chans
    target_size = tuple(int(s) for s in image_size) if image_size is not None else (FOLDER_IMAGE_SIZE,) * 2
    check_target(target_chans, target_size)
    states = _file_states(files, root)

    final = cache_dir(root, target_chans, target_size, resize)
    final.parent.mkdir(parents=True, exist_ok=True)
    building = final.parent / f".building-{final.name}-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    try:
        images = np.lib.format.open_memmap(
            building / "images.npy", mode="w+", dtype=np.uint8, shape=(len(files), target_chans, *target_size)
        )
        moments = np.zeros((len(files), 13), dtype=np.float64)
        skipped: list[tuple[str, str]] = []
        workers = default_num_workers() if num_workers is None else int(num_workers)
        loader = torch.utils.data.DataLoader(
            _DecodeFiles(files, target_chans, target_size, resize), batch_size=None, num_workers=workers
        )
        for index, pixels, row, reason in loader:
            if reason is not None:
                skipped.append((display_path(files[index]), reason))
                continue
            images[index] = pixels
            moments[index] = row
        check_readable_classes(scan.classes, scan.layout["train"], skipped, root)
        if len(skipped) > max_bad_fraction * len(files):
            raise bad_fraction_error(root, skipped, len(files), max_bad_fraction)
        images.flush()
        del images
        np.save(building / "moments.npy", moments)
        manifest = {
            "format": CACHE_FORMAT,
            "root": str(root.resolve()),
            "in_chans": target_chans,
            "image_size": list(target_size),
            "resize": resize,
            "native": {"in_chans": native_chans, "image_size": list(native_size)},
            "sizes": [[height, width, count] for (height, width), count in sorted(sizes.items())],
            "files": states,
            "skipped": skipped,
            "ignored": scan.ignored,
        }
        (building / "manifest.json").write_text(json.dumps(manifest))
        if final.exists():
            old = final.parent / f".old-{final.name}-{os.getpid()}"
            final.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        building.rename(final)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    size = sum(f.stat().st_size for f in final.iterdir())
    return CacheInfo(
        path=final,
        images=len(files) - len(skipped),
        skipped=len(skipped),
        in_chans=target_chans,
        image_size=target_size,
        resize=resize,
        bytes=size,
        seconds=time.perf_counter() - start,
    )


def _manifests(root: Path) -> list[tuple[Path, dict]]:
    """Every cache of ``root`` that has a readable manifest, of any format, with that manifest."""
    base = cache_dir(root, 1, (1, 1)).parent
    if not base.is_dir():
        return []
    found = []
    for folder in sorted(base.iterdir()):
        manifest_path = folder / "manifest.json"
        if folder.name.startswith(".") or not manifest_path.is_file():
            continue
        try:
            found.append((folder, json.loads(manifest_path.read_text())))
        except (OSError, ValueError):
            continue
    return found


def find_cache(
    root: Path, image_size: Sequence[int] | None, in_chans: int | None, resize: str = FOLDER_RESIZE
) -> tuple[Path, dict] | None:
    """The cache of ``root`` for the asked channels and size (None: the native ones) by ``resize``, with its
    manifest."""
    for folder, manifest in _manifests(root):
        if manifest.get("format") != CACHE_FORMAT:
            continue
        native = manifest["native"]
        wanted_chans = int(in_chans) if in_chans is not None else native["in_chans"]
        wanted_size = list(image_size) if image_size is not None else native["image_size"]
        if (
            manifest["in_chans"] == wanted_chans
            and [int(s) for s in wanted_size] == manifest["image_size"]
            and manifest["resize"] == resize
        ):
            return folder, manifest
    return None


class CachedFolderBundle(MemoryBundle):
    """A folder data set served from its decode-once cache: a MemoryBundle over the memory-mapped array,
    with the folder bundle's statistics (from the cached RGB moments) and its ``files``."""

    def __init__(self, *, rows_moments: np.ndarray, files: list[str], **kwargs) -> None:
        self._rows_moments = rows_moments
        self._files = files
        super().__init__(**kwargs)

    def _train_moments(self) -> Moments:
        rows = self._rows_moments[self._split_indices["train"].numpy()].sum(0)
        moments = Moments()
        moments.total = torch.from_numpy(rows[:3].copy())
        moments.products = torch.from_numpy(rows[3:12].reshape(3, 3).copy())
        moments.count = int(rows[12])
        return moments

    def _channel_statistics(self) -> tuple[list[float], list[float]]:
        # called while MemoryBundle is being built, before in_chans is set: the cache holds the delivered channels
        mean, std, _ = self._train_moments().statistics(self._images.shape[1])
        return mean, std

    def lighting(self) -> tuple[torch.Tensor, torch.Tensor]:
        _, _, covariance = self._train_moments().statistics(self.in_chans)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        return eigenvalues.float(), eigenvectors.float()

    def files(self, split: str) -> list[str]:
        return [self._files[row] for row in self._split_indices[self.check_split(split)].tolist()]


def load_cached_folder(
    root: str | Path,
    *,
    image_size: Sequence[int] | None = None,
    in_chans: int | None = None,
    val_split: float | Holdout = 0.1,
    seed: int = 0,
    max_bad_fraction: float = 0.05,
    limit: int | None = None,
    keep_classes: Sequence[int | str] | str | None = None,
    limit_per_class: int | None = None,
    resize: str = FOLDER_RESIZE,
) -> tuple[CachedFolderBundle | None, str]:
    """The folder's bundle from its cache, or (None, why not) when it has none or the files changed.

    Splits follow load_folder exactly (chosen classes, limit, the seeded stratified validation split).
    """
    root = Path(root).expanduser()
    found = find_cache(root, image_size, in_chans, resize)
    if found is None:
        if any(manifest.get("format") != CACHE_FORMAT for _, manifest in _manifests(root)):
            return None, (
                "its decode-once cache was made by an older convlab, which decoded its images differently; "
                f"make it again with `convlab data cache {root}`"
            )
        return None, "no cache"
    folder, manifest = found
    scan = scan_folder(root)
    classes, layout = scan.classes, scan.layout
    files = [path for pairs in layout.values() for path, _ in pairs]
    try:
        current = _file_states(files, root)
    except OSError:
        return None, "a file vanished while checking the cache"
    if current != manifest["files"]:
        now, then = ({path: state for path, *state in states} for states in (current, manifest["files"]))
        changed = sum(now.get(path) != then.get(path) for path in now.keys() | then.keys())
        height, width = manifest["image_size"]
        return None, (
            f"decode-once cache out of date ({changed} file(s) added, removed or changed since it "
            f"was made); refresh it with `convlab data cache {root} --image-size {height}x{width} "
            f"--in-chans {manifest['in_chans']} --resize {manifest['resize']}`"
        )
    skipped = [tuple(item) for item in manifest["skipped"]]
    check_readable_classes(classes, layout["train"], skipped, root)
    if len(skipped) > max_bad_fraction * len(files):
        raise bad_fraction_error(root, [list(s) for s in skipped], len(files), max_bad_fraction)
    bad = {path for path, _ in skipped}  # named by display_path, as load_folder names them
    row_of = {str(path): row for row, path in enumerate(files)}

    # As load_folder, by the same two steps, over rows of the cache instead of files.
    classes, layout = choose_layout_classes(classes, layout, keep_classes, root)
    rows = {
        split: [(row_of[str(path)], label) for path, label in entries if display_path(path) not in bad]
        for split, entries in layout.items()
    }
    splits = split_layout(
        rows, classes, val_split=val_split, seed=seed, limit=limit, limit_per_class=limit_per_class
    )

    labels = torch.full((len(files),), -1, dtype=torch.int64)
    split_indices = {}
    for split, entries in splits.items():
        rows = torch.tensor([row for row, _ in entries], dtype=torch.int64)
        labels[rows] = torch.tensor([label for _, label in entries], dtype=torch.int64)
        split_indices[split] = rows
    # Copy-on-write mapping: a writable array without reading the file; pages load as batches touch them.
    images = torch.from_numpy(np.load(folder / "images.npy", mmap_mode="c"))
    height, width = manifest["image_size"]
    source = (
        f"image folder {root} ({describe_layout(layout)}; {len(files)} files, "
        f"from the decode-once cache {folder})"
    )
    bundle = CachedFolderBundle(
        rows_moments=np.load(folder / "moments.npy"),
        files=[str(path) for path in files],
        name=str(root),
        classes=classes,
        images=images,
        labels=labels,
        split_indices=split_indices,
        source=source,
        skipped=skipped,
        in_chans=manifest["in_chans"],
        image_size=(height, width),
        resize=manifest["resize"],
        ignored=scan.ignored,
        file_sizes={(h, w): count for h, w, count in manifest["sizes"]},
    )
    return bundle, "cache"


def load_folder_source(root: str | Path, *, max_bad_fraction: float = 0.05, **options):
    """What load_data gives for a folder: its cached bundle when the cache is current, else load_folder
    (whose ``source`` then says why the cache was not used)."""
    bundle, status = load_cached_folder(root, max_bad_fraction=max_bad_fraction, **options)
    if bundle is not None:
        return bundle
    bundle = load_folder(root, max_bad_fraction=max_bad_fraction, **options)
    if status != "no cache":
        bundle.source += f"; {status}"
    return bundle
