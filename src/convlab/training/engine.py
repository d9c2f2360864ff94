"""The training loop: ``train(config, **overrides)`` builds data, model, optimizer and schedule, then runs epochs.

The step reads top to bottom in ``train_step`` (forward, loss, backward, clip, step,
schedule). A run reads as ``train``: ``_set_up`` (data, model), then ``_train_epochs`` (each
epoch ``_train_and_validate``, then ``_save_epoch``) or ``_linear_probe_run``, then ``_finish``
(test, report). Everything a run produces lands in its run folder (see ``convlab.train``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convlab.checkpoint import load_weights, read_record, save_checkpoint
from convlab.choices import (
    OPTIMIZERS,
    default_lr,
    lr_words,
)
from convlab.data import DataBundle
from convlab.errors import ConvlabError
from convlab.evaluation import evaluate_model
from convlab.files import RunFolderInUse, atomic_write, run_lock
from convlab.models import ModelSpec, is_reference
from convlab.models.user import check_channels, code_of
from convlab.record import DataSpec, InputSpec, RunRecord
from convlab.report import METRIC_COLUMNS, write_report
from convlab.runtime import check_device
from convlab.speed import use_fast_layers
from convlab.threads import resolve_threads
from convlab.training.config import FIELDS, TrainConfig, load_config_file, resolve_config, save_config
from convlab.training.crossval import CrossValidation, cross_validate
from convlab.training.inputs import (
    MIN_VAL_PER_CLASS,
    data_text,
    drops_last_batch,
    fit_input_size,
    folder_input_notes,
    is_own_network,
    network_for_run,
    network_label,
    record_own_network,
    resolve_batch_size,
    run_data,
)
from convlab.training.optim import Schedule, build_optimizer
from convlab.training.progress import TrainProgress, epoch_line
from convlab.training.state import load_state, restore_rng, save_state, seed_everything
from convlab.transfer import freeze_batchnorm
from convlab.transfer.run import (
    TransferRun,
    add_report_section,
    apply_source_defaults,
    fit_linear_probe,
    start_transfer,
    trainable_lines,
)

# Szegedy et al. 2014, section 5: the auxiliary classifiers' losses are "added to the total loss of the
# network with a discount weight (... weighted by 0.3)" during training; inference discards them.
AUX_LOSS_WEIGHT = 0.3
# Everything else would change the run; the speed levers (threads, channels_last, compile) change its pace
# only, and test_tta how the finished run is tested, not how it trains.
RESUME_MAY_CHANGE = (
    "epochs",
    "early_stop",
    "device",
    "out",
    "resume",
    "threads",
    "channels_last",
    "compile",
    "test_tta",
)
RUN_FILES = ("config.yaml", "state.pt", "last.safetensors", "best.safetensors", "metrics.csv")


@dataclass
class TrainResult:
    """What a run achieved; the run folder holds the details."""

    run_dir: Path
    config: TrainConfig
    epochs_completed: int
    best_epoch: int
    best_val_top1: float | None
    # convlab.evaluation.EvalResult of the best weights on the test split, if the data has one
    test: Any = None
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


# ---------------------------------------------------------------------------------------------------------
# The step and the epoch


def train_step(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    criterion: nn.Module,
    config: TrainConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step: forward, loss, backward, clip, step, schedule. Returns the loss and main logits."""
    if config.channels_last:  # NHWC batches for a channels_last model (docs/performance.md)
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=config.amp == "bf16"):
        outputs = model(images)
        logits, *aux_logits = outputs if isinstance(outputs, tuple) else (outputs,)
        loss = criterion(logits, labels)
        for aux in aux_logits:  # auxiliary heads exist in training only (GoogLeNet, Inception v3)
            loss = loss + AUX_LOSS_WEIGHT * criterion(aux, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.clip_value is not None:  # each gradient element into [-v, v] (notes 000, "clip by value")
        nn.utils.clip_grad_value_(model.parameters(), config.clip_value)
    # g * v / ||g|| when ||g|| > v, over all parameters (notes 000, "clip by norm")
    if config.clip_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
    optimizer.step()
    schedule.after_step()
    return loss.detach(), logits.detach()


class NonFiniteLoss(Exception):
    def __init__(self, step: int, value: float) -> None:
        super().__init__(step, value)
        self.step, self.value = step, value


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    criterion: nn.Module,
    config: TrainConfig,
    progress: TrainProgress,
) -> dict[str, float]:
    """Train over ``loader`` once. Sums stay on the device and are read only when the bar refreshes."""
    model.train()
    # Transfer: a frozen backbone's BatchNorm keeps its statistics (torch.compile's wrapper holds the model
    # as _orig_mod; train() above reaches it through the wrapper).
    freeze_batchnorm(getattr(model, "_orig_mod", model))
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    # the first step whose loss was not finite, and that loss
    first_bad_step = torch.full((), -1, dtype=torch.int64, device=device)
    first_bad_loss = torch.zeros((), device=device)
    seen = 0
    start = time.perf_counter()

    def check_and_report(steps_done: int) -> None:
        bad = int(first_bad_step)  # one device sync
        if bad >= 0:
            raise NonFiniteLoss(bad, float(first_bad_loss))
        elapsed = max(time.perf_counter() - start, 1e-9)
        progress.update(
            steps_done, float(loss_sum) / max(seen, 1), int(correct) / max(seen, 1), seen / elapsed
        )

    for step, (images, labels) in enumerate(loader, start=1):
        loss, logits = train_step(model, images, labels, optimizer, schedule, criterion, config)
        batch = labels.shape[0]
        loss_sum += loss.double() * batch
        correct += (logits.argmax(dim=1) == labels).sum()
        newly_bad = (first_bad_step < 0) & ~torch.isfinite(loss)
        first_bad_step = torch.where(newly_bad, step, first_bad_step)
        first_bad_loss = torch.where(newly_bad, loss.float(), first_bad_loss)
        seen += batch
        if progress.due():
            check_and_report(step)
    check_and_report(len(loader))
    seconds = time.perf_counter() - start
    return {
        "train_loss": float(loss_sum) / seen,
        "train_top1": int(correct) / seen,
        "images": seen,
        "train_seconds": seconds,
    }


