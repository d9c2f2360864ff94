"""DataBundle, the one interface training and evaluation see, and the seeded stratified splits.

Two kinds implement it: MemoryBundle (every named set: one uint8 tensor, batched augmentation)
and FolderBundle (folders of image files: DataLoader workers).
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from convlab.choices import parse_augment
from convlab.errors import ConvlabError

SPLITS = ("train", "val", "test")
# "Much" larger or smaller than the delivered size, for DataBundle.size_warning: a factor of 4 on a side
# (16 in pixels). A 640x480 photo at 224x224 (2.1x) is an ordinary shrink; a 3024x4032 phone photo (13x)
# loses most of its detail and costs a full-size decode every epoch; a 32x32 icon at 224 (7x) is a blur.
MUCH = 4

# The keys that give each random stream drawn from one seed its own generator (seeded_generator(seed, KEY)
# or, per epoch, seeded_generator(seed, epoch, KEY)): a stream's draws never shift another's, so adding an
# augmentation leaves the order and the splits alone, and limit=N picks the same images whatever val_split
# is. The values are arbitrary but fixed: `convlab eval` rebuilds a run's validation split from its seed,
# so changing one would give every earlier checkpoint another validation split.
VALIDATION_STREAM = 0x5B1  # stratified_split: which images of each class are held out
SUBSET_STREAM = 0x11A  # stratified_subset and per_class_subset (one stream): which images a limit keeps
SHUFFLE_STREAM = 1  # per epoch: the order of a shuffled split
AUGMENT_STREAM = 2  # per epoch: the batched augmentation's draws
IMAGE_SEED_STREAM = 3  # per epoch: one seed per file for the per-image transforms of folder sets


class DataBundle(ABC):
    """A data set ready to train on: classes, splits, per-channel statistics and loaders."""

    name: str
    classes: list[str]
    in_chans: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    skipped: list[tuple[str, str]]
    resize: str  # how images are brought to image_size: "crop" or "squash" (images.resize_image)
    ignored: list[str]  # files in a folder that were not considered: hidden, or not an image by extension
    file_sizes: Counter  # (H, W) -> files of that size (all of a folder's, or a sample); empty: not known
    decodes_files_each_epoch = False  # FolderBundle: every epoch decodes every file again

    def __init__(
        self,
        *,
        name: str,
        classes: Sequence[str],
        in_chans: int,
        image_size: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        source: str,
        skipped: Iterable[tuple[str, str]] = (),
        resize: str = "squash",
        ignored: Iterable[str] = (),
        file_sizes: Mapping[tuple[int, int], int] | None = None,
    ) -> None:
        self.name = name
        self.classes = list(classes)
        self.in_chans = int(in_chans)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.source = source
        self.skipped = list(skipped)
        self.resize = resize
        self.ignored = list(ignored)
        self.file_sizes = Counter(file_sizes or {})

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def splits(self) -> list[str]:
        return [split for split in SPLITS if self._has_split(split)]

    def size(self, split: str) -> int:
        return int(self.labels(split).numel())

    @abstractmethod
    def labels(self, split: str) -> torch.Tensor:
        """Implemented by MemoryBundle and FolderBundle."""

    def loader(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: Sequence[str] | str = (),
        epoch: int = 0,
        seed: int = 0,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
        shard: Shard | None = None,
        crop_padding: int | None = None,
    ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised (images, labels) batches of ``split`` on ``device``, a fresh pass per iteration;
        the order (``shuffle``) and the ``augment`` draws depend on (``seed``, ``epoch``) only.

        ``shard``: one process's part of each batch in a distributed run (``Shard``); ``batch_size`` stays
        the batch of all the processes together. ``crop_padding``: the zero border of ``crop`` in pixels,
        1 up to the image's shorter side (None: an eighth of it, ``augment.default_crop_padding``)."""
        if int(batch_size) < 1:
            raise ConvlabError(f"Batch size must be a positive integer, got {batch_size}.")
        if shard is not None:
            shard.check(int(batch_size))
        names = parse_augment(augment)
        if crop_padding is not None:
            self.check_crop_padding(crop_padding)
        return self._loader(
            self.check_split(split),
            int(batch_size),
            names,
            shuffle=bool(shuffle),
            epoch=int(epoch),
            seed=int(seed),
            device=torch.device(device),
            drop_last=bool(drop_last),
            shard=shard,
            crop_padding=crop_padding,  # checked above: None or an int
        )

    def check_crop_padding(self, crop_padding: int) -> None:
        """A border the random crop can use at this size: 1 up to the shorter side, or one clear error."""
        side = min(int(self.image_size[0]), int(self.image_size[1]))
        if (
            isinstance(crop_padding, bool)
            or not isinstance(crop_padding, int)
            or not 1 <= crop_padding <= side
        ):
            raise ConvlabError(
                f"crop_padding (--crop-padding) must be a whole number of pixels from 1 to {side} "
                f"(the shorter side of the {self.image_size[0]}x{self.image_size[1]} images), got {crop_padding!r}."
            )

    def resized(self, image_size: tuple[int, int]) -> DataBundle:
        """The same images and splits delivered at ``image_size`` (H, W), by the bundle's resize rule."""
        return self._converted(self.in_chans, image_size)

    def with_channels(self, in_chans: int) -> DataBundle:
        """The same images and splits delivered with ``in_chans`` channels (1 gray, 3 RGB)."""
        return self._converted(in_chans, self.image_size)

    @abstractmethod
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
    ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """Implemented by MemoryBundle and FolderBundle: ``loader`` with its arguments checked."""

    @abstractmethod
    def _converted(self, in_chans: int, image_size: Sequence[int]) -> DataBundle:
        """Implemented by MemoryBundle and FolderBundle: ``resized`` and ``with_channels``."""

    @abstractmethod
    def _has_split(self, split: str) -> bool:
        """Implemented by MemoryBundle and FolderBundle."""

    def check_split(self, split: str) -> str:
        if split not in SPLITS or not self._has_split(split):
            raise ConvlabError(f"Split '{split}' is not in {self.name}; it has {', '.join(self.splits())}.")
        return split

    def size_warning(self) -> str | None:
        """A warning when most files are MUCH larger (both sides) or MUCH smaller (a side) than the size
        they are delivered at; None otherwise, or when the files' sizes are not known (named sets)."""
        total = sum(self.file_sizes.values())
        if not total:
            return None
        height, width = self.image_size
        ratio = {size: min(size[0] / height, size[1] / width) for size in self.file_sizes}
        larger = sum(n for size, n in self.file_sizes.items() if ratio[size] >= MUCH)
        smaller = sum(n for size, n in self.file_sizes.items() if ratio[size] <= 1 / MUCH)
        common_height, common_width = self.file_sizes.most_common(1)[0][0]
        common = f"most often {common_height}x{common_width}"
        if larger > total / 2:
            decoding = (
                f", and each is decoded at full size every epoch (`convlab data cache {self.name} --image-size "
                f"{height}x{width} --resize {self.resize}` decodes them once)"
                if self.decodes_files_each_epoch
                else ""
            )
            return (
                f"warning: {larger} of {total} images are at least {MUCH}x larger than {height}x{width} on both "
                f"sides ({common}): they lose fine detail{decoding}; --image-size trains larger if the model "
                f"takes it"
            )
        if smaller > total / 2:
            return (
                f"warning: {smaller} of {total} images are at least {MUCH}x smaller than {height}x{width} on a "
                f"side ({common}): enlarging them adds no detail, only compute; choose an --image-size "
                f"nearer their own"
            )
        return None

    def summary(self) -> dict:
        """What `convlab data info` prints: plain values only."""
        return {
            "name": self.name,
            "classes": list(self.classes),
            "num_classes": self.num_classes,
            "splits": {split: self.size(split) for split in self.splits()},
            "image_size": list(self.image_size),
            "resize": self.resize,
            "in_chans": self.in_chans,
            "mean": [round(m, 4) for m in self.mean],
            "std": [round(s, 4) for s in self.std],
            "source": self.source,
            "skipped": [list(item) for item in self.skipped],
            "ignored": list(self.ignored),
        }

    def __repr__(self) -> str:
        sizes = ", ".join(f"{split} {self.size(split)}" for split in self.splits())
        height, width = self.image_size
        return (
            f"{type(self).__name__}({self.name!r}: {self.num_classes} classes, {sizes}, "
            f"{height}x{width}x{self.in_chans})"
        )


