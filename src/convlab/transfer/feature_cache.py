"""``--transfer feature-extract`` with the frozen part run once: the feature cache.

The classifier's input (what ``extract_features`` catches) is computed once for every training and
validation image, kept on the run's device, and the epochs train the head alone on it: an epoch after the
first costs the head's steps, not a forward pass through the backbone. The engine runs those epochs as any
others (``_train_and_validate``: optimizer, schedule, in-epoch checkpoints, metrics.csv, best and last
checkpoints of the whole network, since the head is the network's own classifier), with ``CachedFeatures``
as the data and ``_Head`` as the model; the final test goes through the whole network (docs/transfer.md,
"The feature cache").

The frozen part is a fixed function (eval mode: BatchNorm keeps its statistics), so the cache is exact for a
fixed input; where the plain path's input is not fixed, the cache keeps what reproduces it:

- no augmentation: each image once. The epochs take the plain path's batches (the same seeded order, cut
  the same way), so the head trains on the same numbers up to float rounding.
- ``flip`` alone: each image and its mirror; every epoch takes one of the two per image, drawn by the flip's
  own function from the generator the in-memory loader gives it, batch by batch: for an in-memory set the
  very flips of the plain path, for a folder the same distribution.
- any other random augmentation (crop, random-resized-crop, translate, erase, color-jitter, pca-lighting,
  with or without flip): ``VIEWS`` augmented views of each image, drawn once by the data's own loader as it
  draws epochs 1..VIEWS (unshuffled). Epoch e <= VIEWS takes view e, a fresh draw per epoch as on the plain
  path; a later epoch takes one of the views per image at random (seeded by seed and epoch), where the plain
  path would draw afresh. Chosen over falling back to the plain path: re-running the backbone every epoch for
  new draws would cost what the cache saves, and VIEWS fixed draws per image (the data set enlarged VIEWS-fold
  offline) keep most of what augmentation does for a linear head; a run of VIEWS epochs or fewer gets the
  plain path's distribution exactly (and costs as many backbone passes). --no-feature-cache draws afresh.

Dropout right in front of the classifier (MobileNet's, GoogLeNet's) acts on the classifier's input, so the
head applies that same module to the cached features at every step, as the plain path does. Anything else
the frozen part does differently in training mode (dropout deeper in it: VGG's and AlexNet's fc6/fc7;
ConvNeXt's stochastic depth; auxiliary classifiers, whose losses the plain path adds), a head that is not
one linear map of its input (SqueezeNet's ReLU after its 1x1 convolution), a distributed run, --log-gradients
and a cache over ``CACHE_LIMIT`` bytes keep the run on the plain path, said in train.log in one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from convlab.choices import parse_augment
from convlab.data.augment import flip_batch
from convlab.data.bundle import (
    augment_generator,
    batch_count,
    batch_indices,
    seeded_generator,
    shuffled_order,
)
from convlab.errors import ConvlabError
from convlab.transfer.adapt import find_classifier
from convlab.transfer.features import CHECKED_IMAGES, PROBE_TOLERANCE, _pooled, classifier_inputs
from convlab.transfer.freeze import freeze_batchnorm

VIEWS = 4  # augmented views cached per training image under random augmentations other than flip alone
CACHE_LIMIT = 2 * 2**30  # bytes of features the cache may hold on the run's device; above it, the plain path
EXTRACT_BATCH = 256  # images per forward pass while the cache is built
# seeded_generator(seed, epoch, VIEW_STREAM): which view each image takes in an epoch after the VIEWS-th
VIEW_STREAM = 0xFCA
# Training and eval mode must give the frozen part's output alike (the same operations, BatchNorm in eval
# mode in both): anything above float rounding is a module that computes differently in training.
SAME_OUTPUT_TOLERANCE = 1e-5
# A batch of one image as the flip sees it: [0, 1] along the width, [1, 0] once mirrored.
_FLIP_MARKER = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)


class _Uncached(Exception):
    """Why the run keeps to the plain path (one clause of train.log's line)."""


@dataclasses.dataclass
class _Plan:
    """How the cache reproduces the plain path: ``views`` versions of each training image (``mirror``: the
    image and its mirror; ``augment``: views drawn by the data's loader), ``dropout`` in front of the head."""

    classifier_name: str
    classifier: nn.Module
    features: int
    views: int = 1
    mirror: bool = False
    augment: list[str] = dataclasses.field(default_factory=list)
    dropout: tuple[str, nn.Module] | None = None


class _Head(nn.Module):
    """The network's classifier alone, on cached features: what the cached epochs' steps call. Its parameters
    are the network's own, so the optimizer and the checkpoints of the run see them as they are."""

    def __init__(self, classifier: nn.Module, dropout: nn.Module | None) -> None:
        super().__init__()
        self.classifier = classifier
        self.dropout = dropout  # the network's own module in front of its classifier, or None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            features = self.dropout(features)
        weight = self.classifier.weight
        if weight.ndim == 4:  # a 1x1 convolution, then global average pooling: the same map of the averages
            return F.linear(features, weight.flatten(1), self.classifier.bias)
        return self.classifier(features)


def head_on_cached_features(run):
    """The run as its epochs see it with the feature cache: the head as the model and ``CachedFeatures`` as
    the data (the rest of ``run`` as it is); None where the run trains the plain way, said in train.log."""
    config, progress = run.config, run.progress
    if config.transfer != "feature-extract":
        return None
    if not config.feature_cache:
        progress.note("feature cache: off (--no-feature-cache); every step runs the whole network")
        return None
    try:
        plan = _plan(run)
    except _Uncached as reason:
        progress.note(
            f"feature cache: off, {reason}; every step runs the whole network (as with --no-feature-cache)"
        )
        return None
    head = _Head(plan.classifier, plan.dropout[1] if plan.dropout else None)
    return dataclasses.replace(
        run, bundle=CachedFeatures(run, plan), model=head, step_model=head, transfer=None
    )


def _precision(run) -> tuple[str, bool]:
    """The autocast and layout of the run's forward passes as the engine resolved them (``run.precision``;
    ``config``'s where there is none), so that the cached features are the numbers the plain path's steps
    compute."""
    precision = getattr(run, "precision", None)
    if precision is None:
        return run.config.amp, run.config.channels_last is True
    return precision.amp, precision.channels_last is True


@contextlib.contextmanager
def _model_kept(model: nn.Module):
    """Every module's mode and every buffer as they were, whatever the forward passes inside do."""
    modes = [(module, module.training) for module in model.modules()]
    buffers = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
        with torch.no_grad():
            for buffer, kept in buffers:
                buffer.copy_(kept)


def _rng_kept(device: torch.device):
    """torch's random states as they were: the cache's forward passes draw nothing the run's steps would."""
    return torch.random.fork_rng(devices=[torch.cuda.current_device()] if device.type == "cuda" else [])


def _random_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The modules that draw at random in training mode: dropout of every kind, stochastic depth."""
    from torchvision.ops import StochasticDepth

    kinds = (nn.modules.dropout._DropoutNd, StochasticDepth)
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, kinds) and float(getattr(module, "p", 0.0)) > 0
    }


def _forward(model: nn.Module, classifier: nn.Module, images: torch.Tensor, training: bool) -> dict:
    """One forward pass in eval mode, or in the plain path's training mode (train(), frozen BatchNorm in eval):
    the output, the classifier's inputs, and each random module that ran with its input and output."""
    caught: list[torch.Tensor] = []
    ran: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = [classifier.register_forward_pre_hook(lambda _module, args: caught.append(args[0]))]
    for name, module in _random_modules(model).items():

        def hook(_module, args, output, name=name) -> None:
            ran[name] = (args[0], output)

        handles.append(module.register_forward_hook(hook))
    if training:
        freeze_batchnorm(model.train())
    else:
        model.eval()
    try:
        with torch.no_grad():
            output = model(images)
    finally:
        for handle in handles:
            handle.remove()
    return {"output": output, "inputs": caught, "random": ran}


def _plan(run) -> _Plan:
    """Whether the head can train on cached features exactly as on the plain path, and how (``_Plan``);
    ``_Uncached`` says why not. Two forward passes over the first training images, which leave the model's
    modes, buffers and torch's random states as they were."""
    config, model, bundle, device = run.config, run.model, run.bundle, run.device
    if run.group.distributed:
        raise _Uncached("in a distributed run (each process would need the cache of its own images)")
    if config.log_gradients is not None:
        raise _Uncached("--log-gradients measures every layer, which the cached epochs do not run")
    name, classifier = find_classifier(model)
    images, _ = next(iter(bundle.loader("train", EXTRACT_BATCH, device=device)))
    images = images[:CHECKED_IMAGES]
    # in float32 whatever the run's precision: what is checked is how the network is built, to float32's
    # rounding (bf16's would hide a small transformation of the classifier's output)
    with _rng_kept(device), _model_kept(model):
        plain = _forward(model, classifier, images, training=False)
        trained = _forward(model, classifier, images, training=True)
    if len(plain["inputs"]) != 1 or len(trained["inputs"]) != 1:
        raise _Uncached(f"the classifier {name} runs {len(plain['inputs'])} times in a forward pass")
    if isinstance(trained["output"], (tuple, list)):
        raise _Uncached("the auxiliary classifiers' losses are part of every training step's loss")
    inputs = plain["inputs"][0]
    linear = isinstance(classifier, nn.Linear) and inputs.ndim == 2
    pooled = isinstance(classifier, nn.Conv2d) and inputs.ndim == 4 and classifier.groups == 1
    if not (linear or pooled):
        raise _Uncached(f"the classifier {name} reads a {inputs.ndim}-dimensional input")
    features = _pooled(inputs).float()
    head = _Head(classifier, None)
    with torch.no_grad():
        mapped = head(features).double()
    logits = plain["output"].double()
    gap = float((logits - mapped).abs().max())
    if not gap <= PROBE_TOLERANCE * max(1.0, float(mapped.abs().max())):
        raise _Uncached(
            f"the network transforms its classifier's output (its logits differ from {name}'s linear map of "
            f"its input by {gap:.3g})"
        )

    # Random modules that ran in training mode: one feeding the classifier directly is applied to the cache
    # at every step; any other one inside the frozen part cannot be.
    classifier_input = trained["inputs"][0]
    feeding = [n for n, (_, output) in trained["random"].items() if output is classifier_input]
    deeper = sorted(set(trained["random"]) - set(feeding))
    if deeper:
        raise _Uncached(
            f"{', '.join(deeper)} {'draws' if len(deeper) == 1 else 'draw'} at random in training mode inside "
            "the frozen part (dropout, stochastic depth), which fixed features cannot reproduce"
        )
    dropout = None
    if feeding:
        if not linear:
            raise _Uncached(
                f"{feeding[0]} drops parts of the map the 1x1-convolution classifier reads, and the cache keeps "
                "its average"
            )
        dropout = (feeding[0], model.get_submodule(feeding[0]))
        classifier_input = trained["random"][feeding[0]][0]  # what the dropout received
    difference = float((classifier_input.float() - inputs.float()).abs().max())
    if not difference <= SAME_OUTPUT_TOLERANCE * max(1.0, float(inputs.float().abs().max())):
        raise _Uncached(
            f"the frozen part computes otherwise in training mode (its output differs from eval mode's by "
            f"{difference:.3g})"
        )

    plan = _Plan(name, classifier, features.shape[1], dropout=dropout)
    augment = parse_augment(config.augment)
    if augment == ["flip"]:
        plan.views, plan.mirror = 2, True
    elif augment:
        plan.views, plan.augment = min(VIEWS, int(config.epochs)), augment
    train, val = bundle.size("train"), (bundle.size("val") if "val" in bundle.splits() else 0)
    size = (plan.views * train + val) * plan.features * 4
    if size > CACHE_LIMIT:
        raise _Uncached(
            f"its {plan.views} x {train:,} training and {val:,} validation images' {plan.features} features "
            f"would take {size / 2**30:.1f} GiB, above the {CACHE_LIMIT / 2**30:g} GiB it may"
        )
    return plan


class CachedFeatures:
    """The training and validation splits as the classifier's inputs, computed at the first ``loader`` call
    (so that the backbone's one pass counts in the first epoch's seconds): the data the cached epochs read in
    place of the images, with a DataBundle's ``loader``, ``splits``, ``size``, ``name`` and ``classes``."""

    def __init__(self, run, plan: _Plan) -> None:
        self._run, self.plan = run, plan
        bundle = run.bundle
        self.name, self.classes, self.source = bundle.name, list(bundle.classes), bundle.source
        self._splits = [split for split in ("train", "val") if split in bundle.splits()]
        self.features: dict[str, torch.Tensor] = {}  # split -> (views, images, features)
        self.labels: dict[str, torch.Tensor] = {}
        self.built_seconds: float | None = None

    def splits(self) -> list[str]:
        return list(self._splits)

    def size(self, split: str) -> int:
        return self._run.bundle.size(split)

    def loader(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment=(),
        epoch: int = 0,
        seed: int = 0,
        device=None,
        drop_last: bool = False,
        shard=None,
        crop_padding=None,
    ) -> CachedLoader:
        """``bundle.loader`` on the cache: the batches of the plain path's order, each image's cached view for
        ``epoch`` (``augment`` and ``crop_padding`` are the plan's already); ``device`` and ``shard`` are the
        run's."""
        if split not in self._splits:
            raise ConvlabError(f"The feature cache holds no '{split}' split.")
        self.build()
        return CachedLoader(
            self, split, int(batch_size), bool(shuffle), int(epoch), int(seed), bool(drop_last)
        )

    def build(self) -> None:
        """The backbone's one pass (once per process: a resumed run builds it again), said in train.log."""
        if self.features:
            return
        run, plan = self._run, self.plan
        bundle, device, seed = run.bundle, run.device, run.config.seed
        start = time.perf_counter()
        with _rng_kept(device), _model_kept(run.model):
            views: list[torch.Tensor] = []
            for view in range(1 if plan.mirror else plan.views):
                # the data's own augmentation as it draws epoch view + 1, in the split's order
                loader = bundle.loader(
                    "train",
                    EXTRACT_BATCH,
                    augment=plan.augment,
                    epoch=view + 1,
                    seed=seed,
                    device=device,
                    crop_padding=run.config.crop_padding,
                )
                found, labels = self._extract(loader, "train", mirror=plan.mirror)
                views += found
            self.features["train"], self.labels["train"] = torch.stack(views), labels
            if "val" in self._splits:
                found, labels = self._extract(bundle.loader("val", EXTRACT_BATCH, device=device), "val")
                self.features["val"], self.labels["val"] = torch.stack(found), labels
        self.built_seconds = time.perf_counter() - start
        run.progress.note(self.describe())

    def _extract(self, loader, split: str, mirror: bool = False) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The classifier's inputs (pooled) of ``loader``'s images, in its order, and their labels; with
        ``mirror``, those of the mirrored images as a second tensor."""
        run = self._run
        amp, channels_last = _precision(run)
        found, labels = classifier_inputs(
            run.model,
            loader,
            f"feature cache {split}",
            amp=amp,
            device=run.device,
            channels_last=channels_last,
            mirror=mirror,
        )
        if labels.numel() != self.size(split):
            raise ConvlabError(
                f"{self.size(split) - labels.numel()} image(s) of the {split} split could not be read while the "
                "feature cache was built; train with --no-feature-cache, which skips them batch by batch."
            )
        return found, labels.to(run.device)

    def describe(self) -> str:
        """train.log's line: what the backbone ran over, how augmentation is reproduced, what the epochs do."""
        plan = self.plan
        train = f"{self.size('train'):,} training images"
        if plan.mirror:
            ran = f"ran once over the {train} and their mirrors"
        elif plan.views > 1:
            ran = f"ran over {plan.views} views of each of the {train}"
        else:
            ran = f"ran once over the {train}"
        if "val" in self._splits:
            ran += f" and the {self.size('val'):,} validation images"
        parts = [
            f"feature cache: the frozen backbone {ran} ({plan.features} features each, {self.built_seconds:.1f} s)"
        ]
        if plan.mirror:
            parts.append(
                "flip: every epoch takes each image or its mirror, drawn as the plain path draws the flip"
            )
        elif plan.views > 1:
            later = (
                f", later epochs one of the {plan.views} per image at random" if plan.views == VIEWS else ""
            )
            parts.append(
                f"{', '.join(plan.augment)} drawn once per view with the run's seed: epochs 1-{plan.views} take "
                f"one view each{later}, where the plain path draws afresh every epoch"
            )
        if plan.dropout is not None:
            name, module = plan.dropout
            parts.append(
                f"the network's dropout {name} (p={module.p:g}) in front of the classifier is applied to the "
                "cached features at every step"
            )
        parts.append(
            f"the epochs train the head {plan.classifier_name} alone on them (--no-feature-cache: the whole "
            "network every step)"
        )
        return "; ".join(parts)

    def view_of(self, epoch: int, seed: int) -> torch.Tensor | None:
        """Which of the ``VIEWS`` augmented views each training image takes in ``epoch`` (None: one view only,
        or the mirror's draw, which ``CachedLoader`` makes batch by batch)."""
        views = self.plan.views
        if self.plan.mirror or views == 1:
            return None
        if epoch <= views:
            return torch.full((self.size("train"),), max(epoch, 1) - 1, dtype=torch.int64)
        return torch.randint(
            views, (self.size("train"),), generator=seeded_generator(seed, epoch, VIEW_STREAM)
        )


class CachedLoader:
    """One pass over a split of the cache: the plain loader's batches (``shuffled_order`` and ``batch_indices``
    of the same seed and epoch), each image's features in the view its epoch takes."""

    def __init__(
        self,
        cache: CachedFeatures,
        split: str,
        batch_size: int,
        shuffle: bool,
        epoch: int,
        seed: int,
        drop_last: bool,
    ) -> None:
        self.cache, self.split, self.batch_size, self.shuffle = cache, split, batch_size, shuffle
        self.epoch, self.seed, self.drop_last = epoch, seed, drop_last

    def __len__(self) -> int:
        return batch_count(self.cache.size(self.split), self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cache, split = self.cache, self.split
        features, labels = cache.features[split], cache.labels[split]
        device, count = labels.device, labels.numel()
        order = shuffled_order(count, self.seed, self.epoch) if self.shuffle else torch.arange(count)
        training = split == "train"
        views = cache.view_of(self.epoch, self.seed) if training else None
        mirror = training and cache.plan.mirror
        generator = augment_generator(self.seed, self.epoch, None)
        for indices in batch_indices(order, self.batch_size, self.drop_last):
            if mirror:  # the flip's own draw for this batch, from the generator the in-memory loader gives it
                flipped = flip_batch(_FLIP_MARKER.expand(indices.numel(), 1, 1, 2), generator)
                view = flipped[:, 0, 0, 0].long()
            elif views is not None:
                view = views[indices]
            else:
                view = torch.zeros_like(indices)
            indices = indices.to(device)
            yield features[view.to(device), indices], labels[indices]