# ---------------------------------------------------------------------------------------------------------
# Threads: convlab.threads chooses how many; torch has them for the length of a run.


@contextlib.contextmanager
def intra_op_threads(threads: int | str | None):
    """Run with the torch threads ``threads`` resolves to (convlab.threads), then give the process its own back."""
    previous = torch.get_num_threads()
    torch.set_num_threads(resolve_threads(threads, previous))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _threads_note(device: torch.device) -> str:
    """`` (2 threads)`` for train.log's first line on a CPU; on a GPU they are not what sets the pace."""
    if device.type != "cpu":
        return ""
    threads = torch.get_num_threads()
    return f" ({threads} thread{'s' if threads > 1 else ''})"


# ---------------------------------------------------------------------------------------------------------
# Setting a run up: configuration, run folder, data and model


def train(
    config: TrainConfig | dict | str | Path | None = None, **overrides: Any
) -> TrainResult | CrossValidation:
    """Train a model; ``config`` is a TrainConfig, a mapping or a YAML file, ``overrides`` win over it.

    >>> train(model="lenet5", data="fashion-mnist", epochs=8, optimizer="adam", schedule="onecycle")
    >>> train(resume="runs/lenet5-fashion-mnist-20250101-120000", epochs=12)   # continue, 4 more epochs
    >>> train(recipe="fast")   # a named configuration from convlab.training.recipes
    >>> train(model="model.py:tinycnn", data="digits", epochs=5)   # your own builder (docs/own-network.md)
    >>> train(model=MyNet(), data="digits", epochs=5)   # a network you built, trained in place
    >>> train(model="lenet5", data="photos/", epochs=10, folds=5)   # 5-fold cross-validation

    Your own network must return logits (N x classes); it is checked against the data before training.
    """
    network, config, overrides = _own_network(config, overrides)
    # The run folder is locked from before its previous-run check to the run's last write (files.run_lock).
    with contextlib.ExitStack() as held:
        config, run_dir, resuming = _prepare(config, overrides, held)
        if config.folds is not None and config.fold is None:  # K runs, one per fold (training.crossval)
            return cross_validate(config, run_dir, train, network)
        with intra_op_threads(config.threads):
            run = _set_up(config, run_dir, resuming, network)
            if config.transfer == "linear-probe":
                return _linear_probe_run(run)
            return _train_epochs(run, resuming)


