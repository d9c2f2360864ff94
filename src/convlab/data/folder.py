"""Folders of image files, any size: ``root/<class>/*.jpg`` or ``root/{train,val,test}/<class>/*``.

Images are decoded upright by ``images.decode_image_file`` (a much larger photo decoded smaller
already, as ``read_image`` decodes it for predict and serve), brought to the delivered size by the
resize rule (crop by default for folders: FOLDER_RESIZE) and transformed per image with
transforms.v2 in DataLoader workers; the batch-level steps (normalisation, pca-lighting, erase)
then run on the whole batch on the training device. The scan (``scan_folder``) refuses a folder
that mixes class folders with split folders, and names the files it leaves out (``ignored``).

Verification: a folder of at most FULL_DECODE_LIMIT files is decoded completely once, when the
bundle is built, so that truncated and non-image files are found, listed in ``skipped`` and
left out before training starts; that same pass gives exact statistics. Larger folders are not
decoded up front (it would take minutes): image size, channels and statistics come from a
seeded sample of SAMPLE_SIZE files, and a file that fails to decode in a worker is left out of
its batch and added to ``skipped`` then. An image of more than images.MAX_PIXELS is one of those
files, refused from its header. ``skipped`` and ``ignored`` name files by ``images.display_path``, so
that a name that is not UTF-8 can be printed and written.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from torch.utils.data import DataLoader, Dataset

from convlab.choices import parse_augment
from convlab.data.augment import BATCH_LEVEL, BatchAugment, folder_transform
from convlab.data.bundle import (
    IMAGE_SEED_STREAM,
    DataBundle,
    Holdout,
    Shard,
    augment_generator,
    batch_count,
    batch_indices,
    check_target,
    limited_subset,
    resolve_classes,
    seeded_generator,
    shuffled_order,
    stratified_split,
)
from convlab.data.images import (
    IMAGE_EXTENSIONS,
    LUMA_601,
    UnreadableImageError,
    decode_image_file,
    display_path,
    image_header,
    read_image,
)
from convlab.errors import ConvlabError

# Photos come in both orientations and many proportions (4:3, 3:4, 16:9, square): cropping the centre keeps
# an object's shape the same in every one of them, where squashing would stretch portraits one way and
# landscapes the other, and the edges a crop cuts are mostly background (torchvision's and fastai's rule).
FOLDER_RESIZE = "crop"
FULL_DECODE_LIMIT = 5000
SAMPLE_SIZE = 512
# Salts of seeded_generator for the two samples of a large folder (see bundle.py's streams): each sample
# has its own stream, so the files read for the statistics do not follow the files whose headers were read,
# and neither follows the validation split made with the same seed.
HEADER_SAMPLE_STREAM = 0x4EAD  # which files' headers give a large folder's native size and channels
STATISTICS_SAMPLE_STREAM = 0x57A7  # which training files a large folder's mean, std and covariance come from
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
Item = TypeVar("Item")  # what a layout pairs with a label: a file's path, or its row in the decode-once cache


def default_num_workers() -> int:
    """min(4, cores), or ``$CONVLAB_NUM_WORKERS`` (0 decodes in the training process)."""
    configured = os.environ.get("CONVLAB_NUM_WORKERS")
    if configured not in (None, ""):
        return max(0, int(configured))
    return min(4, os.cpu_count() or 1)


# -- finding the files -----------------------------------------------------------------------------------
def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and _visible(p)), key=lambda p: p.name)


def _directory_identity(path: str | Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the directory ``path`` leads to, links followed; None if it cannot be reached."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def image_files(
    folder: str | Path, ignored: list[Path] | None = None, visited: set[tuple[int, int]] | None = None
) -> list[Path]:
    """The image files under ``folder`` (any depth), sorted; the rest (hidden files and folders, other
    extensions) go to ``ignored``, a hidden folder as itself rather than its contents.

    Directory links are followed, but no real directory is walked twice: a link back to a folder already
    walked (a loop) or reserved in ``visited`` (the other class folders of a scan) goes to ``ignored`` as
    itself, so a loop ends and no file is listed twice or under two classes."""
    seen = visited if visited is not None else set()
    start = _directory_identity(folder)
    if start is not None:
        seen.add(start)
    found = []
    for directory, subdirs, names in os.walk(folder, followlinks=True):
        kept = []
        for name in sorted(subdirs):
            if name.startswith("."):
                if ignored is not None:
                    ignored.append(Path(directory) / name)
                continue
            identity = _directory_identity(os.path.join(directory, name))
            if identity is None or identity in seen:  # a link loop, or a second way into a walked folder
                if ignored is not None:
                    ignored.append(Path(directory) / name)
                continue
            seen.add(identity)
            kept.append(name)
        subdirs[:] = kept
        for name in sorted(names):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(directory) / name)
            elif ignored is not None:
                ignored.append(Path(directory) / name)
    return found


def _loose_entries(folder: Path) -> list[Path]:
    """What a folder holds besides its visible sub-folders: files, and hidden folders."""
    return sorted((p for p in folder.iterdir() if not (p.is_dir() and _visible(p))), key=lambda p: p.name)


@dataclass
class FolderScan:
    """A folder data set as found on disk, before any file is opened."""

    classes: list[str]  # sorted class-folder names: label i is classes[i]
    layout: dict[str, list[tuple[Path, int]]]  # per split folder found ("train" always): (file, label)
    ignored: list[str]  # what was not considered, relative to the root: hidden, or not an image by extension


def _split_roots(root: Path) -> dict[str, Path]:
    """{"train": root} for class folders; the split folders of a train/ val/ [test/] layout; a mix is refused.

    A folder named like a split (train, val, test...) that holds folders is a split folder; one that holds
    only images is a class (a "train" class beside "car" and "plane")."""
    subfolders = _subfolders(root)
    names = {p.name.lower() for p in subfolders}
    if "train" in names and names <= set(SPLIT_FOLDERS):
        return {SPLIT_FOLDERS[p.name.lower()]: p for p in subfolders}
    splits = [p.name for p in subfolders if p.name.lower() in SPLIT_FOLDERS and _subfolders(p)]
    if splits:
        others = [p.name for p in subfolders if p.name not in splits]
        found = (
            f"mixes class folders ({', '.join(others)}) with split folders ({', '.join(splits)})"
            if others
            else f"has split folders ({', '.join(splits)}) but no train folder"
        )
        raise ConvlabError(
            f"Data folder '{root}' {found}; use one of the two layouts: class folders "
            f"'{root / '<class>' / '<image>'}' (a validation split is then held out by val_split), or split "
            f"folders '{root / 'train' / '<class>' / '<image>'}' with '{root / 'val' / '<class>' / '<image>'}' "
            f"(and optionally '{root / 'test' / '<class>' / '<image>'}')."
        )
    return {"train": root}


def scan_folder(root: Path) -> FolderScan:
    """The classes, the (file, label) pairs of each split folder and the files left out, of a folder data set."""
    if not root.is_dir():
        raise ConvlabError(f"Data folder '{root}' does not exist or is not a folder.")
    split_roots = _split_roots(root)
    ignored = _loose_entries(root)
    class_folders = _subfolders(split_roots["train"])
    classes = [p.name for p in class_folders]
    if not classes:
        loose = image_files(split_roots["train"])
        hint = f" (it holds {len(loose)} images directly)" if loose else ""
        raise ConvlabError(
            f"Data folder '{split_roots['train']}' has no class sub-folders{hint}; expected <class>/<image> "
            f"folders such as '{split_roots['train'] / 'cat' / '001.jpg'}'."
        )
    # The root, split and class folders are walked only as themselves: a link inside a class folder that
    # leads back to any of them is skipped (and listed in ignored) rather than relabelling another class.
    structure = [root, *split_roots.values(), *(f for p in split_roots.values() for f in _subfolders(p))]
    _refuse_linked_classes(split_roots)
    visited = {identity for identity in map(_directory_identity, structure) if identity is not None}
    layout = {}
    for split, split_root in split_roots.items():
        if split_root != root:
            ignored += _loose_entries(split_root)
        pairs = []
        for folder in _subfolders(split_root):
            if folder.name not in classes:
                raise ConvlabError(
                    f"Class folder '{folder}' is not among the training classes ({', '.join(classes)}); "
                    f"{split} folders must use the training class names."
                )
            pairs += [(path, classes.index(folder.name)) for path in image_files(folder, ignored, visited)]
        layout[split] = pairs
    counts = Counter(label for _, label in layout["train"])
    if not layout["train"]:
        raise ConvlabError(
            f"Data folder '{split_roots['train']}' has class folders but no images in them "
            f"(accepted extensions: {', '.join(IMAGE_EXTENSIONS)})."
        )
    empty = [classes[i] for i in range(len(classes)) if counts[i] == 0]
    if empty:
        raise ConvlabError(
            f"Class folder(s) {', '.join(repr(c) for c in empty)} in '{split_roots['train']}' have no images "
            f"(accepted extensions: {', '.join(IMAGE_EXTENSIONS)}); remove them or add images."
        )
    if len(classes) < 2:
        raise ConvlabError(
            f"Data folder '{split_roots['train']}' has a single class ('{classes[0]}'); classification needs at "
            f"least 2 class sub-folders."
        )
    names = [display_path(path.relative_to(root)) + ("/" if path.is_dir() else "") for path in ignored]
    return FolderScan(classes, layout, names)


def find_folder_layout(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """Classes (sorted folder names) and, per split folder found, the (file, label) pairs."""
    scan = scan_folder(root)
    return scan.classes, scan.layout


def _refuse_linked_classes(split_roots: dict[str, Path]) -> None:
    """Refuse two class folders that are one real folder (one a link to the other): each of its photos would
    be a training image of two classes at once."""
    for split_root in split_roots.values():
        first: dict[tuple[int, int], Path] = {}
        for folder in _subfolders(split_root):
            identity = _directory_identity(folder)
            if identity is None:
                continue
            if identity in first:
                raise ConvlabError(
                    f"Class folders '{first[identity].name}' and '{folder.name}' in '{split_root}' are the same "
                    f"folder (one links to the other), so each of its images would belong to two classes; "
                    f"remove the link or give the class its own folder."
                )
            first[identity] = folder


def describe_ignored(ignored: Sequence[str], shown: int = 5) -> str:
    """``ignored 3 files: .DS_Store, notes.txt, cat/x.heic (hidden, or not images: ...)``, for ``data info``."""
    listing = ", ".join([*ignored[:shown], *(["..."] if len(ignored) > shown else [])])
    return (
        f"ignored {len(ignored)} file{'s' if len(ignored) != 1 else ''}: {listing} (hidden, links back into folders "
        f"already read, or not images: accepted extensions are {', '.join(IMAGE_EXTENSIONS)})"
    )


def check_readable_classes(
    classes: Sequence[str], train: Sequence[tuple[Path, int]], skipped: Sequence[tuple[str, str]], root: Path
) -> None:
    """Refuse a class none of whose training files can be read, as a class folder with no images is refused."""
    reasons = dict(skipped)  # by display_path, as every list of skipped files names them
    files_of: dict[int, list[Path]] = {}
    for path, label in train:
        files_of.setdefault(label, []).append(path)
    for label, files in sorted(files_of.items()):
        if all(display_path(path) in reasons for path in files):
            example = display_path(files[0])
            raise ConvlabError(
                f"Class '{classes[label]}' in '{root}' has no readable images: none of its {len(files)} files "
                f"can be decoded (e.g. '{example}': {reasons[example]}); replace them or remove its folder."
            )


def choose_layout_classes(
    classes: Sequence[str],
    layout: dict[str, list[tuple[Path, int]]],
    keep_classes: Sequence[int | str] | str | None,
    root: Path,
) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """Only the ``keep_classes`` of a folder layout, relabelled 0..k-1 in the order given (None: all)."""
    if keep_classes is None:
        return list(classes), layout
    chosen = resolve_classes(keep_classes, classes, str(root))
    new_label = {old: new for new, old in enumerate(chosen)}
    layout = {
        split: [(path, new_label[label]) for path, label in pairs if label in new_label]
        for split, pairs in layout.items()
    }
    return [classes[label] for label in chosen], layout


def split_layout(
    layout: dict[str, list[tuple[Item, int]]],
    classes: Sequence[str],
    *,
    val_split: float | Holdout,
    seed: int,
    limit: int | None,
    limit_per_class: int | None,
) -> dict[str, list[tuple[Item, int]]]:
    """The splits of a folder layout's (item, label) pairs: ``limit`` or ``limit_per_class`` of the
    training pairs kept, then a stratified ``val_split`` of them held out unless there is a val folder
    (both seeded); a test folder is its own split."""
    train = layout["train"]
    train_labels = torch.tensor([label for _, label in train], dtype=torch.int64)
    kept = limited_subset(train_labels, len(classes), seed, limit=limit, limit_per_class=limit_per_class)
    if kept is not None:
        train, train_labels = [train[i] for i in kept.tolist()], train_labels[kept]
    if "val" in layout:
        splits = {"train": train, "val": layout["val"]}
    else:
        keep, held = stratified_split(train_labels, val_split, seed, classes)
        splits = {"train": [train[i] for i in keep.tolist()], "val": [train[i] for i in held.tolist()]}
    if "test" in layout:
        splits["test"] = layout["test"]
    return splits


def describe_layout(layout: dict[str, list]) -> str:
    return "train/val/test folders" if len(layout) > 1 else "class folders"


# -- checking and measuring the files ---------------------------------------------------------------------
def read_headers(files: Sequence[Path]) -> tuple[Counter, set[int], list[tuple[Path, str]]]:
    """How many files have each (H, W) (upright, as decoded), the channel counts seen, and (file, reason)
    for each non-image."""
    sizes, channels, unreadable = Counter(), set(), []
    for path in files:
        try:
            size, chans = image_header(path)
        except UnreadableImageError as error:
            unreadable.append((path, error.reason))
            continue
        sizes[size] += 1
        channels.add(chans)
    return sizes, channels, unreadable


def native_target(sizes: Counter, channels: set[int]) -> tuple[int, tuple[int, int]]:
    """The channels and size a folder is delivered at unless asked otherwise: RGB if any file is in
    colour; the most common size (ties: the larger)."""
    return (3 if 3 in channels else 1), max(sizes, key=lambda s: (sizes[s], s))


class Moments:
    """Running sums of RGB pixel values (0-1) and their products: mean, std and covariance from one pass."""

    def __init__(self) -> None:
        self.total = torch.zeros(3, dtype=torch.float64)
        self.products = torch.zeros(3, 3, dtype=torch.float64)
        self.count = 0

    def add(self, image: torch.Tensor) -> None:
        pixels = image.reshape(3, -1).to(torch.float64) / 255
        self.total += pixels.sum(1)
        self.products += pixels @ pixels.T
        self.count += pixels.shape[1]

    def statistics(self, in_chans: int) -> tuple[list[float], list[float], torch.Tensor]:
        """Mean, std (per delivered channel) and the covariance; gray from the RGB moments with ITU-R 601 weights."""
        count = max(self.count, 1)
        mean = self.total / count
        covariance = self.products / count - torch.outer(mean, mean)
        if in_chans == 1:
            weights = torch.tensor(LUMA_601, dtype=torch.float64) / 1000
            mean, covariance = (weights @ mean).view(1), (weights @ covariance @ weights).view(1, 1)
        std = covariance.diagonal().clamp(min=1e-6).sqrt().clamp(min=1e-3)
        return mean.tolist(), std.tolist(), covariance


def bad_fraction_error(root: Path, skipped: list[tuple[str, str]], total: int, limit: float) -> ConvlabError:
    examples = "; ".join(f"{f}: {reason}" for f, reason in skipped[:3])
    return ConvlabError(
        f"{len(skipped)} of {total} image files in '{root}' cannot be read ({len(skipped) / total:.1%}, more than "
        f"max_bad_fraction={limit:g}): {examples}{'; ...' if len(skipped) > 3 else ''}."
    )


# -- the bundle ------------------------------------------------------------------------------------------
class FolderBundle(DataBundle):
    """Image files decoded per epoch by DataLoader workers; splits are lists of (file, label)."""

    decodes_files_each_epoch = True

    def __init__(
        self,
        *,
        name: str,
        classes: Sequence[str],
        split_files: dict[str, list[tuple[str, int]]],
        moments: Moments,
        in_chans: int,
        image_size: Sequence[int],
        source: str,
        skipped=(),
        resize: str = FOLDER_RESIZE,
        ignored=(),
        file_sizes=None,
    ) -> None:
        self._split_files = {
            split: files for split, files in split_files.items() if files or split == "train"
        }
        self._moments = moments
        mean, std, covariance = moments.statistics(in_chans)
        self._covariance = covariance
        self._loaders: dict[tuple, tuple[DataLoader, EpochBatchSampler]] = {}
        self.num_workers = default_num_workers()
        super().__init__(
            name=name,
            classes=classes,
            in_chans=in_chans,
            image_size=image_size,
            mean=mean,
            std=std,
            source=source,
            skipped=skipped,
            resize=resize,
            ignored=ignored,
            file_sizes=file_sizes,
        )

    def _has_split(self, split: str) -> bool:
        return split in self._split_files

    def labels(self, split: str) -> torch.Tensor:
        return torch.tensor(
            [label for _, label in self._split_files[self.check_split(split)]], dtype=torch.int64
        )

    def files(self, split: str) -> list[str]:
        return [path for path, _ in self._split_files[self.check_split(split)]]

    def lighting(self) -> tuple[torch.Tensor, torch.Tensor]:
        eigenvalues, eigenvectors = torch.linalg.eigh(self._covariance)
        return eigenvalues.float(), eigenvectors.float()

    def _loader(
        self,
        split: str,
        batch_size: int,
        augment: list[str],
        *,
        shuffle: bool,
        epoch: int,
        seed: int,
        device: torch.device,
        drop_last: bool,
        shard: Shard | None,
        crop_padding: int | None,
    ) -> FolderLoader:
        batch_level = [name for name in augment if name in BATCH_LEVEL]
        augmenter = BatchAugment(
            batch_level, self.mean, self.std, self.image_size, self.in_chans, self.lighting
        )
        key = (
            split,
            batch_size,
            shuffle,
            tuple(augment),
            crop_padding,
            drop_last,
            device.type,
            self.num_workers,
            shard,
        )
        if key not in self._loaders:  # kept, so that persistent workers live across epochs
            files = self._split_files[split]
            dataset = FolderDataset(
                [str(path) for path, _ in files],
                [label for _, label in files],
                self.in_chans,
                folder_transform(
                    [n for n in augment if n not in BATCH_LEVEL], self.image_size, self.resize, crop_padding
                ),
                decode_target(augment, self.image_size, self.resize),
            )
            sampler = EpochBatchSampler(len(files), batch_size, shuffle, drop_last, shard)
            workers = self.num_workers
            dataloader = DataLoader(
                dataset,
                batch_sampler=sampler,
                num_workers=workers,
                collate_fn=collate_skipping_bad,
                persistent_workers=workers > 0,
                pin_memory=device.type == "cuda",
            )
            self._loaders[key] = (dataloader, sampler)
        dataloader, sampler = self._loaders[key]
        return FolderLoader(self, dataloader, sampler, augmenter, epoch, seed, device, shard)

    def _converted(self, in_chans: int, image_size: Sequence[int]) -> FolderBundle:
        """Same files delivered at another size or channels (statistics: those measured at the scan size)."""
        check_target(in_chans, image_size)
        return FolderBundle(
            name=self.name,
            classes=self.classes,
            split_files=self._split_files,
            moments=self._moments,
            in_chans=in_chans,
            image_size=image_size,
            source=self.source,
            skipped=self.skipped,
            resize=self.resize,
            ignored=self.ignored,
            file_sizes=self.file_sizes,
        )

    def _record_bad(self, bad: list[tuple[str, str]]) -> None:
        known = {path for path, _ in self.skipped}
        named = [(display_path(path), reason) for path, reason in bad]
        self.skipped += [item for item in named if item[0] not in known]


def decode_target(
    augment: Sequence[str], image_size: Sequence[int], rule: str
) -> tuple[tuple[int, int], str] | None:
    """The size and rule a worker decodes a file for (``decode_image_file`` shrinks a much larger file toward
    them): the delivered size by the resize rule, so that a worker's image is the very pixels ``read_image``, the
    decode-once cache, predict and serve give. None (the file's own size) for random-resized-crop, which may
    keep any part of the picture, as little as 8% of it, at any scale."""
    if "random-resized-crop" in parse_augment(list(augment)):
        return None
    return (int(image_size[0]), int(image_size[1])), rule


class FolderDataset(Dataset):
    """Item ``(index, sample_seed)`` -> (uint8 image, label, path, error or None); files are decoded for
    ``target`` (size and rule: ``decode_target``; None: at their own size)."""

    def __init__(
        self,
        files: list[str],
        labels: list[int],
        in_chans: int,
        transform,
        target: tuple[Sequence[int], str] | None = None,
    ) -> None:
        self.files, self.labels, self.in_chans, self.transform = files, labels, in_chans, transform
        self.target = target

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, int]):
        index, sample_seed = item
        path, label = self.files[index], self.labels[index]
        size, rule = self.target if self.target is not None else (None, "squash")
        try:
            image = decode_image_file(path, self.in_chans, image_size=size, resize=rule)
        except UnreadableImageError as error:
            return None, label, path, error.reason
        # transforms.v2 draws from torch's global CPU generator: seeding it per image makes the result
        # depend on (seed, epoch, image) only, not on the number of workers or their scheduling. The CPU
        # generator alone: torch.manual_seed also seeds every accelerator's, which costs as much as decoding
        # a small JPEG (docs/performance.md#levers-tried).
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(sample_seed)
            image = self.transform(image)
        return image, label, path, None


def collate_skipping_bad(samples):
    good = [s for s in samples if s[0] is not None]
    bad = [(s[2], s[3]) for s in samples if s[0] is None]
    images = torch.stack([s[0] for s in good]) if good else None
    labels = torch.tensor([s[1] for s in good], dtype=torch.int64)
    return images, labels, bad


class EpochBatchSampler:
    """Batches of (index, per-image seed) in an order fixed by (seed, epoch), which are set before each pass;
    with a ``shard``, this process's part of each batch (the per-image seeds stay the image's own, so an
    image is transformed alike whichever process reads it)."""

    def __init__(
        self, num_images: int, batch_size: int, shuffle: bool, drop_last: bool, shard: Shard | None = None
    ) -> None:
        self.num_images, self.batch_size, self.shuffle, self.drop_last = (
            num_images,
            batch_size,
            shuffle,
            drop_last,
        )
        self.shard = shard
        self.seed, self.epoch = 0, 0

    def __len__(self) -> int:
        if self.shard is not None:
            return self.shard.batches(self.num_images, self.batch_size, self.drop_last)
        return batch_count(self.num_images, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if self.shuffle:
            order = shuffled_order(self.num_images, self.seed, self.epoch)
        else:
            order = torch.arange(self.num_images)
        image_seeds = torch.randint(
            0, 2**62, (self.num_images,), generator=seeded_generator(self.seed, self.epoch, IMAGE_SEED_STREAM)
        )
        for indices in batch_indices(order, self.batch_size, self.drop_last, self.shard):
            yield [(index, int(image_seeds[index])) for index in indices.tolist()]


class FolderLoader:
    """Batches of one split, normalised on ``device``; unreadable files found on the way go to ``skipped``."""

    def __init__(
        self,
        bundle: FolderBundle,
        dataloader: DataLoader,
        sampler: EpochBatchSampler,
        augmenter: BatchAugment,
        epoch: int,
        seed: int,
        device: torch.device,
        shard: Shard | None = None,
    ) -> None:
        self.bundle, self.dataloader, self.sampler, self.augmenter = bundle, dataloader, sampler, augmenter
        self.epoch, self.seed, self.device, self.shard = epoch, seed, device, shard

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.seed, self.sampler.epoch = self.seed, self.epoch
        generator = augment_generator(self.seed, self.epoch, self.shard)
        for images, labels, bad in self.dataloader:
            if bad:
                self.bundle._record_bad(bad)
            if images is None:
                continue
            images = images.to(self.device, non_blocking=True)
            yield self.augmenter(images, generator), labels.to(self.device, non_blocking=True)


def load_folder(
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
) -> FolderBundle:
    """Scan a folder data set, check its files, split it and measure it (see the module docstring); images
    are delivered at ``image_size`` (None: the most common size) by the ``resize`` rule."""
    root = Path(root).expanduser()
    scan = scan_folder(root)
    # Only the chosen class folders are read at all.
    classes, layout = choose_layout_classes(scan.classes, scan.layout, keep_classes, root)
    all_files = [path for pairs in layout.values() for path, _ in pairs]
    full_decode = len(all_files) <= FULL_DECODE_LIMIT
    skipped: list[tuple[str, str]] = []

    # 1. Headers: size and mode of every file (small folders) or of a seeded sample; non-images fail here.
    if full_decode:
        header_files = all_files
    else:
        sample = seeded_generator(seed, HEADER_SAMPLE_STREAM)
        pick = torch.randperm(len(all_files), generator=sample)[:SAMPLE_SIZE]
        header_files = [all_files[i] for i in sorted(pick.tolist())]
    sizes, channels, unreadable = read_headers(header_files)
    skipped += [(display_path(path), reason) for path, reason in unreadable]
    bad = {path for path, _ in unreadable}
    if not sizes:
        raise bad_fraction_error(root, skipped, len(header_files), max_bad_fraction)
    native_chans, native_size = native_target(sizes, channels)
    target_size = tuple(image_size) if image_size is not None else native_size
    target_chans = int(in_chans) if in_chans is not None else native_chans
    check_target(target_chans, target_size)

    # 2. Full decode of every file of a small folder: truncated files fail here; moments per file.
    per_file: dict[Path, Moments] = {}
    if full_decode:
        for path in all_files:
            if path in bad:
                continue
            try:
                moments = Moments()
                moments.add(read_image(path, 3, target_size, resize))
                per_file[path] = moments
            except UnreadableImageError as error:
                skipped.append((display_path(path), error.reason))
                bad.add(path)
    check_readable_classes(classes, layout["train"], skipped, root)
    checked = len(all_files) if full_decode else len(header_files)
    if len(bad) > max_bad_fraction * checked:
        raise bad_fraction_error(root, skipped, checked, max_bad_fraction)

    # 3. Splits: limit and validation carved from the training files (stratified, seeded).
    readable = {
        split: [(path, label) for path, label in pairs if path not in bad] for split, pairs in layout.items()
    }
    split_files = split_layout(
        readable, classes, val_split=val_split, seed=seed, limit=limit, limit_per_class=limit_per_class
    )

    # 4. Statistics of the training split (exact for small folders, from a sample of it otherwise).
    total = Moments()
    if full_decode:
        for path, _ in split_files["train"]:
            part = per_file[path]
            total.total += part.total
            total.products += part.products
            total.count += part.count
    else:
        sample = seeded_generator(seed, STATISTICS_SAMPLE_STREAM)
        pick = torch.randperm(len(split_files["train"]), generator=sample)[:SAMPLE_SIZE]
        for index in sorted(pick.tolist()):
            path = split_files["train"][index][0]
            try:
                total.add(read_image(path, 3, target_size, resize))
            except UnreadableImageError as error:
                skipped.append((display_path(path), error.reason))
                bad.add(path)
        split_files = {
            split: [(p, label) for p, label in files if p not in bad] for split, files in split_files.items()
        }

    sampled = min(SAMPLE_SIZE, len(split_files["train"]))
    check = (
        "all decoded once to check them" if full_decode else f"{sampled} sampled, the rest checked when read"
    )
    source = f"image folder {root} ({describe_layout(layout)}; {len(all_files)} files, {check})"
    return FolderBundle(
        name=str(root),
        classes=classes,
        split_files={
            split: [(str(path), label) for path, label in files] for split, files in split_files.items()
        },
        moments=total,
        in_chans=target_chans,
        image_size=target_size,
        source=source,
        skipped=skipped,
        resize=resize,
        ignored=scan.ignored,
        file_sizes=sizes,
    )
