"""What a run trains on and what it trains: the data at its size, split and batch, and the network fitted
to it (a zoo model, your own, or a source's), each choice said in the log. ``engine`` runs them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from convlab.analysis import check_input_size
from convlab.analysis.input_check import working_sizes
from convlab.checkpoint import read_record
from convlab.choices import (
    DEFAULT_BATCH,
    FOLDER_IMAGE_SIZE,
    RESIZE_DESCRIPTIONS,
)
from convlab.data import DataBundle, Holdout, load_data
from convlab.data.load import source_kind
from convlab.errors import ConvlabError
from convlab.layers.init import init_weights
from convlab.models import ModelSpec, create_model, get_model_info, is_reference, spec_for_network
from convlab.models.user import check_logits
from convlab.training.config import TrainConfig
from convlab.training.progress import TrainProgress

# A batch of one breaks batch norm (one value per channel): the smallest batch a small set gets.
SMALLEST_DEFAULT_BATCH = 2


def default_batch_size(train_images: int) -> int:
    """DEFAULT_BATCH, or about a tenth of a small training set, so that an epoch still takes about ten steps
    (80 photos in one batch of 64 and a remainder would learn from one step an epoch)."""
    return max(SMALLEST_DEFAULT_BATCH, min(DEFAULT_BATCH, train_images // 10))


def resolve_batch_size(
    config: TrainConfig, bundle: DataBundle, progress: TrainProgress, processes: int = 1
) -> None:
    """Fill in the batch size when none was given (config.yaml then records it, and a resume keeps it). For
    a distributed run it is the batch of all ``processes`` together: a multiple of their number, at least
    SMALLEST_DEFAULT_BATCH for each."""
    if config.batch_size is not None:
        return
    images = bundle.size("train")
    batch = default_batch_size(images)
    config.batch_size = max(SMALLEST_DEFAULT_BATCH * processes, batch - batch % processes)
    if batch < DEFAULT_BATCH:
        progress.note(
            f"batch {config.batch_size}: about a tenth of the {images} training images, so that an epoch takes "
            f"about ten steps (--batch-size chooses another)"
        )


# Validation figures from one or two images of a class are noise: a class gives at least this many
# (where it keeps as many to train on), even below ``val_split`` of it.
MIN_VAL_PER_CLASS = 3


def holdout_of(config: TrainConfig) -> Holdout:
    """The validation split a run holds out: ``val_split`` of each class (at least a few), or its fold."""
    return Holdout(
        fraction=config.val_split, min_per_class=MIN_VAL_PER_CLASS, fold=config.fold, folds=config.folds
    )


def run_data(
    config: TrainConfig, progress: TrainProgress | None = None, build_cache: bool = True
) -> DataBundle:
    """The data the configuration names, at the size and with the classes it asks for: a named set or IDX
    files at their own size unless a size is asked, a folder at ``folder_image_size``. A folder trained for
    more than one epoch is first decoded into its cache (``auto_cache_folder``) where ``build_cache``."""
    image_size = tuple(config.image_size) if config.image_size else None
    folder = source_kind(config.data) == "folder"
    if folder:
        image_size = folder_image_size(config)[0]

    def load() -> DataBundle:
        return load_data(
            config.data,
            data_root=config.data_root,
            image_size=image_size,
            resize=config.resize,  # None: crop for a folder, squash for the rest (convlab.data.load_data)
            in_chans=config.in_chans,
            val_split=holdout_of(config),
            seed=config.seed,
            limit=config.limit,
            classes=config.classes,
            limit_per_class=config.limit_per_class,
        )

    if folder and build_cache and config.folder_cache == "auto" and config.epochs > 1:
        note = auto_cache_folder(config, image_size)
        if note is not None and progress is not None:
            progress.note(note)
    bundle = load()
    if config.num_classes is not None and config.num_classes != len(bundle.classes):
        raise ConvlabError(
            f"--num-classes {config.num_classes} does not match data '{bundle.name}', which has "
            f"{len(bundle.classes)} classes; leave --num-classes out to use the data's."
        )
    return bundle


# The decode-once cache is built without asking up to this size: beyond it, `convlab data cache` does it on
# request. 8 GiB holds about 55,000 images at 3x224x224 (150 KB each).
AUTO_CACHE_BYTES = 8 * 2**30
CACHE_BUILT = "decode-once cache: decoded"


def auto_cache_folder(config: TrainConfig, image_size: tuple[int, int]) -> str | None:
    """Decode every image of the folder ``config.data`` once, at the run's channels, size and resize rule,
    into convlab's decode-once cache (convlab.data.cache), unless a current one is there: every epoch then
    reads one memory-mapped array instead of decoding each file again. Fine-tuning ResNet-18 at 224x224 on
    2,000 JPEGs of a few hundred pixels, decoding took a third of what the 2 cores did besides the
    network's arithmetic (docs/performance.md). The cache is also what the run then verifies the files and
    takes its statistics from, so the folder is decoded once in all, not once to check it and once to cache.

    Returns the line the run's log shows: what was built (starting with CACHE_BUILT), or why it was not;
    None when a current cache is there. A cache that cannot be written leaves the run decoding every epoch,
    as before, and says so: it never stops a run."""
    from convlab.data.cache import cache_folder, cache_home, load_cached_folder
    from convlab.data.folder import FOLDER_RESIZE, scan_folder

    root = Path(config.data).expanduser()
    rule = config.resize or FOLDER_RESIZE
    current, _ = load_cached_folder(root, image_size=image_size, in_chans=config.in_chans, resize=rule)
    if current is not None:
        return None
    files = sum(len(pairs) for pairs in scan_folder(root).layout.values())
    height, width = image_size
    needed = files * (config.in_chans or 3) * height * width
    home = cache_home()
    existing = next(parent for parent in (home, *home.parents) if parent.exists())
    free = shutil.disk_usage(existing).free
    if needed > AUTO_CACHE_BYTES or needed * 2 > free:
        return (
            f"decode-once cache: not built ({needed / 1e9:.1f} GB for {files:,} images at {height}x{width}, "
            f"above the {AUTO_CACHE_BYTES / 2**30:.0f} GiB convlab builds unasked, or more than half the "
            f"{free / 1e9:.1f} GB free under {home}); every epoch decodes the files (`convlab data cache "
            f"{config.data} --image-size {height}x{width}` builds it on request)"
        )
    try:
        # The decoding DataLoader draws its workers' base seed from torch's global generator: kept out of the
        # run's random stream, so that building the cache leaves the run's weights as they would have been.
        with torch.random.fork_rng(devices=[]):
            info = cache_folder(root, image_size=image_size, in_chans=config.in_chans, resize=rule)
    except OSError as error:  # WriteError among them
        return (
            f"decode-once cache: could not be written under {home} ({error}); every epoch decodes the files"
        )
    return (
        f"{CACHE_BUILT} {info.images:,} images once at {info.in_chans}x{height}x{width} in {info.seconds:.1f} s "
        f"({info.bytes / 1e6:,.0f} MB under {home}); every epoch reads them from there, and so does the next "
        f"run on this folder until a file changes (--folder-cache off decodes every epoch instead)"
    )


def folder_image_size(config: TrainConfig) -> tuple[tuple[int, int], str]:
    """The (H, W) a folder of photos trains at, and why: the size asked, else the model's declared input size
    (ModelInfo.input_size, the size its paper feeds it), else FOLDER_IMAGE_SIZE for a network of your own,
    which declares none. Never the photos' own size: a 3024x4032 phone photo costs 12,000x the multiply-adds
    of a 32x32 one in every convolution, and a folder of mixed sizes has no size of its own."""
    if config.image_size:
        source = "the pretrained source's input size or --image-size" if config.pretrained else "--image-size"
        return (int(config.image_size[0]), int(config.image_size[1])), source
    if not is_reference(config.model):
        _, height, width = get_model_info(config.model).input_size
        return (height, width), f"{config.model}'s declared input size"
    return (FOLDER_IMAGE_SIZE, FOLDER_IMAGE_SIZE), "convlab's size for a network that declares none"


def folder_input_notes(config: TrainConfig, bundle: DataBundle) -> list[str]:
    """For folder data: the size and resize rule training uses and why (one line), and the bundle's warning
    when most images are much larger or smaller than that size."""
    if source_kind(config.data) != "folder":
        return []
    (height, width), why = folder_image_size(config)
    rule = bundle.resize
    rule_why = "--resize" if config.resize else "the default for folders"
    lines = [
        f"images resized to {height}x{width} ({why}) by {rule} ({rule_why}): {RESIZE_DESCRIPTIONS[rule]}; "
        f"--image-size and --resize choose others"
    ]
    warning = bundle.size_warning()
    return lines + ([warning] if warning else [])


def network_for_run(
    config: TrainConfig, bundle: DataBundle, run_dir: Path, resuming: bool, network: nn.Module | None
) -> nn.Module:
    """The network to train: the one given, else (resuming a network of yours) the one its run folder
    records, built from the copy the folder keeps (the original file may have moved), else ``build_model``."""
    if network is not None:
        if config.activation is not None:
            raise ConvlabError(
                f"--activation {config.activation} replaces a zoo model's activation; a network you built "
                f"has its own (leave activation out)."
            )
        return init_weights(network, config.init)
    if resuming:
        spec = read_record(run_dir / "last.safetensors").model
        if spec.code is not None:
            return spec.build()
    return build_model(config, bundle)


def is_own_network(model: nn.Module) -> bool:
    """A network of the user's: one without a spec, or built by a builder that is not the zoo's."""
    spec = getattr(model, "convlab_spec", None)
    return not isinstance(spec, ModelSpec) or spec.code is not None


def network_label(model: nn.Module) -> str:
    spec = getattr(model, "convlab_spec", None)
    return spec.name if isinstance(spec, ModelSpec) else type(model).__name__


def record_own_network(model: nn.Module, bundle: DataBundle, config: TrainConfig) -> None:
    """Check that a network of yours gives logits for the data's classes, then record how to rebuild it
    (its spec, with the input size the data now has)."""
    shape = (bundle.in_chans, *bundle.image_size)
    check_logits(model, network_label(model), shape, len(bundle.classes), bundle.name)
    spec = spec_for_network(model, len(bundle.classes), bundle.in_chans, shape, config.options)
    model.convlab_spec = spec if spec.code is None else spec.sized(shape)  # a zoo model keeps its own


def build_model(config: TrainConfig, bundle) -> nn.Module:
    """``create_model`` for the data's classes and channels, with the run's init, activation and options."""
    options = dict(config.options)
    if config.activation is not None:
        options["activation"] = config.activation
    height, width = bundle.image_size
    if (
        not is_reference(config.model)
        and "input_size" in get_model_info(config.model).options
        and "input_size" not in options
        and height == width
    ):
        options["input_size"] = height  # models sized by an option (the MLP's input layer) follow the data
    return create_model(
        config.model, num_classes=len(bundle.classes), in_chans=bundle.in_chans, init=config.init, **options
    )


def fit_input_size(model: nn.Module, bundle, config: TrainConfig, progress: TrainProgress):
    """Resize the data to the nearest size the model takes (LeNet-5: 28x28 -> 32x32), unless a size was chosen."""
    channels, height, width = size = (bundle.in_chans, *bundle.image_size)
    try:
        check_input_size(model, size)
        return bundle
    except ConvlabError:
        if config.image_size is not None:
            raise  # the user's size: the inspector's message says what would work
        smallest, largest = working_sizes(model, channels, max(height, width))
        if smallest is not None and min(height, width) < smallest:
            side = smallest
        elif largest is not None and max(height, width) > largest:
            side = largest
        else:
            raise
    progress.note(
        f"{config.model} cannot take {height}x{width} images; resizing {bundle.name} to {side}x{side}, "
        f"the nearest size it takes (choose one with --image-size)"
    )
    return bundle.resized((side, side))


def drops_last_batch(bundle: DataBundle, batch_size: int) -> bool:
    """Whether training drops the last partial batch: it does, because a batch of one breaks BatchNorm and
    the order is reshuffled each epoch, so every image is still seen; a training set of one batch or less
    keeps it, or there would be no step at all."""
    return bundle.size("train") > batch_size


def data_text(bundle: DataBundle) -> str:
    """``fashion-mnist (54000 images, 1x28x28)``, as the first line of train.log names the data."""
    height, width = bundle.image_size
    return f"{bundle.name} ({bundle.size('train')} images, {bundle.in_chans}x{height}x{width})"