def check_target(in_chans: int, image_size: Sequence[int]) -> None:
    """The channels and size a bundle can deliver: 1 or 3 channels, two positive sides."""
    if in_chans not in (1, 3):
        raise ConvlabError(f"in_chans must be 1 (gray) or 3 (RGB), got {in_chans}.")
    if len(image_size) != 2 or min(int(s) for s in image_size) < 1:
        raise ConvlabError(f"image_size must be two positive integers (H, W), got {tuple(image_size)}.")


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator whose stream depends only on ``keys`` (e.g. seed, epoch, purpose)."""
    state = np.random.SeedSequence([int(k) % 2**63 for k in keys]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def shuffled_order(num_images: int, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of ``num_images`` that depends on (seed, epoch) only: a shuffled split's order."""
    return torch.randperm(num_images, generator=seeded_generator(seed, epoch, SHUFFLE_STREAM))


def batch_count(num_images: int, batch_size: int, drop_last: bool) -> int:
    """Batches in one pass: the last, smaller batch counts unless ``drop_last``."""
    return num_images // batch_size if drop_last else math.ceil(num_images / batch_size)


def batch_indices(order: torch.Tensor, batch_size: int, drop_last: bool, shard: Shard | None = None):
    """The indices of each batch of one pass over ``order`` (this process's part of it, with ``shard``; a
    part left empty by a short last batch is skipped). Both loaders cut their batches here, so that a
    process of a distributed run takes the same images from the in-memory and the folder loader."""
    for batch in range(batch_count(order.numel(), batch_size, drop_last)):
        indices = order[batch * batch_size : (batch + 1) * batch_size]
        if shard is not None:
            indices = shard.part(indices, batch_size)
            if indices.numel() == 0:
                continue
        yield indices


