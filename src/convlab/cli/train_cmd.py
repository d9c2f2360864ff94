"""`convlab train`: flags for every TrainConfig field, a YAML file under them, then ``convlab.training.train``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from convlab.choices import (
    ACTIVATIONS,
    AUGMENTATIONS,
    DEFAULT_BATCH,
    DEFAULT_GRADIENT_EVERY,
    FOLDER_CACHE_MODES,
    FOLDER_IMAGE_SIZE,
    INIT_SCHEMES,
    OPTIMIZERS,
    RESIZE_DESCRIPTIONS,
    RESIZE_RULES,
    SCHEDULES,
    TRAINING_PRECISIONS,
)
from convlab.cli.options import model_option
from convlab.errors import ConvlabError
from convlab.training.config import TrainConfig, check_distributed, environment_world, resolve_config
from convlab.training.recipes import RECIPES

# How `convlab train` is launched, not a setting of the run: the commands that share its flags (sweep,
# lr-find) train on one process and do not take it.
LAUNCH_FLAGS = ("--nproc",)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on a data set into a run folder",
        description="Train a model from the zoo, or your own network, on a data set. Every flag can also "
        "be set in a YAML file (--config, keys as the flag names); flags given on the command line win. "
        "The run folder gets config.yaml, metrics.csv, tb/, last/best.safetensors, state.pt, train.log "
        "and a report.",
        argument_default=argparse.SUPPRESS,  # only flags actually given override the config file
    )
    add_training_flags(parser, launcher=True)
    parser.set_defaults(func=run)


def add_training_flags(
    parser, leave_out: tuple[str, ...] = (), title_prefix: str = "", launcher: bool = False
) -> None:
    """Every flag of ``convlab train`` but ``leave_out``, in its --help groups: the commands that train
    (sweep, lr-find) take the same settings the same way; ``launcher``: also LAUNCH_FLAGS (train's own)."""
    takes = _what_flags_take()
    assert set(takes) <= {flag for helps in _flag_helps().values() for flag in helps}, "a flag without help"
    leave_out = leave_out if launcher else (*leave_out, *LAUNCH_FLAGS)
    for title, helps in _flag_helps().items():
        if title is None and not title_prefix:
            group = parser
        else:
            group = parser.add_argument_group(f"{title_prefix}{title or 'configuration'}")
        for flag, text in helps.items():
            if flag not in leave_out:
                group.add_argument(flag, help=text, **takes.get(flag, {}))


def _flag_helps() -> dict[str | None, dict[str, str]]:
    """Every flag's help, by --help group and in --help order; each says the TrainConfig default it overrides."""
    defaults, names = TrainConfig(), ", ".join
    lrs = ", ".join(f"{name} {spec.lr:g}" for name, spec in OPTIMIZERS.items())
    return {
        None: {
            "--config": "read settings from a YAML file (flags override it)",
            "--recipe": f"start from a named configuration: {names(RECIPES)} (the YAML file and flags override its values; docs/performance.md) (default: none)",
        },
        "model and data": {
            "--model": f"model name from `convlab models` (default {defaults.model}), or your own network: "
            "path/to/file.py:FUNCTION or package.module:FUNCTION, called as FUNCTION(num_classes=..., "
            "in_chans=..., **options) with each of the two passed when its signature names it; it must return an "
            "nn.Module giving logits N x classes, checked against the data first. The run folder keeps a "
            "copy of the file (model.py) to rebuild it; a name registered with convlab.register_model "
            "works once its module is imported (--model mymodule:mynet imports it; docs/own-network.md)",
            "--data": f"a named set (`convlab data list`), a folder of class folders, or idx:IMAGES,LABELS (default {defaults.data})",
            "--data-root": "where named sets are looked for and downloaded (default: convlab's cache)",
            "--val-split": f"fraction of training images held out for validation (default {defaults.val_split})",
            "--folds": "K-fold cross-validation: K runs (RUN/fold-1 .. fold-K), each holding out another fold of the training images as validation; prints and writes (crossval.md) the mean and spread of their validation top-1 (default: one run)",
            "--fold": "with --folds K, train only fold N of the K (default: all of them)",
            "--limit": "keep only the first N training images (default: all)",
            "--limit-per-class": "keep N training images of each class, seeded, before --val-split holds some out (give --val-split 0 to train on all N; default: all)",
            "--classes": "keep only these classes, by number or name (5,6,7,8,9 or Sandal,Bag), relabelled 0..k-1 in the order given, in every split (default: all)",
            "--image-size": f"train at N or HxW (default: a named set's own size, or the nearest the model takes; a folder of photos at the model's declared input size, or {FOLDER_IMAGE_SIZE} (ImageNet's size, Ultralytics' default) for a network of your own, which declares none; never at the photos' own size)",
            "--resize": f"how images are brought to the size: {'; '.join(f'{rule}: {text}' for rule, text in RESIZE_DESCRIPTIONS.items())} (default: crop for folders, whose photos come in both orientations; squash for named sets, whose images are all one size)",
            "--in-chans": "convert images to 1 or 3 channels (default: the data's)",
            "--num-classes": "check the data has this many classes (default: the data's)",
            "--augment": f"comma-separated augmentations: {names(AUGMENTATIONS)} (default: none)",
            "--crop-padding": "with --augment crop: the zero border in pixels around each image before the random window of the image size is cut (default: an eighth of the image side, 4 at 32x32 as in He et al.'s CIFAR recipe, 3 at 28x28)",
            "--init": f"weight initialisation (default {defaults.init})",
            "--activation": f"replace the model's activation: {names(ACTIVATIONS)} (default: the model's own)",
            "--option": "a model option, repeatable; values are YAML (pool=max, hidden=[500,150]); for your own network, a keyword argument of its function",
        },
        "transfer learning (see docs/transfer.md)": {
            "--pretrained": "start from trained weights: a run folder, a .safetensors checkpoint, a .pth/.pt state dict (with --model), or torchvision:ARCH[.TAG] (e.g. torchvision:resnet18.IMAGENET1K_V1, read from torch.hub's cache); a new task gets a new head, other input channels an adapted first layer; --model, its options and --image-size default to the source's",
            "--allow-partial": "load the tensors that fit and keep the others as initialised (default: refuse a source that covers the model only in part)",
            "--transfer": "feature-extract (frozen backbone, its BatchNorm statistics too; the new head trains), finetune (train --trainable, default all) or linear-probe (logistic regression on the backbone's penultimate features, one fit, no epochs) (default with --pretrained: finetune)",
            "--trainable": "finetune: all, head, last:N (the top N backbone stages and the head) or from:LAYER (LAYER and everything after it) (default all)",
            "--backbone-lr-scale": "finetune: the backbone learns at lr * F, the head at lr, under every schedule (default 1)",
            "--head-epochs": "finetune: train the new head alone for the first K epochs, then unfreeze --trainable; one optimizer and lr schedule span the run (default 0)",
            "--feature-cache": "feature-extract: compute the frozen backbone's outputs once and train the head alone on them, epoch after epoch; flip is cached as the image and its mirror, other random augmentations as 4 views drawn once per image; --no-feature-cache runs the whole network every step (default: on)",
        },
        "optimisation": {
            "--epochs": f"epochs to train (default {defaults.epochs}; on --resume, a larger number extends the run)",
            "--batch-size": f"images per step (default {DEFAULT_BATCH}, or about a tenth of a training set under {10 * DEFAULT_BATCH} images)",
            "--optimizer": f"{names(OPTIMIZERS)} (default {defaults.optimizer})",
            "--lr": f"learning rate (default per optimizer at batch {DEFAULT_BATCH}: {lrs}; scaled with the batch size, linearly for SGD, with the square root for the adaptive methods; the log says which it chose); auto runs the learning-rate range test first (`convlab lr-find`) and trains at its suggestion, recorded in config.yaml and train.log",
            "--momentum": "momentum (beta1 for adam/adamw) (default 0.9 for momentum, nesterov, adam, adamw; 0 for sgd and rmsprop)",
            "--weight-decay": "L2 weight decay, not applied to biases and norm parameters (default 0; 0.01 for adamw)",
            "--schedule": f"learning-rate schedule: {names(SCHEDULES)} (default {defaults.schedule})",
            "--warmup-epochs": f"linear warm-up from lr/100 over this many epochs (default {defaults.warmup_epochs:g})",
            "--clip-value": "clip each gradient element to [-V, V] (default: off)",
            "--clip-norm": "rescale gradients to L2 norm V when above it (default: off)",
            "--label-smoothing": f"cross-entropy label smoothing (default {defaults.label_smoothing:g})",
            "--amp": f"bf16 = bf16 autocast for forward and loss, off = float32; auto = bf16 where the CPU has bf16 matrix units (AMX, AVX-512 BF16) and the model does enough multiply-adds per image to gain, or the GPU has bf16, else float32: train.log says which and why (default {defaults.amp})",
            "--test-tta": "test-time augmentation of the final test evaluation: flip, shift (flip x 1-pixel shifts: 10 views) or tencrop (default: none; `convlab eval --tta` does the same for a finished run)",
            "--early-stop": "stop when val top-1 has not improved for PATIENCE epochs (default: off)",
        },
        "speed (docs/performance.md)": {
            "--channels-last": "NHWC activations, oneDNN's fast layout on CPUs, above all with --amp bf16; --no-channels-last keeps NCHW (default: auto, NHWC for models with 2-d convolutions)",
            "--folder-cache": f"{'|'.join(FOLDER_CACHE_MODES)}: a folder trained for more than one epoch is decoded once, at the training size, into the cache `convlab data cache` makes, and every epoch reads that (auto); off decodes every file every epoch (default {defaults.folder_cache})",
            "--compile": "torch.compile the model for training; pays only when the run is long next to the compile time (default: off)",
            "--threads": f"torch threads: N, or auto = the cores other processes leave idle at the start (default {defaults.threads})",
        },
        "run": {
            "--seed": f"seed for weights, data order and augmentation (default {defaults.seed})",
            "--device": f"where to train (default {defaults.device}: CUDA when present)",
            "--out": "run folder (default runs/<model>-<data>-<YYYYmmdd-HHMMSS>); must not hold a previous run",
            "--resume": "continue a run where it stopped: its last checkpoint, or from the start when it stopped before its first (default: a new run)",
            "--log-gradients": f"every EVERY optimizer steps (default {DEFAULT_GRADIENT_EVERY} when given without a number), write each layer's gradient norm, weight norm, update ratio (update / weight norm) and the fraction of dead (ReLU) or saturated (sigmoid, tanh) units after it to gradients.csv and TensorBoard; `convlab plot RUN --what gradients` draws them (default: off, which costs nothing)",
            "--checkpoint-every": "also save the resumable state (state.pt) every N optimizer steps inside an epoch, so that a killed run loses at most N steps and --resume continues from there exactly (default: at the end of each epoch only)",
        },
        "distributed (several processes, GPUs or machines: docs/distributed.md)": {
            "--nproc": "train on N processes of this machine with PyTorch's DistributedDataParallel, as `torchrun --nproc-per-node N -m convlab train ...` does (which also spans machines): gloo on CPUs, NCCL and one GPU per process on CUDA; --batch-size is the batch of all N together, and --threads each one's (auto: the idle cores shared out); a --resume takes the same N (default: one process)",
            "--sync-bn": "distributed on GPUs: BatchNorm normalises with the statistics of the whole batch, all the processes' parts together (SyncBatchNorm), not each process's part (default: off)",
        },
    }


def _what_flags_take() -> dict[str, dict[str, Any]]:
    """What each flag takes, for argparse, where it is more than one word of text."""
    switch = {"action": argparse.BooleanOptionalAction}  # --compile / --no-compile
    return {
        "--config": {"metavar": "FILE.yaml"},
        "--recipe": {"metavar": "NAME"},
        "--data-root": {"metavar": "DIR"},
        "--val-split": {"type": float, "metavar": "F"},
        "--folds": {"type": int, "metavar": "K"},
        "--fold": {"type": int, "metavar": "N"},
        "--limit": {"type": int, "metavar": "N"},
        "--limit-per-class": {"type": int, "metavar": "N"},
        "--classes": {"metavar": "LIST"},
        "--image-size": {"metavar": "N|HxW"},
        "--resize": {"metavar": "|".join(RESIZE_RULES)},
        "--in-chans": {"type": int, "choices": (1, 3)},
        "--num-classes": {"type": int, "metavar": "N"},
        "--augment": {"metavar": "LIST"},
        "--crop-padding": {"type": int, "metavar": "PIXELS"},
        "--init": {"choices": INIT_SCHEMES},
        "--activation": {"metavar": "NAME"},
        "--option": {"metavar": "KEY=VALUE", "type": model_option, "action": "append", "dest": "options"},
        "--pretrained": {"metavar": "SOURCE"},
        "--allow-partial": {"action": "store_true"},
        "--transfer": {"metavar": "MODE"},
        "--trainable": {"metavar": "WHICH"},
        "--backbone-lr-scale": {"type": float, "metavar": "F"},
        "--head-epochs": {"type": int, "metavar": "K"},
        "--feature-cache": switch,
        "--epochs": {"type": int, "metavar": "N"},
        "--batch-size": {"type": int, "metavar": "N"},
        "--optimizer": {"metavar": "NAME"},
        "--lr": {"type": _learning_rate, "metavar": "LR|auto"},
        "--momentum": {"type": float, "metavar": "M"},
        "--weight-decay": {"type": float, "metavar": "WD"},
        "--schedule": {"metavar": "NAME"},
        "--warmup-epochs": {"type": float, "metavar": "N"},
        "--clip-value": {"type": float, "metavar": "V"},
        "--clip-norm": {"type": float, "metavar": "V"},
        "--label-smoothing": {"type": float, "metavar": "EPS"},
        "--amp": {"choices": TRAINING_PRECISIONS},
        "--test-tta": {"metavar": "MODE"},
        "--early-stop": {"type": int, "metavar": "PATIENCE"},
        "--channels-last": switch,
        "--folder-cache": {"choices": FOLDER_CACHE_MODES},
        "--compile": switch,
        "--threads": {"metavar": "N|auto"},
        "--seed": {"type": int, "metavar": "N"},
        "--device": {"metavar": "cpu|cuda|auto"},
        "--out": {"metavar": "DIR"},
        "--resume": {"metavar": "RUN_DIR"},
        "--checkpoint-every": {"type": int, "metavar": "N"},
        "--nproc": {"type": _processes, "metavar": "N"},
        "--sync-bn": switch,
        "--log-gradients": {"type": int, "metavar": "EVERY", "nargs": "?", "const": DEFAULT_GRADIENT_EVERY},
    }


def _learning_rate(text: str) -> float | str:
    """``--lr``: a number, or ``auto`` (the range test chooses)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a learning rate; give a number such as 0.01, or auto."
        ) from None


def _processes(text: str) -> int:
    """``--nproc``: a positive number of processes."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of processes; give 1 or more.")
    return number