def _own_network(config: Any, overrides: dict[str, Any]) -> tuple[nn.Module | None, Any, dict[str, Any]]:
    """An nn.Module given as ``model`` (as Keras' fit, fastai's Learner and Lightning take one), taken out of
    the settings; they name it by its class (``mynets:MyNet``), so config.yaml stays plain values."""
    if isinstance(config, dict) and isinstance(config.get("model"), nn.Module):
        config = dict(config)
        overrides = {"model": config.pop("model"), **overrides}
    network = overrides.get("model")
    if not isinstance(network, nn.Module):
        return None, config, overrides
    overrides = dict(overrides)
    if overrides.get("resume"):
        del overrides["model"]  # the saved configuration names it already; the object replaces what it names
    else:
        spec = getattr(network, "convlab_spec", None)
        overrides["model"] = (
            spec.reference if isinstance(spec, ModelSpec) else code_of(type(network)).reference
        )
    return network, config, overrides


def _prepare(
    config: Any, overrides: dict[str, Any], held: contextlib.ExitStack
) -> tuple[TrainConfig, Path, bool]:
    """The resolved configuration, the run folder (its lock entered into ``held``) and whether this resumes
    a run. The lock comes before the checks, so two runs started at one moment cannot both pass them."""
    given = _explicit_settings(config, overrides)
    if given.get("resume"):
        if Path(given["resume"]).is_dir():  # otherwise _resume_config says it is not a run folder
            held.enter_context(run_lock(given["resume"]))
        config = _resume_config(Path(given["resume"]), given)
        return config, Path(config.out), True
    config = resolve_config(config, **overrides)
    if config.pretrained is not None:
        apply_source_defaults(config, given)
    if config.out:
        run_dir = Path(config.out)
        held.enter_context(run_lock(run_dir))
    else:  # a default folder taken by a run started in the same second: the next numbered one
        for _ in range(100):
            run_dir = default_run_dir(config)
            with contextlib.suppress(RunFolderInUse):
                held.enter_context(run_lock(run_dir))
                break
        else:
            held.enter_context(run_lock(run_dir))  # says which folder is in use
    _refuse_previous_run(run_dir)
    config.out = str(run_dir)
    return config, run_dir, False


