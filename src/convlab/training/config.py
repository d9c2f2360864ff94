"""The training configuration: one dataclass of plain values, read from YAML and overridden by flags.

Precedence: TrainConfig's defaults < the YAML file (``--config``) < explicit overrides (CLI
flags or ``train(**overrides)``). The resolved configuration is saved as the run's config.yaml.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from convlab.choices import (
    ACTIVATIONS,
    FOLDER_CACHE_MODES,
    INIT_SCHEMES,
    MODEL_ARGUMENTS,
    OPTIMIZERS,
    SCHEDULES,
    TRAINABLE_FORMS,
    TRAINING_PRECISIONS,
    TRANSFER_MODES,
    check_resize,
    check_tta,
    parse_augment,
)
from convlab.errors import ConvlabError, unknown_name_error
from convlab.files import atomic_write
from convlab.threads import parse_threads
from convlab.training.recipes import RECIPES, recipe_settings

DEVICES = ("auto", "cpu", "cuda")  # and "cuda:N"


@dataclass
class TrainConfig:
    """Everything a training run depends on; the run folder's config.yaml holds one of these."""

    recipe: str | None = None  # a named configuration (convlab.training.recipes) under the file and the flags
    model: str = (
        "lenet5"  # a zoo name, or your own network: path/to/file.py:function, package.module:function
    )
    data: str = "fashion-mnist"
    epochs: int = 10
    batch_size: int | None = None  # None: DEFAULT_BATCH, or about a tenth of a small training set
    optimizer: str = "momentum"
    # None: the optimizer's default for the batch size (convlab.choices.default_lr); "auto": the
    # learning-rate range test's suggestion (convlab.training.lr_range), found before the first epoch
    lr: float | str | None = None
    momentum: float | None = None  # None: the optimizer's default
    weight_decay: float | None = None  # None: the optimizer's default (0, or 0.01 for adamw)
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    clip_value: float | None = None
    clip_norm: float | None = None
    label_smoothing: float = 0.0
    augment: list[str] = field(default_factory=list)
    # the zero border of the crop augmentation in pixels; None: an eighth of the image side
    crop_padding: int | None = None
    init: str = "default"
    activation: str | None = None  # None: the model's own activation
    # "auto": bf16 where the device has bf16 matrix units and the model is wide enough to gain, else float32,
    # decided at every start (a resume decides again) and said in train.log (convlab.runtime.choose_precision)
    amp: str = "auto"
    test_tta: str | None = None  # test-time augmentation of the final test evaluation: flip, shift, tencrop
    # Speed levers (docs/performance.md): they change how fast a run goes, not what it computes
    # (beyond float rounding), so a resumed run may change them.
    # NHWC activations: oneDNN's fast convolution layout, above all with bf16; "auto": for models with 2-d convolutions
    channels_last: bool | str = "auto"
    compile: bool = False  # torch.compile the model for training (pays only when steps are long enough)
    # torch intra-op threads: N, "auto" (the idle cores: convlab.threads), None (as the process has)
    threads: int | str | None = "auto"
    # a distributed run on GPUs: BatchNorm normalises with the statistics of the whole batch, every
    # process's part together (torch's SyncBatchNorm), instead of each process's part alone
    sync_bn: bool = False
    seed: int = 0
    out: str | None = None  # None: runs/<model>-<data>-<YYYYmmdd-HHMMSS>
    resume: str | None = None
    early_stop: int | None = None  # patience in epochs without a better val top-1
    # state.pt every N optimizer steps inside an epoch as well (None: at epoch ends only): a killed run
    # resumes from the last of them, so it loses at most N steps
    checkpoint_every: int | None = None
    # per-layer gradient, weight and update norms and dead/saturated units every N steps (None: off),
    # into gradients.csv and TensorBoard (convlab.training.gradients)
    log_gradients: int | None = None
    device: str = "auto"
    data_root: str | None = None
    val_split: float = 0.1
    folds: int | None = None  # K-fold cross-validation: K runs, each holding out one fold as validation
    fold: int | None = None  # which fold this run holds out (set by cross-validation for each of its runs)
    # [H, W]; None: a named set's own size (or the nearest the model takes); a folder's: the model's declared
    # input size, or FOLDER_IMAGE_SIZE for a network that declares none (training.inputs.folder_image_size)
    image_size: list[int] | None = None
    # a folder trained for more than one epoch is decoded once into its cache ("auto"; convlab.data.cache),
    # or decoded every epoch ("off")
    folder_cache: str = "auto"
    resize: str | None = None  # crop or squash (choices.RESIZE_RULES); None: crop for folders, else squash
    in_chans: int | None = None  # None: the data's native channels
    num_classes: int | None = None  # None: the number of classes in the data
    limit: int | None = None  # keep only the first N training images (quick runs, tests)
    limit_per_class: int | None = None  # keep N training images of each class instead (10, 50, 500 labelled)
    classes: list[int | str] | None = None  # keep only these classes (numbers or names), relabelled 0..k-1
    options: dict[str, Any] = field(default_factory=dict)  # model options, e.g. {"activation": "relu"}
    # Transfer learning (convlab.transfer; docs/transfer.md): start from trained weights.
    pretrained: str | None = None  # run folder, checkpoint, state-dict file or torchvision:ARCH[.TAG]
    allow_partial: bool = False  # load the tensors that fit and keep the rest as initialised
    transfer: str | None = None  # feature-extract, finetune or linear-probe; None with pretrained: finetune
    trainable: str | None = None  # finetune: all (None), head, last:N or from:LAYER
    backbone_lr_scale: float = 1.0  # finetune: the backbone learns at lr * this (the head at lr)
    head_epochs: int = 0  # finetune: the first K epochs train the head alone (backbone frozen)
    # feature-extract: the head trains on the frozen part's outputs, computed once (convlab.transfer.feature_cache)
    feature_cache: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def setting_label(name: str) -> str:
    """How an error names a setting, one phrasing for ``train(**settings)``, YAML and the command line:
    ``batch_size (--batch-size)``."""
    flag = "--option" if name == "options" else "--" + name.replace("_", "-")
    return f"{name} ({flag})"