def run(args: argparse.Namespace) -> int:
    settings = {key: value for key, value in vars(args).items() if key not in ("func", "command", "config")}
    processes = settings.pop("nproc", 1)
    if "options" in settings:
        settings["options"] = dict(settings["options"])
    if "resume" not in settings:
        # Settings are checked before the engine (and torch) loads: a mistyped name is answered at once.
        launched_on = processes if processes > 1 else environment_world()[1]  # --nproc, or torchrun's
        check_distributed(resolve_config(getattr(args, "config", None), **settings), launched_on)
    if processes > 1:
        return _launch(args, processes, settings.get("threads"))
    from convlab.training import train  # the engine, and all it runs on
    from convlab.training.distributed import PEER_LOST_STATUS, PeerLost, launched_by_convlab

    rank, _ = environment_world()
    try:
        train(getattr(args, "config", None), **settings)
    except ConvlabError as error:
        # In a distributed run process 0 speaks for the run: every process stops on the same error, and the
        # others end quietly (with status 0, so that the launcher does not end process 0 before it has said
        # why). A lost process is said by the launcher of `--nproc`, or by process 0 under torchrun.
        if isinstance(error, PeerLost) and (rank or launched_by_convlab()):
            raise SystemExit(PEER_LOST_STATUS) from None
        if rank:
            raise SystemExit(0) from None
        raise
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the launch; process 0 says it
        if rank:
            raise SystemExit(130) from None
        raise
    return 0