def _explicit_settings(config: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings the caller actually gave (file or mapping, then overrides), keys normalised."""
    if isinstance(config, TrainConfig):
        defaults = TrainConfig().to_dict()
        given = {k: v for k, v in config.to_dict().items() if v != defaults[k]}
    elif isinstance(config, dict):
        given = {str(k).replace("-", "_"): v for k, v in config.items()}
    elif config is None:
        given = {}
    else:
        given = load_config_file(config)
    return {**given, **{str(k).replace("-", "_"): v for k, v in overrides.items()}}


def _resume_config(run_dir: Path, given: dict[str, Any]) -> TrainConfig:
    """The saved configuration of ``run_dir`` with the few settings a resumed run may change."""
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "state.pt").is_file():
        raise ConvlabError(
            f"Cannot resume '{run_dir}': it is not a run folder with a completed epoch (config.yaml and state.pt)."
        )
    saved = resolve_config(run_dir / "config.yaml")
    changes = {k: v for k, v in given.items() if k != "resume"}
    config = resolve_config(saved, **changes)
    changed = [
        name
        for name in FIELDS
        if name not in RESUME_MAY_CHANGE and getattr(config, name) != getattr(saved, name)
    ]
    if changed:
        raise ConvlabError(
            f"A resumed run continues with its saved configuration; it cannot change {', '.join(changed)} "
            f"(only {', '.join(RESUME_MAY_CHANGE[:3])}). Start a new run with --out to train differently."
        )
    config.out, config.resume = str(run_dir), None
    return config


def default_run_dir(config: TrainConfig) -> Path:
    """``runs/<model>-<data>-<YYYYmmdd-HHMMSS>``, with a numbered suffix if that folder exists already."""
    data = (
        config.data.split(":", 1)[0] if config.data.startswith("idx:") else Path(config.data.rstrip("/")).name
    )
    data = re.sub(r"[^A-Za-z0-9._-]+", "-", data).strip("-.") or "data"
    # your own network: its function's or class's name, not the path to it
    model = config.model.rpartition(":")[2].rpartition(".")[2] if is_reference(config.model) else config.model
    model = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.") or "model"
    base = Path("runs") / f"{model}-{data}-{datetime.now():%Y%m%d-%H%M%S}"
    path, number = base, 2
    while path.exists():
        path, number = base.with_name(f"{base.name}-{number}"), number + 1
    return path


def _refuse_previous_run(run_dir: Path) -> None:
    held = [name for name in RUN_FILES if (run_dir / name).exists()]
    if held:
        raise ConvlabError(
            f"'{run_dir}' already holds a run ({', '.join(held)}); resume it with --resume {run_dir} "
            f"or choose another --out (a previous run is never overwritten)."
        )


@dataclass
class _Run:
    """A run once it is set up: what its epochs (or its linear probe) and ``_finish`` work with."""

    config: TrainConfig
    run_dir: Path
    device: torch.device
    bundle: DataBundle
    model: nn.Module  # what checkpoints and evaluation use
    step_model: nn.Module  # what the training steps call: the model, or torch.compile's wrapper of it
    transfer: TransferRun | None
    progress: TrainProgress

    @property
    def has_val(self) -> bool:
        return "val" in self.bundle.splits()

    def train_loader(self, epoch: int):
        """Epoch ``epoch``'s training batches, shuffled and augmented by the seed and the epoch alone."""
        return self.bundle.loader(
            "train",
            self.config.batch_size,
            shuffle=True,
            augment=self.config.augment,
            epoch=epoch,
            seed=self.config.seed,
            device=self.device,
            drop_last=drops_last_batch(self.bundle, self.config.batch_size),
        )


def _set_up(config: TrainConfig, run_dir: Path, resuming: bool, network: nn.Module | None = None) -> _Run:
    """Device, seeds, data and model: the model fitted to the data, on its device, in the run's layout."""
    device = check_device(None if config.device == "auto" else config.device)  # None: CUDA when present
    seed_everything(config.seed)
    bundle = run_data(config)
    progress = TrainProgress(run_dir / "train.log")
    resolve_batch_size(config, bundle, progress)
    for line in folder_input_notes(config, bundle):
        progress.note(line)
    model = network_for_run(config, bundle, run_dir, resuming, network)
    own = network is not None or is_own_network(model)
    if own:  # before fitting the size: the inspector's advice is for zoo models, yours gets its own
        check_channels(model, network_label(model), (bundle.in_chans, *bundle.image_size), bundle.name)
    bundle = fit_input_size(model, bundle, config, progress)
    if own:
        record_own_network(model, bundle, config)
    transfer = start_transfer(model, bundle, config, run_dir, resuming) if config.pretrained else None
    model.to(device)
    use_fast_layers(model, (bundle.in_chans, *bundle.image_size))  # the same sums, faster: convlab.speed
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    # The compiled module shares the model's parameters: checkpoints and evaluation use the model itself.
    step_model = torch.compile(model) if config.compile else model
    run = _Run(config, run_dir, device, bundle, model, step_model, transfer, progress)
    if config.early_stop is not None and not run.has_val:
        raise ConvlabError("--early-stop needs a validation split; give --val-split above 0.")
    return run


def _tensorboard(run_dir: Path, purge_step: int | None = None):
    """TensorBoard's writer for the run's tb/ folder. TensorBoard is imported only when a run writes to it:
    it is heavy, and nothing else in convlab needs it."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / "tb"), purge_step=purge_step)


# ---------------------------------------------------------------------------------------------------------
# The epochs, and what each one leaves in the run folder


@dataclass
class Standing:
    """Where a run stands after its last completed epoch; saved in state.pt, so early stopping resumes too."""

    epoch: int = 0
    best_top1: float = -math.inf
    best_epoch: int = 0
    stale_epochs: int = 0  # epochs since the best val top-1

    def after_epoch(self, epoch: int, score: float) -> bool:
        """Record epoch ``epoch`` with ``score``; True when it is the best so far (ties keep the earlier)."""
        self.epoch = epoch
        if score > self.best_top1:
            self.best_top1, self.best_epoch, self.stale_epochs = score, epoch, 0
            return True
        self.stale_epochs += 1
        return False

    def out_of_patience(self, patience: int | None) -> bool:
        """Whether val top-1 has gone ``patience`` epochs without improving (never without --early-stop)."""
        return patience is not None and self.stale_epochs >= patience


@dataclass
class _Steps:
    """How every step of the run learns (optimizer, schedule, loss), and how many steps an epoch takes."""

    optimizer: torch.optim.Optimizer
    schedule: Schedule
    criterion: nn.Module
    per_epoch: int


def _steps(run: _Run) -> _Steps:
    """The run's optimizer (the transfer's parameter groups, if any) and its schedule over the epochs' steps."""
    config = run.config
    steps_per_epoch = len(run.train_loader(1))
    optimizer = build_optimizer(
        run.model,
        config.optimizer,
        config.lr,
        config.momentum,
        config.weight_decay,
        groups=run.transfer.groups if run.transfer else None,
        batch_size=config.batch_size,
    )
    schedule = Schedule(optimizer, config.schedule, config.epochs, steps_per_epoch, config.warmup_epochs)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    return _Steps(optimizer, schedule, criterion, steps_per_epoch)