def parse_image_size(value: Any) -> list[int] | None:
    """``28`` / ``"28"`` -> [28, 28]; ``"28x32"`` / ``[28, 32]`` -> [28, 32]; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*(?:[xX,]\s*(\d+)\s*)?", value)
        if match is None:
            raise ConvlabError(
                f"{setting_label('image_size')} '{value}' is not understood; give N (square) or HxW, "
                "e.g. 32 or 28x32."
            )
        height = int(match.group(1))
        size = [height, int(match.group(2)) if match.group(2) else height]
    elif isinstance(value, bool):
        raise ConvlabError(
            f"{setting_label('image_size')} {value!r} is not understood; give N (square) or HxW."
        )
    elif isinstance(value, int):
        size = [value, value]
    else:
        try:
            if any(isinstance(v, bool) for v in value):
                raise TypeError
            size = [int(v) for v in value]
        except (TypeError, ValueError, OverflowError):
            raise ConvlabError(
                f"{setting_label('image_size')} {value!r} is not understood; give N (square) or HxW."
            ) from None
        if len(size) == 1:
            size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise ConvlabError(
            f"{setting_label('image_size')} {value!r} must be one or two positive integers (N or HxW)."
        )
    return size


# The largest integer a setting may be: torch keeps seeds, sizes and counts as 64-bit integers.
MAX_INTEGER = 2**63 - 1
# A configuration holds a few dozen values; YAML's aliases can make a short file stand for billions
# (each alias a reference to an anchored value, which a check or an error message would then walk).
MAX_CONFIG_VALUES = 10_000


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML (or JSON) file, keys normalised (``batch-size`` -> ``batch_size``) and checked.

    ``yaml.safe_load`` builds plain values only: a tag naming Python code (``!!python/object``) is refused
    as invalid YAML, never run.
    """
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        _check_values(loaded, {})
    except OSError as error:
        raise ConvlabError(f"Cannot read configuration file '{path}' ({error.strerror}).") from None
    except UnicodeDecodeError:
        raise ConvlabError(f"Configuration file '{path}' is not UTF-8 text.") from None
    except yaml.YAMLError as error:
        raise ConvlabError(
            f"Configuration file '{path}' is not valid YAML ({_yaml_problem(error)})."
        ) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConvlabError(f"Configuration file '{path}' nests its values too deeply.") from None
    except _Unusable as error:
        raise ConvlabError(f"Configuration file '{path}' {error}.") from None
    except ValueError:  # Python refuses to read an integer of more than 4,300 digits
        raise ConvlabError(f"Configuration file '{path}' holds a number too long to read.") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConvlabError(
            f"Configuration file '{path}' must hold a mapping of settings such as 'epochs: 5'."
        )
    try:
        return _normalise_keys(loaded)
    except ConvlabError as error:
        raise ConvlabError(f"In '{path}': {error}") from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's complaint on one line: ``found character '\\t' that cannot start any token at line 2, column 1``."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{error.problem or error.context or 'unreadable'}{where}"
    return " ".join(str(error).split())