def _launch(args: argparse.Namespace, processes: int, threads: int | str | None) -> int:
    """``--nproc N``: this command on N processes (training.distributed.launch); a process that died is said
    here, in one sentence, with exit status 1."""
    from convlab.training.distributed import launch

    if environment_world()[1] > 1:
        raise ConvlabError(
            "--nproc starts the processes itself, and this process is one of a distributed launch already "
            "(torchrun); leave --nproc out."
        )
    launched = launch(processes, command_line(args), threads)
    if launched.message:
        print(f"convlab: error: {launched.message}", file=sys.stderr)
    return launched.status


def command_line(args: argparse.Namespace) -> list[str]:
    """The flags ``args`` was parsed from, but the LAUNCH_FLAGS: what each process of ``--nproc`` is given.
    Only the flags given are in ``args`` (argparse.SUPPRESS), each written as ``--flag=value`` so that a
    value starting with a dash stays a value."""
    given, takes = vars(args), _what_flags_take()
    words = []
    for flag in [flag for helps in _flag_helps().values() for flag in helps]:
        options = takes.get(flag, {})
        dest = options.get("dest", flag[2:].replace("-", "_"))
        if flag in LAUNCH_FLAGS or dest not in given:
            continue
        value = given[dest]
        if options.get("action") is argparse.BooleanOptionalAction:
            words.append(flag if value else f"--no-{flag[2:]}")
        elif options.get("action") == "store_true":
            words.append(flag)
        elif flag == "--option":  # (key, value read as YAML) pairs; JSON is YAML that reads back alike
            words += [f"--option={key}={json.dumps(item, default=str)}" for key, item in value]
        else:
            words.append(f"{flag}={value}")
    return words