def _train_epochs(run: _Run, resuming: bool) -> TrainResult:
    """Epoch after epoch from where the run stands, each saved as it ends, to the last or an early stop."""
    config, progress = run.config, run.progress
    steps = _steps(run)
    standing = _begin_epochs(run, steps, resuming)
    # A resumed run's TensorBoard log forgets what was logged after the epoch it resumes from.
    writer = _tensorboard(run.run_dir, purge_step=standing.epoch + 1 if resuming else None)
    rows = read_metrics_rows(run.run_dir / "metrics.csv", standing.epoch)
    history: list[dict[str, Any]] = []
    saved_epoch = epoch = standing.epoch
    try:
        for epoch in range(standing.epoch + 1, config.epochs + 1):
            row = _train_and_validate(run, steps, epoch)
            improved = standing.after_epoch(epoch, _best_score(row, epoch))
            _save_epoch(run, steps, standing, row, improved, rows)
            saved_epoch = epoch
            history.append(row)
            progress.note(epoch_line(epoch, config.epochs, row, len(run.bundle.classes)))
            _log_scalars(writer, row)
            if _early_stop(run, standing):
                break
    except NonFiniteLoss as bad:
        message = _non_finite_message(bad, epoch, saved_epoch, steps.optimizer)
        progress.note(message, echo=False)  # the error itself is what the caller sees
        raise ConvlabError(message) from None
    except KeyboardInterrupt:
        progress.note(
            f"interrupted in epoch {epoch}; the run folder keeps epoch {saved_epoch}. "
            f"Continue with: convlab train --resume {run.run_dir}"
        )
        raise
    finally:
        writer.close()
        progress.close()
    return _finish(run, run.model, standing, history)


def _begin_epochs(run: _Run, steps: _Steps, resuming: bool) -> Standing:
    """Where the epochs start (a resume restores it), said in train.log; config.yaml and skipped.txt written."""
    config, progress = run.config, run.progress
    if resuming:
        standing = _restore(run.run_dir, config, run.model, steps.optimizer, steps.schedule, steps.per_epoch)
        progress.note(f"resuming {run.run_dir} after epoch {standing.epoch} of {config.epochs}")
    else:
        standing = Standing()
        progress.note(
            f"training {config.model} on {data_text(run.bundle)} on {run.device}"
            f"{_threads_note(run.device)}; run folder {run.run_dir}"
        )
    if run.transfer is not None:
        run.transfer.start_epoch(run.model, standing.epoch + 1, progress)
        for line in [*run.transfer.notes, *trainable_lines(run.model)]:
            progress.note(line)
    progress.note(_optimisation_line(config, steps))
    save_config(config, run.run_dir / "config.yaml")
    if run.bundle.skipped:
        listing = "".join(f"{file}\t{reason}\n" for file, reason in run.bundle.skipped)
        atomic_write(run.run_dir / "skipped.txt", lambda tmp: Path(tmp).write_text(listing))
        progress.note(f"skipped {len(run.bundle.skipped)} unreadable files (listed in skipped.txt)")
    return standing