class _Unusable(Exception):
    """What _check_values finds: the rest of a sentence about the settings."""


def _check_values(value: Any, counted: dict[int, int | None]) -> int:
    """How many values ``value`` stands for with its aliases expanded. _Unusable past MAX_CONFIG_VALUES, for
    a value that holds itself (``&a [*a]``), and for an integer beyond 64 bits (no setting takes one, and
    Python refuses to print one of more than 4,300 digits: an error message could not show it). Each
    collection is counted once (``counted``, by id)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        raise _Unusable(f"holds an integer beyond 64 bits (at most {MAX_INTEGER:,} in size)")
    if not isinstance(value, (dict, list, tuple)):
        return 1
    if id(value) in counted:
        if counted[id(value)] is None:
            raise _Unusable("holds a value that contains itself (a YAML alias of its own anchor)")
        return counted[id(value)]
    counted[id(value)] = None  # being counted
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
    total = 1 + sum(_check_values(item, counted) for item in items)
    if total > MAX_CONFIG_VALUES:
        raise _Unusable(
            f"stands for more than {MAX_CONFIG_VALUES:,} values once its aliases are expanded; a "
            "configuration holds a few dozen"
        )
    counted[id(value)] = total
    return total


def _normalise_keys(values: dict[str, Any]) -> dict[str, Any]:
    normalised = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in FIELDS:  # the command line's argparse suggests the same for a mistyped flag
            raise unknown_name_error("training setting", str(key), FIELDS, see="convlab train --help")
        normalised[name] = value
    return normalised


def resolve_config(config: TrainConfig | dict | str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Merge defaults, ``config`` (a TrainConfig, a mapping or a YAML file) and ``overrides``, then check.

    Model ``options`` are merged key by key (an override adds to the file's options); every
    other setting is replaced. A ``recipe`` (convlab.training.recipes) fills in its values between the
    defaults and ``config``: defaults < recipe < file or mapping < overrides. A TrainConfig object
    counts as resolved already: its recipe is not applied again.
    """
    if isinstance(config, TrainConfig):
        values = config.to_dict()
    elif isinstance(config, dict):
        values = _normalise_keys(config)
    elif config is None:
        values = {}
    else:
        values = load_config_file(config)
    overrides = _normalise_keys(overrides)
    if not isinstance(config, (str, Path)):  # a file's values were checked as it was read
        try:
            _check_values([values, overrides], {})
        except _Unusable as error:
            raise ConvlabError(f"The settings given {error}.") from None
    base = TrainConfig().to_dict()
    recipe = overrides.get("recipe", values.get("recipe"))
    if recipe is not None and not isinstance(config, TrainConfig):
        if not isinstance(recipe, str):
            raise ConvlabError(f"{setting_label('recipe')} must be a recipe's name, got {recipe!r}.")
        base.update(recipe_settings(recipe))
    merged = {**base, **values}
    for given in (values, overrides):
        _check_options(given.get("options"))
    options = {**(base.get("options") or {}), **(values.get("options") or {})}
    options.update(overrides.pop("options", None) or {})
    merged.update(overrides)
    merged["options"] = options
    return check_config(TrainConfig(**merged))


def _check_options(options: Any) -> None:
    if options is not None and not isinstance(options, dict):
        raise ConvlabError(f"{setting_label('options')} must be a mapping of model options, got {options!r}.")


def _number(
    config: TrainConfig,
    name: str,
    kind: type,
    minimum: float | None = None,
    optional: bool = False,
    above: bool = False,
    below: float | None = None,
) -> None:
    """Coerce field ``name`` to ``kind`` (YAML reads 1e-3 as a string) and check its range."""
    value = getattr(config, name)
    if value is None and optional:
        return
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise ValueError
        value = kind(value)
    except (TypeError, ValueError, OverflowError):  # int(inf) overflows
        raise ConvlabError(
            f"{setting_label(name)} must be {'an integer' if kind is int else 'a number'}, got {value!r}."
        ) from None
    if kind is float and not math.isfinite(value):  # NaN would pass every comparison below
        raise ConvlabError(f"{setting_label(name)} must be a finite number, got {value}.")
    if kind is int and abs(value) > MAX_INTEGER:  # from text ("1" and 30 zeros); torch takes 64 bits
        raise ConvlabError(f"{setting_label(name)} must be at most {MAX_INTEGER:,} in size, got {value}.")
    if minimum is not None and (value <= minimum if above else value < minimum):
        raise ConvlabError(
            f"{setting_label(name)} must be {'greater than' if above else 'at least'} {minimum}, got {value}."
        )
    if below is not None and value >= below:
        raise ConvlabError(f"{setting_label(name)} must be less than {below}, got {value}.")
    setattr(config, name, value)


