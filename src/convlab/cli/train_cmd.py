"""`convlab train`: flags for every TrainConfig field, a YAML file under them, then ``convlab.training.train``."""

from __future__ import annotations

import argparse

import yaml


def _option(text: str) -> tuple[str, object]:
    """``key=value`` with the value read as a YAML scalar or list: ``hidden=[500,150]``, ``pool=max``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value (e.g. activation=relu), got '{text}'")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"the value of '{text}' is not a YAML scalar or list") from None


def add_parser(subparsers) -> None:
    from convlab.choices import TRAINING_PRECISIONS
    from convlab.data import AUGMENTATIONS, NAMED_SETS
    from convlab.layers.activations import ACTIVATIONS
    from convlab.layers.init import INIT_SCHEMES
    from convlab.training.config import TrainConfig
    from convlab.training.optim import OPTIMIZERS, SCHEDULES
    from convlab.training.recipes import RECIPES

    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "train",
        help="train a model on a data set into a run folder",
        description="Train a model from the zoo on a data set. Every flag can also be set in a YAML file "
        "(--config, keys as the flag names); flags given on the command line win. The run folder gets "
        "config.yaml, metrics.csv, tb/, last/best.safetensors, state.pt, train.log and a report.",
        argument_default=argparse.SUPPRESS,  # only flags actually given override the config file
    )
    names = ", ".join
    parser.add_argument(
        "--config", metavar="FILE.yaml", help="read settings from a YAML file (flags override it)"
    )
    parser.add_argument(
        "--recipe",
        metavar="NAME",
        help=f"start from a named configuration: {names(RECIPES)} "
        "(the YAML file and flags override its values; docs/performance.md) (default: none)",
    )
    group = parser.add_argument_group("model and data")
    group.add_argument("--model", help=f"model name from `convlab models` (default {defaults.model})")
    group.add_argument(
        "--data",
        help=f"a named set ({names(NAMED_SETS)}), a folder of class folders, or idx:IMAGES,LABELS (default {defaults.data})",
    )
    group.add_argument(
        "--data-root",
        metavar="DIR",
        help="where named sets are looked for and downloaded (default: convlab's cache)",
    )
    group.add_argument(
        "--val-split",
        type=float,
        metavar="F",
        help=f"fraction of training images held out for validation (default {defaults.val_split})",
    )
    group.add_argument(
        "--limit", type=int, metavar="N", help="keep only the first N training images (default: all)"
    )
    group.add_argument(
        "--limit-per-class",
        type=int,
        metavar="N",
        help="keep N training images of each class, "
        "seeded, before --val-split holds some out (give --val-split 0 to train on all N; "
        "default: all)",
    )
    group.add_argument(
        "--classes",
        metavar="LIST",
        help="keep only these classes, by number or name "
        "(5,6,7,8,9 or Sandal,Bag), relabelled 0..k-1 in the order given, in every split "
        "(default: all)",
    )
    group.add_argument(
        "--image-size",
        metavar="N|HxW",
        help="resize images (default: the data's size, or the smallest the model takes)",
    )
    group.add_argument(
        "--in-chans", type=int, choices=(1, 3), help="convert images to 1 or 3 channels (default: the data's)"
    )
    group.add_argument(
        "--num-classes",
        type=int,
        metavar="N",
        help="check the data has this many classes (default: the data's)",
    )
    group.add_argument(
        "--augment",
        metavar="LIST",
        help=f"comma-separated augmentations: {names(AUGMENTATIONS)} (default: none)",
    )
    group.add_argument(
        "--init", choices=INIT_SCHEMES, help=f"weight initialisation (default {defaults.init})"
    )
    group.add_argument(
        "--activation",
        metavar="NAME",
        help=f"replace the model's activation: {names(ACTIVATIONS)} (default: the model's own)",
    )
    group.add_argument(
        "--option",
        metavar="KEY=VALUE",
        type=_option,
        action="append",
        dest="options",
        help="a model option, repeatable; values are YAML (pool=max, hidden=[500,150])",
    )
    group = parser.add_argument_group("transfer learning (see docs/transfer.md)")
    group.add_argument(
        "--pretrained",
        metavar="SOURCE",
        help="start from trained weights: a run folder, a "
        ".safetensors checkpoint, a .pth/.pt state dict (with --model), or torchvision:ARCH[.TAG] "
        "(e.g. torchvision:resnet18.IMAGENET1K_V1, read from torch.hub's cache); a new task gets "
        "a new head, other input channels an adapted first layer; --model, its options and "
        "--image-size default to the source's",
    )
    group.add_argument(
        "--allow-partial",
        action="store_true",
        help="load the tensors that fit and keep the "
        "others as initialised (default: refuse a source that covers the model only in part)",
    )
    group.add_argument(
        "--transfer",
        metavar="MODE",
        help="feature-extract (frozen backbone, its BatchNorm "
        "statistics too; the new head trains), finetune (train --trainable, default all) or "
        "linear-probe (logistic regression on the backbone's penultimate features, one fit, no "
        "epochs) (default with --pretrained: finetune)",
    )
    group.add_argument(
        "--trainable",
        metavar="WHICH",
        help="finetune: all, head, last:N (the top N backbone "
        "stages and the head) or from:LAYER (LAYER and everything after it) (default all)",
    )
    group.add_argument(
        "--backbone-lr-scale",
        type=float,
        metavar="F",
        help="finetune: the backbone learns at lr * F, the head at lr, under every schedule (default 1)",
    )
    group.add_argument(
        "--head-epochs",
        type=int,
        metavar="K",
        help="finetune: train the new head alone for the "
        "first K epochs, then unfreeze --trainable; one optimizer and lr schedule span the run "
        "(default 0)",
    )
    group = parser.add_argument_group("optimisation")
    group.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help=f"epochs to train (default {defaults.epochs}; on --resume, a larger number extends the run)",
    )
    group.add_argument(
        "--batch-size", type=int, metavar="N", help=f"images per step (default {defaults.batch_size})"
    )
    group.add_argument(
        "--optimizer", metavar="NAME", help=f"{names(OPTIMIZERS)} (default {defaults.optimizer})"
    )
    group.add_argument(
        "--lr",
        type=float,
        help="learning rate (default per optimizer: "
        + ", ".join(f"{name} {spec.lr:g}" for name, spec in OPTIMIZERS.items())
        + ")",
    )
    group.add_argument(
        "--momentum",
        type=float,
        metavar="M",
        help="momentum (beta1 for adam/adamw) (default 0.9 for momentum, "
        "nesterov, adam, adamw; 0 for sgd and rmsprop)",
    )
    group.add_argument(
        "--weight-decay",
        type=float,
        metavar="WD",
        help="L2 weight decay, not applied to biases and norm parameters (default 0; 0.01 for adamw)",
    )
    group.add_argument(
        "--schedule",
        metavar="NAME",
        help=f"learning-rate schedule: {names(SCHEDULES)} (default {defaults.schedule})",
    )
    group.add_argument(
        "--warmup-epochs",
        type=float,
        metavar="N",
        help=f"linear warm-up from lr/100 over this many epochs (default {defaults.warmup_epochs:g})",
    )
    group.add_argument(
        "--clip-value", type=float, metavar="V", help="clip each gradient element to [-V, V] (default: off)"
    )
    group.add_argument(
        "--clip-norm",
        type=float,
        metavar="V",
        help="rescale gradients to L2 norm V when above it (default: off)",
    )
    group.add_argument(
        "--label-smoothing",
        type=float,
        metavar="EPS",
        help=f"cross-entropy label smoothing (default {defaults.label_smoothing:g})",
    )
    group.add_argument(
        "--amp",
        choices=TRAINING_PRECISIONS,
        help=f"bf16 autocast for forward and loss (default {defaults.amp})",
    )
    group.add_argument(
        "--test-tta",
        metavar="MODE",
        help="test-time augmentation of the final test evaluation: "
        "flip, shift (flip x 1-pixel shifts: 10 views) or tencrop (default: none; `convlab eval "
        "--tta` does the same for a finished run)",
    )
    group.add_argument(
        "--early-stop",
        type=int,
        metavar="PATIENCE",
        help="stop when val top-1 has not improved for PATIENCE epochs (default: off)",
    )
    group = parser.add_argument_group("speed (docs/performance.md)")
    group.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        help="NHWC activations, oneDNN's fast layout on CPUs, above all with --amp bf16 (default: off)",
    )
    group.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="torch.compile the model for "
        "training; pays only when the run is long next to the compile time (default: off)",
    )
    group.add_argument(
        "--threads",
        metavar="N|auto",
        help="torch threads: N, or auto = the cores other processes "
        f"leave idle at the start (default {defaults.threads})",
    )
    group = parser.add_argument_group("run")
    group.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help=f"seed for weights, data order and augmentation (default {defaults.seed})",
    )
    group.add_argument(
        "--device",
        metavar="cpu|cuda|auto",
        help=f"where to train (default {defaults.device}: CUDA when present)",
    )
    group.add_argument(
        "--out",
        metavar="DIR",
        help="run folder (default runs/<model>-<data>-<YYYYmmdd-HHMMSS>); must not hold a previous run",
    )
    group.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a run where it stopped (default: a new run)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from convlab.training import train

    settings = {key: value for key, value in vars(args).items() if key not in ("func", "command", "config")}
    if "options" in settings:
        settings["options"] = dict(settings["options"])
    train(getattr(args, "config", None), **settings)
    return 0