def optimisation_settings(config: TrainConfig) -> dict[str, Any]:
    """The learning rate, momentum and weight decay a run trains with, defaults resolved, and why the rate."""
    spec = OPTIMIZERS[config.optimizer]
    lr = config.lr if config.lr is not None else default_lr(config.optimizer, config.batch_size)
    why = "given" if config.lr is not None else lr_words(config.optimizer, config.batch_size)
    momentum = config.momentum if config.momentum is not None else spec.momentum
    decay = config.weight_decay if config.weight_decay is not None else spec.weight_decay
    return {"lr": lr, "lr_why": why, "momentum": momentum, "weight_decay": decay}


def _optimisation_line(config: TrainConfig, steps: _Steps) -> str:
    """``optimizer momentum: lr 0.1 (momentum's default at batch 64), momentum 0.9, ...`` for train.log."""
    chosen = optimisation_settings(config)
    momentum = "" if chosen["momentum"] is None else f", momentum {chosen['momentum']:g}"
    return (
        f"optimizer {config.optimizer}: lr {chosen['lr']:g} ({chosen['lr_why']}){momentum}, weight decay "
        f"{chosen['weight_decay']:g}; batch {config.batch_size}, {steps.per_epoch} steps an epoch; "
        f"schedule {config.schedule}"
    )


def _restore(
    run_dir: Path, config: TrainConfig, model, optimizer, schedule: Schedule, steps_per_epoch: int
) -> Standing:
    """Put model, optimizer, schedule and RNGs back as they were after the run's last completed epoch."""
    state = load_state(run_dir / "state.pt")
    if state["steps_per_epoch"] != steps_per_epoch:
        raise ConvlabError(
            f"Cannot resume '{run_dir}': its data gave {state['steps_per_epoch']} batches per epoch, "
            f"now {steps_per_epoch}; the data set changed since the run started."
        )
    if config.epochs < state["epoch"]:
        raise ConvlabError(
            f"--epochs {config.epochs} is fewer than the {state['epoch']} epochs already done."
        )
    model.load_state_dict(state["model"])
    if config.epochs != state["epochs"] and schedule.depends_on_length:
        # More epochs: the schedule is redrawn over the new length and continues from the step reached.
        with warnings.catch_warnings():
            # The replay steps a fresh schedule with no optimizer step, on purpose; torch takes that for
            # the wrong order. Harmless: the resumed epochs' learning rates are an unbroken run's
            # (tests/cli/test_terminal.py).
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            schedule.fast_forward(state["epoch"] * steps_per_epoch)
        redrawn = [group["lr"] for group in optimizer.param_groups]
        optimizer.load_state_dict(state["optimizer"])
        for group, lr in zip(optimizer.param_groups, redrawn):
            group["lr"] = lr
    else:
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
    restore_rng(state["rng"])
    return Standing(**state["standing"])


def _train_and_validate(run: _Run, steps: _Steps, epoch: int) -> dict[str, Any]:
    """Epoch ``epoch``: train over the data once, validate, step the schedule; returns its metrics row."""
    config, progress = run.config, run.progress
    start = time.perf_counter()
    if run.transfer is not None:
        run.transfer.start_epoch(run.model, epoch, progress)  # head epochs over: the backbone joins in
    row: dict[str, Any] = {"epoch": epoch, "lr": steps.schedule.lr}  # the lr the epoch starts with
    loader = run.train_loader(epoch)
    progress.start_epoch(epoch, config.epochs, len(loader))
    try:
        stats = train_one_epoch(
            run.step_model, loader, steps.optimizer, steps.schedule, steps.criterion, config, progress
        )
    finally:
        progress.end_epoch()
    row.update(train_loss=stats["train_loss"], train_top1=stats["train_top1"])
    if run.has_val:
        val = evaluate_model(run.model, run.bundle, "val", device=run.device, amp=config.amp)
        row.update(val_loss=val.loss, val_top1=val.top1, val_top5=val.top5)
    steps.schedule.after_epoch(_plateau_loss(row))
    row.update(seconds=time.perf_counter() - start, images_per_s=stats["images"] / stats["train_seconds"])
    return row


def _plateau_loss(row: dict[str, Any]) -> float:
    """The loss a plateau schedule watches: validation's, or training's when the data has no validation split."""
    return row.get("val_loss", row["train_loss"])


def _best_score(row: dict[str, Any], epoch: int) -> float:
    """What makes an epoch the best so far: its val top-1. Without a validation split it is the epoch
    number, so the latest weights count as the best, being the best we know of."""
    return row.get("val_top1", epoch)