def _text(config: TrainConfig, name: str, optional: bool = False, paths: bool = False) -> None:
    """Field ``name`` must be text (``paths``: or a path or a number, made text), or None when ``optional``."""
    value = getattr(config, name)
    if value is None and optional:
        return
    if paths and isinstance(value, (int, float, os.PathLike)) and not isinstance(value, bool):
        value = str(value)
        setattr(config, name, value)
    if not isinstance(value, str):
        raise ConvlabError(f"{setting_label(name)} must be text, got {value!r}.")


def check_config(config: TrainConfig) -> TrainConfig:
    """Coerce types and reject values no run could use, naming the setting and what is accepted."""
    _number(config, "epochs", int, 1)
    _number(config, "batch_size", int, 1, optional=True)
    if config.lr != "auto":
        _number(config, "lr", float, 0, optional=True, above=True)
    _number(config, "momentum", float, 0, optional=True, below=1.0)
    _number(config, "weight_decay", float, 0, optional=True)
    _number(config, "warmup_epochs", float, 0)
    _number(config, "clip_value", float, 0, optional=True, above=True)
    _number(config, "clip_norm", float, 0, optional=True, above=True)
    _number(config, "label_smoothing", float, 0, below=1.0)
    _number(config, "crop_padding", int, 1, optional=True)  # its upper bound, the image side: at set-up
    _number(config, "seed", int)
    _number(config, "early_stop", int, 1, optional=True)
    _number(config, "checkpoint_every", int, 1, optional=True)
    _number(config, "log_gradients", int, 1, optional=True)
    _number(config, "val_split", float, 0, below=1.0)
    _number(config, "folds", int, 2, optional=True)
    _number(config, "fold", int, 1, optional=True)
    if config.fold is not None and (config.folds is None or config.fold > config.folds):
        raise ConvlabError(
            f"fold {config.fold} needs folds of at least {config.fold} (folds is {config.folds})."
        )
    _number(config, "in_chans", int, 1, optional=True)
    _number(config, "num_classes", int, 1, optional=True)
    _number(config, "limit", int, 1, optional=True)
    _number(config, "limit_per_class", int, 1, optional=True)
    _number(config, "backbone_lr_scale", float, 0, above=True)
    _number(config, "head_epochs", int, 0)
    if config.amp is False:  # YAML 1.1 reads a bare `amp: off` as false
        config.amp = "off"
    if config.folder_cache is False:  # the same for `folder_cache: off`
        config.folder_cache = "off"
    for name in ("optimizer", "schedule", "amp", "init", "device", "folder_cache"):
        _text(config, name)
    for name in ("activation", "resize", "transfer", "trainable", "recipe"):
        _text(config, name, optional=True)
    # names of files, folders and networks: text, a path, or a number YAML read as one (out: 2024)
    for name in ("model", "data", "out", "resume", "data_root", "pretrained"):
        _text(config, name, optional=True, paths=True)
    if config.optimizer not in OPTIMIZERS:
        raise unknown_name_error(setting_label("optimizer"), str(config.optimizer), OPTIMIZERS)
    if config.schedule not in SCHEDULES:
        raise unknown_name_error(setting_label("schedule"), str(config.schedule), SCHEDULES)
    if config.amp not in TRAINING_PRECISIONS:
        raise unknown_name_error(setting_label("amp"), str(config.amp), TRAINING_PRECISIONS)
    if config.folder_cache not in FOLDER_CACHE_MODES:
        raise unknown_name_error(setting_label("folder_cache"), str(config.folder_cache), FOLDER_CACHE_MODES)
    if config.init not in INIT_SCHEMES:
        raise unknown_name_error(setting_label("init"), str(config.init), INIT_SCHEMES)
    if not (config.device in DEVICES or re.fullmatch(r"cuda:[0-9]+", config.device)):
        raise ConvlabError(
            f"Unknown {setting_label('device')} '{config.device}'; accepted: auto, cpu, cuda, cuda:N."
        )
    if config.activation is not None and config.activation not in ACTIVATIONS:
        raise unknown_name_error(setting_label("activation"), str(config.activation), ACTIVATIONS)
    if not isinstance(config.options, dict):
        raise ConvlabError(
            f"{setting_label('options')} must be a mapping of model options, got {config.options!r}."
        )
    for name in set(config.options) & set(MODEL_ARGUMENTS):
        raise ConvlabError(
            f"{name} is not a model option but a setting of its own: give {setting_label(name)}, not "
            f"{setting_label('options')} {name}=..."
        )
    config.image_size = parse_image_size(config.image_size)
    config.resize = check_resize(config.resize)
    if not (config.augment is None or isinstance(config.augment, (str, list))):
        raise ConvlabError(
            f"{setting_label('augment')} must be a list of augmentations (e.g. flip,crop), got {config.augment!r}."
        )
    config.augment = parse_augment(config.augment)
    check_speed_levers(config)
    config.test_tta = check_test_tta(config.test_tta)
    config.classes = parse_classes(config.classes)
    if config.limit is not None and config.limit_per_class is not None:
        raise ConvlabError(
            f"{setting_label('limit')} keeps {config.limit} images in all and "
            f"{setting_label('limit_per_class')} {config.limit_per_class} of each class; give one, not both."
        )
    check_transfer(config)
    return config