@dataclass(frozen=True)
class Shard:
    """Process ``rank``'s part of every batch in a distributed run of ``world`` processes
    (convlab.training.distributed): each batch of ``batch_size`` images, in the order a single process
    takes them, is cut into ``world`` consecutive parts of ``batch_size / world``, and the process takes
    part ``rank``. So the processes' parts of one step are that step's batch of a single process, no image
    is in two parts, and the parts of an epoch together are the whole epoch. (torch's DistributedSampler
    deals images out by stride and pads the last round with repeats; this keeps convlab's batches.)

    A full batch gives every process an equal part; the parts of a last, smaller batch are cut the same
    way, so some may be short or empty, and an empty part is no batch at all (evaluation only: training
    drops a smaller last batch under a distributed run)."""

    rank: int
    world: int

    def check(self, batch_size: int) -> None:
        if batch_size % self.world:
            raise ConvlabError(
                f"A batch of {batch_size} images does not split evenly over {self.world} processes; give a "
                f"multiple of {self.world}."
            )

    def part(self, batch: torch.Tensor, batch_size: int) -> torch.Tensor:
        """This process's part of ``batch`` (indices of one batch of ``batch_size``, or fewer for the last)."""
        size = batch_size // self.world
        return batch[self.rank * size : (self.rank + 1) * size]

    def batches(self, num_images: int, batch_size: int, drop_last: bool) -> int:
        """How many non-empty parts this process gets in one pass."""
        full, rest = divmod(num_images, batch_size)
        return full + int(not drop_last and rest > self.rank * (batch_size // self.world))


def augment_generator(seed: int, epoch: int, shard: Shard | None) -> torch.Generator:
    """The batched augmentation's draws of an epoch: each process of a distributed run its own stream, as
    its images are its own."""
    keys = (seed, epoch, AUGMENT_STREAM) if shard is None else (seed, epoch, AUGMENT_STREAM, shard.rank)
    return seeded_generator(*keys)


@dataclass(frozen=True)
class Holdout:
    """Which training images a validation split holds out, stratified by class and seeded: a fraction of
    each class (at least ``min_per_class`` of it, where that leaves the class as many to train on), or
    fold ``fold`` of ``folds`` equal parts of each class (K-fold cross-validation: the folds are disjoint
    and together hold out every image once)."""

    fraction: float = 0.1
    min_per_class: int = 1
    fold: int | None = None  # 1..folds
    folds: int | None = None

    def __post_init__(self) -> None:
        if self.folds is not None and not (
            self.folds >= 2 and self.fold is not None and 1 <= self.fold <= self.folds
        ):
            raise ConvlabError(
                f"A fold is one of 1..K for K >= 2 folds, got fold {self.fold} of {self.folds}."
            )

    def describe(self) -> str:
        """``of 0.1`` or ``by fold 2 of 5``, as in "a validation split of 0.1"."""
        if self.folds is not None:
            return f"by fold {self.fold} of {self.folds}"
        return f"of {self.fraction:g}"


def stratified_split(
    labels: torch.Tensor,
    holdout: float | Holdout,
    seed: int,
    classes: Sequence[str],
    held_name: str = "validation",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, held out), each sorted, holding out ``holdout`` of every class (seeded).

    With a fraction, each class with images gives round(n * fraction) of them, at least one (or the
    holdout's ``min_per_class`` where that leaves as many to train on) and never all, so both sides see
    every class; with a fold, each class's images are shuffled once (the same for every fold) and cut into
    ``folds`` near-equal parts. A class with a single image cannot be split: ConvlabError.
    """
    holdout = holdout if isinstance(holdout, Holdout) else Holdout(fraction=float(holdout))
    fraction = holdout.fraction
    if holdout.folds is None and not 0 <= fraction < 1:
        raise ConvlabError(f"The {held_name} fraction must be in [0, 1), got {fraction}.")
    everything = torch.arange(labels.numel())
    if holdout.folds is None and fraction == 0:
        return everything, everything[:0]
    generator = seeded_generator(seed, VALIDATION_STREAM)
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=len(classes)).tolist()
    kept, held, start = [], [], 0
    for label, count in enumerate(counts):
        members = order[start : start + count]
        start += count
        if count == 0:
            continue
        if count == 1:
            raise ConvlabError(
                f"Class '{classes[label]}' has only 1 training image, so a {held_name} split "
                f"{holdout.describe()} leaves it with no {held_name} image; add images of that class, give a "
                f"separate {'val/' if held_name == 'validation' else 'test/'} folder, or set the split fraction to 0."
            )
        members = members[torch.randperm(count, generator=generator)]
        if holdout.folds is not None:
            parts = torch.tensor_split(members, holdout.folds)
            held.append(parts[holdout.fold - 1])
            kept.append(torch.cat([part for i, part in enumerate(parts) if i != holdout.fold - 1]))
            continue
        least = max(1, min(holdout.min_per_class, count // 2))
        take = min(max(int(np.floor(count * fraction + 0.5)), least), count - 1)
        held.append(members[:take])
        kept.append(members[take:])
    return torch.sort(torch.cat(kept)).values, torch.sort(torch.cat(held)).values


def resolve_classes(wanted: Sequence[int | str] | str, classes: Sequence[str], data_name: str) -> list[int]:
    """Labels of the ``wanted`` classes, in the order given: ``"5,6,7"``, ``[5, 6, 7]`` or names.

    An item equal to a class name is that class (so a folder set with classes "1", "10", "2"
    is selected by name); any other integer is an index into ``classes``.
    """
    items = [part.strip() for part in wanted.split(",")] if isinstance(wanted, str) else list(wanted)
    items = [item for item in items if str(item).strip() != ""]
    if not items:
        raise ConvlabError(
            f"No classes were chosen from {data_name}; give class numbers or names, e.g. 5,6,7."
        )
    chosen = []
    for item in items:
        text = str(item).strip()
        if text in classes:
            label = list(classes).index(text)
        elif re.fullmatch(r"\d+", text) and int(text) < len(classes):
            label = int(text)
        else:
            listing = ", ".join(f"{index} {name}" for index, name in enumerate(classes))
            raise ConvlabError(
                f"Class '{text}' is not in {data_name}; give numbers 0-{len(classes) - 1} or names ({listing})."
            )
        if label in chosen:
            raise ConvlabError(f"Class '{text}' ({classes[label]}) is chosen twice; name each class once.")
        chosen.append(label)
    return chosen


def select_classes(
    labels: torch.Tensor, chosen: Sequence[int], num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(indices, new labels)`` of the images whose class is ``chosen``, relabelled 0..k-1 in that order."""
    new_label = torch.full((num_classes,), -1, dtype=torch.int64)
    new_label[torch.as_tensor(list(chosen), dtype=torch.int64)] = torch.arange(len(chosen))
    relabelled = new_label[labels.to(torch.int64)]
    kept = torch.nonzero(relabelled >= 0).flatten()
    return kept, relabelled[kept]


def limited_subset(
    labels: torch.Tensor,
    num_classes: int,
    seed: int,
    *,
    limit: int | None = None,
    limit_per_class: int | None = None,
) -> torch.Tensor | None:
    """Sorted indices of the images ``limit`` keeps (stratified), or else ``limit_per_class``; None: all."""
    if limit is not None:
        return stratified_subset(labels, int(limit), seed, num_classes)
    if limit_per_class is not None:
        return per_class_subset(labels, int(limit_per_class), seed, num_classes)
    return None


def per_class_subset(labels: torch.Tensor, per_class: int, seed: int, num_classes: int) -> torch.Tensor:
    """Sorted indices of ``per_class`` images of every class (all of a class that has fewer), seeded."""
    if int(per_class) < 1:
        raise ConvlabError(f"limit_per_class must be a positive number of images, got {per_class}.")
    generator = seeded_generator(seed, SUBSET_STREAM)
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    chosen, start = [], 0
    for count in counts:
        members = order[start : start + count]
        start += count
        chosen.append(members[torch.randperm(count, generator=generator)[: int(per_class)]])
    return torch.sort(torch.cat(chosen)).values


def stratified_subset(labels: torch.Tensor, limit: int, seed: int, num_classes: int) -> torch.Tensor:
    """Sorted indices of ``limit`` images, each class keeping its share (largest remainders, seeded)."""
    if int(limit) < 1:
        raise ConvlabError(f"limit must be a positive number of images, got {limit}.")
    total = labels.numel()
    if limit >= total:
        return torch.arange(total)
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    quota = counts * (limit / total)
    take = torch.floor(quota).to(torch.int64)
    remainder = int(limit - take.sum())
    if remainder:
        # The classes with the largest fractional parts get the images left over (ties: lower label).
        ranking = torch.argsort(-(quota - take), stable=True)
        take[ranking[:remainder]] += 1
    generator = seeded_generator(seed, SUBSET_STREAM)
    order = torch.argsort(labels, stable=True)
    chosen, start = [], 0
    for count, wanted in zip(counts.to(torch.int64).tolist(), take.tolist()):
        members = order[start : start + count]
        start += count
        chosen.append(members[torch.randperm(count, generator=generator)[:wanted]])
    return torch.sort(torch.cat(chosen)).values