def _save_epoch(
    run: _Run, steps: _Steps, standing: Standing, row: dict[str, Any], improved: bool, rows: list
) -> None:
    """The epoch's checkpoints and metrics.csv row, then state.pt.

    state.pt, written last, is what a resume reads (it holds the weights too): it commits the
    epoch, so the folder can be resumed whenever the run stops.
    """
    config, bundle, model, transfer, epoch = run.config, run.bundle, run.model, run.transfer, row["epoch"]
    record = checkpoint_record(model, config, bundle, epoch, row)
    if transfer is not None:
        record.transfer = transfer.record(model)
    rows.append(_format_row(row))
    _save_results(run.run_dir, model, record, rows, improved)
    save_state(
        run.run_dir / "state.pt",
        model=model,
        optimizer=steps.optimizer,
        schedule=steps.schedule,
        epoch=epoch,
        epochs=config.epochs,
        steps_per_epoch=steps.per_epoch,
        standing=asdict(standing),
    )


def _save_results(
    run_dir: Path, model: nn.Module, record, rows: list[dict[str, str]], improved: bool
) -> None:
    """last.safetensors, best.safetensors too when the weights ``improved``, and metrics.csv's ``rows``."""
    save_checkpoint(run_dir / "last.safetensors", model, record)
    if improved:
        save_checkpoint(run_dir / "best.safetensors", model, record)
    write_metrics(run_dir / "metrics.csv", rows)


def checkpoint_record(
    model: nn.Module, config: TrainConfig, bundle, epoch: int, row: dict[str, Any]
) -> RunRecord:
    return RunRecord(
        model=ModelSpec.of(model),
        classes=list(bundle.classes),
        input=InputSpec.of(bundle),
        data=DataSpec(
            name=bundle.name,
            source=bundle.source,
            val_split=config.val_split,
            seed=config.seed,
            min_val_per_class=MIN_VAL_PER_CLASS,
            fold=config.fold,
            folds=config.folds,
        ),
        epoch=epoch,
        metrics={key: row.get(key) for key in ("val_top1", "val_top5", "val_loss", "train_loss")},
        config=config.to_dict(),
    )


def _format_row(row: dict[str, Any]) -> dict[str, str]:
    formats = {"epoch": "d", "lr": ".6g", "seconds": ".2f", "images_per_s": ".1f"}
    return {
        key: "" if row.get(key) is None else format(row[key], formats.get(key, ".6f"))
        for key in METRIC_COLUMNS
    }