def _flags_set(config: TrainConfig, *names: str) -> list[str]:
    """The settings, among ``names``, that were given (their values differ from the defaults), as errors
    name them."""
    defaults = TrainConfig()
    return [setting_label(name) for name in names if getattr(config, name) != getattr(defaults, name)]


def parse_classes(value: Any) -> list[int | str] | None:
    """``"5,6,7"`` or ``[5, "Bag"]`` -> ``[5, 6, 7]`` / ``[5, "Bag"]`` (numbers as int, names as given);
    the data package checks them against the data's classes."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConvlabError(
            f"{setting_label('classes')} must be a list of class numbers or names (e.g. 5,6,7), got {value!r}."
        )
    parsed = []
    for item in items:
        text = str(item).strip()
        if not text or isinstance(item, bool):
            raise ConvlabError(
                f"{setting_label('classes')} must be class numbers or names (e.g. 5,6,7), got {value!r}."
            )
        parsed.append(int(text) if re.fullmatch(r"\d+", text) else text)
    return parsed


def check_transfer(config: TrainConfig) -> None:
    """The transfer settings must form one of the lectures' scenarios (``convlab.transfer``)."""
    if not isinstance(config.allow_partial, bool):
        raise ConvlabError(
            f"{setting_label('allow_partial')} must be true or false, got {config.allow_partial!r}."
        )
    if config.pretrained is None:
        given = _flags_set(
            config, "transfer", "trainable", "backbone_lr_scale", "head_epochs", "allow_partial"
        )
        if given:
            raise ConvlabError(
                f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} {setting_label('pretrained')}: "
                "the trained network to start from."
            )
        return
    if config.transfer is None:  # --pretrained alone: start from the weights and train everything
        config.transfer = "finetune"
    if config.transfer not in TRANSFER_MODES:
        raise unknown_name_error(setting_label("transfer"), str(config.transfer), TRANSFER_MODES)
    if config.transfer != "finetune":
        extra = _flags_set(config, "trainable", "backbone_lr_scale", "head_epochs")
        if extra:
            raise ConvlabError(
                f"{', '.join(extra)} {'applies' if len(extra) == 1 else 'apply'} to "
                f"{setting_label('transfer')} finetune; {config.transfer} "
                f"trains the new head alone."
            )
    if config.trainable is not None:
        config.trainable = str(config.trainable)
        if not re.fullmatch(r"all|head|last:\d+|from:\S+", config.trainable):
            raise ConvlabError(
                f"Unknown {setting_label('trainable')} '{config.trainable}'; accepted: {TRAINABLE_FORMS}."
            )
    if config.head_epochs and config.trainable == "head":
        raise ConvlabError(
            f"{setting_label('head_epochs')} trains the head alone before unfreezing what "
            f"{setting_label('trainable')} names; with trainable head there is nothing to unfreeze "
            "(leave head_epochs out)."
        )
    if config.head_epochs >= config.epochs:
        raise ConvlabError(
            f"{setting_label('head_epochs')} = {config.head_epochs} leaves none of the {config.epochs} "
            f"epochs ({setting_label('epochs')}) to fine-tune the backbone; give fewer head epochs or more epochs."
        )


