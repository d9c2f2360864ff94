"""In-memory data sets: every image decoded once into one uint8 (N, C, H, W) tensor.

Conversion (channels, size) happens once at load; a batch is one gather from that tensor
(on the training device once it has been copied there) plus the batched augmentation of
augment.py: this is the fast path for every named set.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from convlab.data.augment import BatchAugment
from convlab.data.bundle import (
    DataBundle,
    Holdout,
    Shard,
    augment_generator,
    batch_count,
    batch_indices,
    check_target,
    limited_subset,
    resolve_classes,
    select_classes,
    shuffled_order,
    stratified_split,
)
from convlab.data.images import resize_image, to_channels
from convlab.errors import ConvlabError

# Resizing to a large size (e.g. Fashion-MNIST at 224x224 for AlexNet) would multiply memory by
# 64; above this many bytes the images stay at their own size and each batch is resized instead.
RESIZE_AT_LOAD_MAX_BYTES = 2 * 1024**3
RESIZE_CHUNK = 2048  # images per resize call at load: bounds the float temporaries of antialiasing
STATISTICS_SAMPLE = 5000  # images resized to measure mean/std when the set is resized per batch


class MemoryBundle(DataBundle):
    """A data set held as one uint8 tensor; splits are index tensors into it."""

    def __init__(
        self,
        *,
        name: str,
        classes: Sequence[str],
        images: torch.Tensor,
        labels: torch.Tensor,
        split_indices: dict[str, torch.Tensor],
        source: str,
        skipped=(),
        in_chans: int | None = None,
        image_size: Sequence[int] | None = None,
        resize: str = "squash",
        ignored=(),
        file_sizes=None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise TypeError(
                f"MemoryBundle takes uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}"
            )
        in_chans = int(in_chans or images.shape[1])
        image_size = tuple(int(s) for s in (image_size or images.shape[-2:]))
        check_target(in_chans, image_size)
        self._original = images  # kept so that resized()/with_channels() always start from the file's pixels
        self._labels = labels.to(torch.int64)
        self._split_indices = {
            split: idx for split, idx in split_indices.items() if idx.numel() > 0 or split == "train"
        }
        stored = images
        if stored.shape[1] == 3 and in_chans == 1:
            stored = _convert_in_chunks(stored, lambda x: to_channels(x, 1))
        # Gray -> RGB stays one channel in memory; the batch is expanded after the gather (a view, free).
        self._expand_channels = stored.shape[1] == 1 and in_chans == 3
        self._resize_per_batch = False
        if tuple(stored.shape[-2:]) != image_size:
            resized_bytes = stored.shape[0] * stored.shape[1] * image_size[0] * image_size[1]
            if resized_bytes <= RESIZE_AT_LOAD_MAX_BYTES:
                stored = _convert_in_chunks(stored, lambda x: resize_image(x, image_size, resize))
            else:
                self._resize_per_batch = True
        self._images = stored
        self.image_size, self.resize = image_size, resize
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._lighting: tuple[torch.Tensor, torch.Tensor] | None = None
        mean, std = self._channel_statistics()
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

    # -- the contract -------------------------------------------------------------------------------
    def _has_split(self, split: str) -> bool:
        return split in self._split_indices

    def labels(self, split: str) -> torch.Tensor:
        return self._labels[self._split_indices[self.check_split(split)]]

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
    ) -> MemoryLoader:
        augmenter = BatchAugment(
            augment,
            self.mean,
            self.std,
            self.image_size,
            self.in_chans,
            lighting=self.lighting,
            crop_padding=crop_padding,
        )
        return MemoryLoader(
            self, split, batch_size, shuffle, augmenter, epoch, seed, device, drop_last, shard
        )

    def _converted(self, in_chans: int, image_size: Sequence[int]) -> MemoryBundle:
        return MemoryBundle(
            name=self.name,
            classes=self.classes,
            images=self._original,
            labels=self._labels,
            split_indices=self._split_indices,
            source=self.source,
            skipped=self.skipped,
            in_chans=in_chans,
            image_size=image_size,
            resize=self.resize,
            ignored=self.ignored,
            file_sizes=self.file_sizes,
        )

    def _tensors_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels on ``device``, copied there once and kept (the whole set fits: it is small)."""
        if device.type == "cpu":
            return self._images, self._labels
        if device not in self._on_device:
            self._on_device[device] = (self._images.to(device), self._labels.to(device))
        return self._on_device[device]

    def _train_images(self) -> torch.Tensor:
        return self._images[self._split_indices["train"]]

    def _channel_statistics(self) -> tuple[list[float], list[float]]:
        """Exact per-channel mean and std of the training split on the 0-1 scale, from 256-bin histograms
        (bincount on uint8 is far faster than a float mean/var over the same pixels:
        docs/performance.md#smaller-measured-choices)."""
        train = self._train_images()
        if self._resize_per_batch:  # measured on the delivered size: from an evenly spaced sample, resized
            step = max(1, train.shape[0] // STATISTICS_SAMPLE)
            train = _convert_in_chunks(train[::step], lambda x: resize_image(x, self.image_size, self.resize))
        values = torch.arange(256, dtype=torch.float64) / 255
        means, stds = [], []
        for channel in range(train.shape[1]):
            histogram = torch.bincount(train[:, channel].reshape(-1), minlength=256).to(torch.float64)
            count = histogram.sum().clamp(min=1)
            mean = (histogram * values).sum() / count
            variance = (histogram * (values - mean) ** 2).sum() / count
            means.append(float(mean))
            stds.append(max(float(variance.sqrt()), 1e-3))  # a constant channel must not divide by zero
        if self._expand_channels:
            means, stds = means * 3, stds * 3
        return means, stds

    def lighting(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigenvalues and eigenvectors of the training split's RGB covariance (0-1 scale), computed once."""
        if self._lighting is None:
            train = self._train_images()
            channels = train.shape[1]
            total = torch.zeros(channels, dtype=torch.float64)
            products = torch.zeros(channels, channels, dtype=torch.float64)
            count = 0
            for chunk in train.split(RESIZE_CHUNK):
                pixels = chunk.permute(0, 2, 3, 1).reshape(-1, channels).to(torch.float64) / 255
                total += pixels.sum(0)
                products += pixels.T @ pixels
                count += pixels.shape[0]
            mean = total / max(count, 1)
            covariance = products / max(count, 1) - torch.outer(mean, mean)
            if self._expand_channels:
                covariance = covariance.expand(3, 3).clone()
            eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
            self._lighting = (eigenvalues.float(), eigenvectors.float())
        return self._lighting


class MemoryLoader:
    """Batches of one split: a fresh iterator each time; order and augmentation fixed by (seed, epoch). With a
    ``shard``, this process's part of each batch: every process draws the same order and takes its slice."""

    def __init__(
        self,
        bundle: MemoryBundle,
        split: str,
        batch_size: int,
        shuffle: bool,
        augmenter: BatchAugment,
        epoch: int,
        seed: int,
        device: torch.device,
        drop_last: bool,
        shard: Shard | None = None,
    ) -> None:
        self.bundle, self.split, self.batch_size = bundle, split, batch_size
        self.shuffle, self.augmenter, self.epoch, self.seed = shuffle, augmenter, epoch, seed
        self.device, self.drop_last, self.shard = device, drop_last, shard
        self.num_images = bundle._split_indices[split].numel()

    def __len__(self) -> int:
        if self.shard is not None:
            return self.shard.batches(self.num_images, self.batch_size, self.drop_last)
        return batch_count(self.num_images, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        bundle = self.bundle
        images, labels = bundle._tensors_on(self.device)
        order = bundle._split_indices[self.split]
        if self.shuffle:  # its own stream: the order does not change when augmentations are added
            order = order[shuffled_order(order.numel(), self.seed, self.epoch)]
        order = order.to(self.device)
        generator = augment_generator(self.seed, self.epoch, self.shard)
        for indices in batch_indices(order, self.batch_size, self.drop_last, self.shard):
            # index_select, not images[indices]: far faster on the CPU (docs/performance.md#smaller-measured-choices)
            batch_images = images.index_select(0, indices)
            if bundle._expand_channels:
                batch_images = batch_images.expand(-1, 3, -1, -1)
            if bundle._resize_per_batch:
                batch_images = resize_image(batch_images, bundle.image_size, bundle.resize)
            yield self.augmenter(batch_images, generator), labels.index_select(0, indices)


def _convert_in_chunks(images: torch.Tensor, convert) -> torch.Tensor:
    return torch.cat([convert(chunk) for chunk in images.split(RESIZE_CHUNK)])


def build_memory_bundle(
    name: str,
    classes: Sequence[str],
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor | None = None,
    test_labels: torch.Tensor | None = None,
    *,
    val_split: float | Holdout = 0.1,
    seed: int = 0,
    limit: int | None = None,
    in_chans: int | None = None,
    image_size: Sequence[int] | None = None,
    source: str = "",
    skipped=(),
    keep_classes: Sequence[int | str] | str | None = None,
    limit_per_class: int | None = None,
    resize: str = "squash",
) -> MemoryBundle:
    """A MemoryBundle from a training pool and an optional test split: only the ``keep_classes``
    (relabelled 0..k-1) in every split, ``limit`` images (stratified) or ``limit_per_class`` of each
    class kept from the pool (seeded), then a stratified ``val_split`` of them held out as validation."""
    train_labels = torch.as_tensor(train_labels, dtype=torch.int64)
    _check_labels(name, classes, train_labels)
    if keep_classes is not None:
        chosen = resolve_classes(keep_classes, classes, name)
        kept, train_labels = select_classes(train_labels, chosen, len(classes))
        train_images = train_images[kept]
        if test_labels is not None:
            test_labels = torch.as_tensor(test_labels, dtype=torch.int64)
            _check_labels(name, classes, test_labels)
            kept, test_labels = select_classes(test_labels, chosen, len(classes))
            test_images = test_images[kept]
        classes = [classes[label] for label in chosen]
    kept = limited_subset(train_labels, len(classes), seed, limit=limit, limit_per_class=limit_per_class)
    if kept is not None:
        train_images, train_labels = train_images[kept], train_labels[kept]
    try:
        train_idx, val_idx = stratified_split(train_labels, val_split, seed, classes)
    except ConvlabError as error:
        if kept is None:
            raise
        setting = f"limit={limit}" if limit is not None else f"limit_per_class={limit_per_class}"
        raise ConvlabError(f"{error} ({setting} keeps too few images per class.)") from None
    parts, pool_labels = [train_images], [train_labels]
    split_indices = {"train": train_idx, "val": val_idx}
    if test_images is not None and test_labels is not None and len(test_labels) > 0:
        test_labels = torch.as_tensor(test_labels, dtype=torch.int64)
        _check_labels(name, classes, test_labels)
        start = train_labels.numel()
        split_indices["test"] = torch.arange(start, start + test_labels.numel())
        parts.append(test_images)
        pool_labels.append(test_labels)
    images = torch.cat(parts) if len(parts) > 1 else train_images
    return MemoryBundle(
        name=name,
        classes=classes,
        images=images.contiguous(),
        labels=torch.cat(pool_labels),
        split_indices=split_indices,
        source=source,
        skipped=skipped,
        in_chans=in_chans,
        image_size=image_size,
        resize=resize,
    )


def _check_labels(name: str, classes: Sequence[str], labels: torch.Tensor) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
        raise ConvlabError(
            f"{name} has labels from {int(labels.min())} to {int(labels.max())}, but {len(classes)} classes; "
            f"the label files do not belong to these images or are damaged."
        )