def write_metrics(path: Path, rows: list[dict[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    text = buffer.getvalue()
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_metrics_rows(path: Path, up_to_epoch: int) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if int(row["epoch"]) <= up_to_epoch]


def _log_scalars(writer, row: dict[str, Any]) -> None:
    for key in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr"):
        if row.get(key) is not None:  # TensorBoard groups "train/loss", "val/top1", ... by their prefix
            writer.add_scalar(key.replace("_", "/", 1) if key != "lr" else "lr", row[key], row["epoch"])
    writer.flush()


def _early_stop(run: _Run, standing: Standing) -> bool:
    """True, with a line in train.log, when --early-stop's patience has run out."""
    if not standing.out_of_patience(run.config.early_stop):
        return False
    run.progress.note(
        f"early stop: val top-1 has not improved for {standing.stale_epochs} epochs "
        f"(best {standing.best_top1:.1%} at epoch {standing.best_epoch})"
    )
    return True


def _non_finite_message(bad: NonFiniteLoss, epoch: int, saved_epoch: int, optimizer) -> str:
    kept = f"the run folder keeps epoch {saved_epoch}" if saved_epoch else "no epoch was completed"
    return (
        f"The training loss became {bad.value} at epoch {epoch}, step {bad.step}; {kept}. "
        f"Try a lower --lr (this run used {optimizer.defaults['lr']:g}) or --clip-norm 1.0."
    )


# ---------------------------------------------------------------------------------------------------------
# The linear probe, and the end of every run


def _linear_probe_run(run: _Run) -> TrainResult:
    """--transfer linear-probe: one fit instead of epochs, saved as a run folder of one epoch (no state.pt:
    there is nothing to resume), which eval, predict and export read like any other."""
    config, bundle, transfer, progress, run_dir = (
        run.config,
        run.bundle,
        run.transfer,
        run.progress,
        run.run_dir,
    )
    progress.note(
        f"linear probe of {config.model} on {data_text(bundle)} on {run.device}; run folder {run_dir}"
    )
    for line in transfer.notes:
        progress.note(line)
    save_config(config, run_dir / "config.yaml")
    model, row, probe = fit_linear_probe(run.model, bundle, config, run.device, progress)
    for line in trainable_lines(model):
        progress.note(line)
    record = checkpoint_record(model, config, bundle, 1, row)
    record.transfer = transfer.record(model, **probe)
    _save_results(run_dir, model, record, [_format_row(row)], improved=True)
    with _tensorboard(run_dir) as writer:
        _log_scalars(writer, row)
    standing = Standing()
    standing.after_epoch(1, _best_score(row, 1))
    val = f"  val loss {row['val_loss']:.3f} top1 {row['val_top1']:.1%}" if "val_loss" in row else ""
    progress.note(
        f"linear probe  train loss {row['train_loss']:.3f} top1 {row['train_top1']:.1%}{val}  "
        f"{row['seconds']:.1f} s"
    )
    return _finish(run, model, standing, [row])


def _finish(run: _Run, model: nn.Module, standing: Standing, history: list[dict[str, Any]]) -> TrainResult:
    """Test the best weights of ``model`` (when the data has a test split), write the report and say where
    it all is."""
    config, bundle, run_dir = run.config, run.bundle, run.run_dir
    test = final = None
    if standing.best_epoch > 0:
        load_weights(model, run_dir / "best.safetensors", map_location=run.device)
        if "test" in bundle.splits():
            test = final = evaluate_model(
                model, bundle, "test", device=run.device, amp=config.amp, tta=config.test_tta
            )
        elif run.has_val:  # no test split (a folder of photos): the report evaluates the validation split
            final = evaluate_model(model, bundle, "val", device=run.device, amp=config.amp)
        report = write_report(run_dir, final, model=model, bundle=bundle, settings=resolved_settings(run))
        transfer = read_record(run_dir / "last.safetensors").transfer  # the trainable set at the end
        if transfer:
            add_report_section(report, transfer)
    best_val_top1 = standing.best_top1 if run.has_val and standing.best_epoch > 0 else None
    run.progress.note(_summary_line(run_dir, best_val_top1, standing.best_epoch, test))
    return TrainResult(
        run_dir=run_dir,
        config=config,
        epochs_completed=standing.epoch,
        best_epoch=standing.best_epoch,
        best_val_top1=best_val_top1,
        test=test,
        history=history,
        stopped_early=standing.out_of_patience(config.early_stop),
    )


def resolved_settings(run: _Run) -> dict[str, str]:
    """What the run resolved for settings its configuration leaves unset, and what it ran on: the report's
    configuration table shows these instead of blanks."""
    config, bundle = run.config, run.bundle
    chosen = optimisation_settings(config)
    spec = InputSpec.of(bundle)
    height, width = spec.size
    settings = {
        "lr": f"{chosen['lr']:g} ({chosen['lr_why']})",
        "momentum": "none (the optimizer has none)"
        if chosen["momentum"] is None
        else f"{chosen['momentum']:g}",
        "weight_decay": f"{chosen['weight_decay']:g}",
        "image_size": f"{height}x{width}",
        "resize": spec.resize,
        "in_chans": str(spec.channels),
        "num_classes": str(len(bundle.classes)),
        "activation": "the model's own",
        "normalisation": "mean ({}), std ({})".format(
            ", ".join(f"{m:.4f}" for m in spec.mean), ", ".join(f"{s:.4f}" for s in spec.std)
        ),
        "device": str(run.device),
        "threads": str(torch.get_num_threads()),
    }
    return settings


def _summary_line(run_dir: Path, best_val_top1: float | None, best_epoch: int, test) -> str:
    summary = []
    if best_val_top1 is not None:
        summary.append(f"best val top-1 {best_val_top1:.2%} (epoch {best_epoch})")
    if test is not None:
        views = f", test-time augmentation {test.tta}" if test.tta else ""
        summary.append(f"test top-1 {test.top1:.2%} top-{test.top5_k} {test.top5:.2%} (best weights{views})")
    summary.append(f"run folder {run_dir}")
    return "; ".join(summary)
