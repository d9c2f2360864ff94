"""The names convlab's settings take, and the readers of those names, importable without torch.

TrainConfig, the command-line parser and the library all check a setting against the one table
here, so they accept the same names and answer a misspelling with the same "did you mean". The
modules that implement each name (layers, optimizers, augmentations, ...) import their table from
here; keeping torch out of this module keeps ``convlab --help`` and usage errors fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from convlab.errors import ConvlabError, unknown_name_error

# ---- precision of a forward pass: "auto" (the default: bf16 where the device has bf16 matrix units and the
# model does enough multiply-adds per image to gain, else float32; convlab.runtime.choose_precision), float32
# ("off"), or autocast to bfloat16 or float16
PRECISIONS = ("auto", "off", "bf16", "fp16")
# Training takes the first three: float16 training needs a gradient scaler, which convlab's loop does not run.
TRAINING_PRECISIONS = ("auto", "off", "bf16")

# ---- what every zoo builder is given besides its options (convlab.models.create_model): never an option
MODEL_ARGUMENTS = ("num_classes", "in_chans", "init")

# ---- weights and nonlinearities (convlab.layers)
INIT_SCHEMES = ("default", "kaiming", "xavier", "lecun")
ACTIVATIONS = (
    "identity",
    "sigmoid",
    "tanh",
    "arctan",
    "relu",
    "leaky_relu",
    "prelu",
    "elu",
    "softplus",
    # Not in the notes' list, but the defaults of later architectures in the zoo:
    "relu6",  # MobileNet v1/v2
    "gelu",  # ConvNeXt and ViT
)


# ---- optimizers and learning-rate schedules (convlab.training.optim)
# The batch size a run gets by default, and the one the table's learning rates are given for: the
# PyTorch tutorial's (its plain loop is what convlab's defaults must at least match).
DEFAULT_BATCH = 64
# How a default learning rate follows the batch size: linearly for SGD (Goyal et al. 2017, "linear
# scaling rule"), with the square root for adaptive methods, whose per-parameter steps are already
# normalised (Krizhevsky 2014; Hoffer et al. 2017), not at all for adadelta, which has no rate of its own.
LR_SCALINGS = ("linear", "sqrt", "none")


@dataclass(frozen=True)
class OptimizerDefaults:
    """An optimizer by name: the ``torch.optim`` class and what a run gets when it sets nothing else."""

    torch_class: str  # a class of torch.optim
    lr: float  # at DEFAULT_BATCH; other batch sizes scale it by ``scaling``
    momentum: float | None = None  # default momentum (beta1 for adam/adamw); None: the optimizer has none
    weight_decay: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    scaling: str = "linear"  # one of LR_SCALINGS


# The optimizers of the lecture notes (002); the reason for each default is in convlab.training.optim.
OPTIMIZERS: dict[str, OptimizerDefaults] = {
    "sgd": OptimizerDefaults("SGD", lr=0.1, momentum=0.0),
    "momentum": OptimizerDefaults("SGD", lr=0.1, momentum=0.9),
    "nesterov": OptimizerDefaults("SGD", lr=0.1, momentum=0.9, extra={"nesterov": True}),
    "adagrad": OptimizerDefaults("Adagrad", lr=0.01, scaling="sqrt"),
    "adadelta": OptimizerDefaults("Adadelta", lr=1.0, extra={"rho": 0.9}, scaling="none"),
    "rmsprop": OptimizerDefaults("RMSprop", lr=0.001, momentum=0.0, extra={"alpha": 0.9}, scaling="sqrt"),
    "adam": OptimizerDefaults("Adam", lr=0.001, momentum=0.9, scaling="sqrt"),
    "adamw": OptimizerDefaults("AdamW", lr=0.001, momentum=0.9, weight_decay=0.01, scaling="sqrt"),
}


def default_lr(name: str, batch_size: int = DEFAULT_BATCH) -> float:
    """The learning rate optimizer ``name`` gets at ``batch_size`` when none is given."""
    if name not in OPTIMIZERS:
        raise unknown_name_error("optimizer", name, OPTIMIZERS)
    spec = OPTIMIZERS[name]
    ratio = int(batch_size) / DEFAULT_BATCH
    factor = {"linear": ratio, "sqrt": ratio**0.5, "none": 1.0}[spec.scaling]
    return spec.lr * factor


def lr_words(name: str, batch_size: int) -> str:
    """Why a run got the learning rate it got, for the training log."""
    spec = OPTIMIZERS[name]
    if spec.scaling == "none" or int(batch_size) == DEFAULT_BATCH:
        return f"{name}'s default at batch {batch_size}"
    how = "in proportion" if spec.scaling == "linear" else "with the square root"
    return f"{name}'s {spec.lr:g} at batch {DEFAULT_BATCH}, scaled {how} to batch {batch_size}"


SCHEDULES = ("constant", "step", "exponential", "cosine", "onecycle", "plateau")


# ---- augmentations of training batches (convlab.data.augment)
AUGMENTATIONS = ("crop", "flip", "translate", "erase", "pca-lighting", "random-resized-crop", "color-jitter")
AUGMENTATION_DESCRIPTIONS = {
    "crop": "random crop of the zero-padded image, padding size // 8 (4 px at 32x32)",
    "flip": "horizontal flip with probability 0.5",
    "translate": "random shift by up to 10% of each side, uncovered pixels repeat the edge",
    "erase": "random erasing: one rectangle of 2-33% of the area, p = 0.5, set to the mean (0 after normalisation)",
    "pca-lighting": "AlexNet's PCA lighting noise on RGB, alpha ~ N(0, 0.1) per principal component",
    "random-resized-crop": "crop of 8-100% of the area, aspect 3/4-4/3, resized back to the image size",
    "color-jitter": "brightness, contrast and saturation each scaled by a factor in [0.6, 1.4]",
}
AUGMENTATION_ALIASES = {
    "hflip": "flip",
    "cutout": "erase",
    "lighting": "pca-lighting",
    "rrc": "random-resized-crop",
    "jitter": "color-jitter",
    "colour-jitter": "color-jitter",
    "shift": "translate",
}


def parse_augment(value: str | Sequence[str] | None) -> list[str]:
    """``"flip,crop"`` or ``["flip", "crop"]`` -> ``["flip", "crop"]``; unknown names: ConvlabError."""
    if value is None:
        return []
    names = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    parsed = []
    for raw in names:
        name = raw.strip().lower().replace("_", "-")
        if not name or name == "none":
            continue
        name = AUGMENTATION_ALIASES.get(name, name)
        if name not in AUGMENTATIONS:
            raise unknown_name_error("augmentation", raw.strip(), AUGMENTATIONS)
        if name not in parsed:
            parsed.append(name)
    return parsed


# ---- test-time augmentation (convlab.evaluation.tta)
TTA_MODES = ("flip", "shift", "tencrop")


def check_tta(tta: str | None) -> str | None:
    """``None``/``"none"`` -> None; a known mode -> itself; anything else -> ConvlabError."""
    if tta in (None, "", "none"):
        return None
    if tta not in TTA_MODES:
        raise ConvlabError(f"Unknown test-time augmentation '{tta}'; accepted: none, {', '.join(TTA_MODES)}.")
    return tta


# ---- how an image is brought to the network's input size (convlab.data.images; recorded in InputSpec.resize)
RESIZE_RULES = ("crop", "squash")
# The side photos from a folder are trained at when the model declares no input size of its own (a zoo model
# declares one): ImageNet's 224 (Ultralytics' default too; Keras' 256), so a network of one's own sees what
# pretrained ImageNet weights saw, and five stride-2 stages divide it exactly (224 = 7 x 32).
FOLDER_IMAGE_SIZE = 224
# ---- the decode-once cache of a folder a run trains on: built when it pays ("auto"), or never ("off")
FOLDER_CACHE_MODES = ("auto", "off")
RESIZE_DESCRIPTIONS = {
    "crop": "scale the shorter side to the size, then keep the centre (proportions kept, edges cut)",
    "squash": "resize to exactly the size (nothing cut, proportions not kept)",
}


def check_resize(rule: str | None) -> str | None:
    """None stays None (the data's default rule); a known rule -> itself; anything else -> ConvlabError."""
    if rule is None:
        return None
    if rule not in RESIZE_RULES:
        raise unknown_name_error("resize rule", str(rule), RESIZE_RULES)
    return rule


# ---- transfer learning (convlab.transfer)
TRANSFER_SCENARIOS = ("feature-extract", "finetune")  # what apply_transfer sets up
# and the linear probe, which fits the head once instead of training it
TRANSFER_MODES = (*TRANSFER_SCENARIOS, "linear-probe")
TRAINABLE_FORMS = (
    "all, head, last:N (the top N backbone stages and the head) or from:LAYER (LAYER and everything after it)"
)

# --log-gradients without a number: a logging step every 50 optimizer steps, about 20 a Fashion-MNIST epoch
# at batch 64 (convlab.training.gradients).
DEFAULT_GRADIENT_EVERY = 50