def check_test_tta(value: Any) -> str | None:
    """None, "none" or "" -> None; a mode of convlab.evaluation.TTA_MODES -> itself; else one clear error."""
    try:
        return check_tta(None if value is None else str(value))
    except ConvlabError as error:
        raise ConvlabError(f"{setting_label('test_tta')}: {error}") from None


def check_speed_levers(config: TrainConfig) -> None:
    """The recipe name and the speed settings (docs/performance.md)."""
    if config.recipe is not None:
        config.recipe = str(config.recipe)
        recipe_settings(config.recipe)  # an unknown name: ConvlabError listing the recipes
    for name in ("channels_last", "compile", "sync_bn", "feature_cache"):
        if name == "channels_last" and config.channels_last == "auto":  # as the precision chosen wants
            continue
        if not isinstance(getattr(config, name), bool):
            accepted = "true, false or auto" if name == "channels_last" else "true or false"
            raise ConvlabError(f"{setting_label(name)} must be {accepted}, got {getattr(config, name)!r}.")
    threads = config.threads
    # parse_threads reads digits as str.isdigit sees them: '²' among them, which int() refuses
    if not (threads is None or isinstance(threads, int) or (isinstance(threads, str) and threads.isascii())):
        raise ConvlabError(f"threads must be a positive integer or 'auto' (the idle cores), got {threads!r}.")
    config.threads = parse_threads(config.threads)


def environment_world() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) as torchrun sets them for each process it starts; (0, 1) outside a distributed
    launch (convlab.training.distributed). Here, torch-free, for the command line's checks."""
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 0, 1


def check_distributed(config: TrainConfig, processes: int) -> None:
    """Refuse, in one sentence each, the settings a run on ``processes`` processes cannot take
    (docs/distributed.md): those that train on one process by nature, and a batch that does not split."""
    if processes <= 1:
        if config.sync_bn:
            raise ConvlabError(
                f"{setting_label('sync_bn')} synchronises BatchNorm across the processes of a distributed run, "
                "and this run has one; launch it with --nproc N or torchrun, or leave sync_bn out."
            )
        return
    if config.folds is not None and config.fold is None:
        raise ConvlabError(
            f"{setting_label('folds')} trains its folds one after another on one process; to train a fold on "
            f"{processes} processes, give {setting_label('fold')} N and run each fold in turn."
        )
    if config.transfer == "linear-probe":
        raise ConvlabError(
            f"{setting_label('transfer')} linear-probe is one fit on one process, with no epochs to share out; "
            "run it without --nproc or torchrun."
        )
    if config.lr == "auto":
        raise ConvlabError(
            f"{setting_label('lr')} auto runs the range test on one process; run `convlab lr-find` with the same "
            "settings (and the batch size of all the processes together) and give its rate to --lr."
        )
    if config.batch_size is not None and config.batch_size % processes:
        raise ConvlabError(
            f"{setting_label('batch_size')} {config.batch_size} is the batch of all {processes} processes "
            f"together and must split evenly between them; give a multiple of {processes}."
        )


def save_config(config: TrainConfig, path: Path) -> None:
    """Write ``config`` as YAML (atomically), in field order, readable by ``--config``."""
    text = yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def recipe_markdown() -> str:
    """One Markdown table of every recipe's settings (rows: TrainConfig fields in order; columns: recipes).

    docs/performance.md#recipes holds it verbatim. It lives here, not in ``recipes``, because the rows
    follow TrainConfig's field order: the recipes stay data below the configuration.
    """
    names = list(RECIPES)
    used = [setting for setting in FIELDS if any(setting in RECIPES[name].settings for name in names)]
    lines = ["| setting | " + " | ".join(f"`{name}`" for name in names) + " |", "|---|" + "---|" * len(names)]
    for setting in used:
        cells = [
            _markdown_cell(RECIPES[name].settings[setting])
            if setting in RECIPES[name].settings
            else "(default)"
            for name in names
        ]
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    lines.append("| goal | " + " | ".join(RECIPES[name].goal for name in names) + " |")
    return "\n".join(lines) + "\n"


def _markdown_cell(value: Any) -> str:
    """A setting as YAML-ish text for a table cell: ``width=2``, ``crop,flip``, ``true``."""
    if isinstance(value, dict):
        return ", ".join(f"{key}={_markdown_cell(item)}" for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(_markdown_cell(item) for item in value)
    return str(value).lower() if isinstance(value, bool) else str(value)
