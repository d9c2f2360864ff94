"""The training loop: ``train(config, **overrides)`` builds data, model, optimizer and schedule, then runs epochs.

A run reads as ``train``: ``_set_up`` (data, model), then ``_train_epochs`` (each
epoch ``_train_and_validate``, then ``_save_epoch``) or ``_linear_probe_run``, then ``_finish``
(test, report). Everything a run produces lands in its run folder (see ``convlab.train``).

This module puts a run in order; what it calls lives beside it. The step reads top to bottom in
``training.step``'s ``train_step`` (forward, loss, backward, clip, step, schedule), which
``train_one_epoch`` runs over an epoch. ``training.run_folder`` holds the run folder's side: its name, the
checks before a run takes or resumes one, what each epoch writes there, state.pt read back, and the
sentence a failed write ends with; ``training.state`` what state.pt holds; ``training.tensorboard`` tb/;
``training.lr_range`` the learning-rate range test that ``lr_find`` and ``--lr auto`` run.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convlab.allocator import large_buffers_kept
from convlab.checkpoint import load_weights, read_record
from convlab.choices import (
    OPTIMIZERS,
    default_lr,
    lr_words,
)
from convlab.data import DataBundle
from convlab.errors import ConvlabError, TrainingDiverged
from convlab.evaluation import evaluate_model
from convlab.files import RunFolderInUse, WriteError, atomic_write, run_lock
from convlab.models import ModelSpec
from convlab.models.user import check_channels, code_of
from convlab.record import InputSpec
from convlab.report import write_report
from convlab.runtime import PrecisionChoice, check_device, choose_precision
from convlab.speed import fast_layers_note, use_fast_layers
from convlab.threads import resolve_threads
from convlab.training.config import (
    TrainConfig,
    check_distributed,
    load_config_file,
    resolve_config,
    save_config,
)
from convlab.training.crossval import CrossValidation, cross_validate
from convlab.training.distributed import (
    RUN_DIR_NOTE,
    SOLO,
    Group,
    is_collective_failure,
    peer_lost,
    process_group,
)
from convlab.training.gradients import GradientLog
from convlab.training.inputs import (
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
from convlab.training.lr_range import CSV_FILE as LR_FIND_CSV
from convlab.training.lr_range import (
    DEFAULT_END,
    DEFAULT_START,
    DEFAULT_STEPS,
    LRRangeTest,
    range_test_on_run,
)
from convlab.training.optim import Schedule, build_optimizer
from convlab.training.progress import TrainProgress, epoch_line
from convlab.training.run_folder import (
    RunWriteError,
    cannot_write,
    checkpoint_record,
    default_run_dir,
    format_row,
    read_metrics_rows,
    refuse_previous_run,
    restore,
    resume_config,
    save_results,
    stopped_before_first_checkpoint,
    write_failure,
)
from convlab.training.state import EpochPosition, Kept, Standing, rng_state, save_state, seed_everything
from convlab.training.step import NonFiniteLoss, train_one_epoch
from convlab.training.tensorboard import TensorBoard
from convlab.transfer.feature_cache import head_on_cached_features
from convlab.transfer.run import (
    TransferRun,
    add_report_section,
    apply_source_defaults,
    fit_linear_probe,
    start_transfer,
    trainable_lines,
)


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

    def _repr_html_(self) -> str:
        """In a notebook: what the run achieved, and its curves."""
        from convlab.notebook import lines_html, png_html

        lines = [_summary_line(self.run_dir, self.best_val_top1, self.best_epoch, self.test)]
        return lines_html(lines) + png_html(self.run_dir / "curves.png", "loss, top-1 and learning rate")


# ---------------------------------------------------------------------------------------------------------
# The process for the length of a run: convlab.threads chooses how many torch threads, convlab.allocator
# keeps freed large buffers for the next step.


@contextlib.contextmanager
def intra_op_threads(threads: int | str | None):
    """Run with the torch threads ``threads`` resolves to (convlab.threads), then give the process its own back."""
    previous = torch.get_num_threads()
    torch.set_num_threads(resolve_threads(threads, previous))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def run_process(threads: int | str | None):
    """A run's threads (``intra_op_threads``), with malloc keeping its freed large buffers for the next step
    (convlab.allocator); when the run ends, the process gets its threads and the freed pages go back."""
    with large_buffers_kept(), intra_op_threads(threads):
        yield


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
    # Under torchrun (or --nproc) the process group comes first: process 0 takes the run folder, and every
    # process trains its part of each batch (convlab.training.distributed, docs/distributed.md).
    with process_group() as group:
        try:
            return _train(group, config, overrides, network)
        except Exception as error:
            if group.distributed and is_collective_failure(error):
                raise peer_lost(group, error, None) from None
            raise


def _train(group: Group, config: Any, overrides: dict[str, Any], network: nn.Module | None):
    # The run folder is locked from before its previous-run check to the run's last write (files.run_lock).
    with contextlib.ExitStack() as held:
        config, run_dir, start = group.decide(lambda: _prepare(config, overrides, held))
        check_distributed(config, group.world)
        if group.leader and RUN_DIR_NOTE in os.environ:  # for the launcher, should a process die
            Path(os.environ[RUN_DIR_NOTE]).write_text(f"{run_dir}\n")
        if config.folds is not None and config.fold is None:  # K runs, one per fold (training.crossval)
            try:
                return cross_validate(config, run_dir, train, network)
            except RunWriteError:
                raise  # a fold's, said already
            except WriteError as error:  # the summary's: the folds are finished, each in its folder
                raise RunWriteError(error, cannot_write(error)) from None
        # torchrun and --nproc give each process its share of the cores (OMP_NUM_THREADS): "auto" keeps it,
        # where measuring the idle cores would count the other processes' start as busy
        threads = None if group.distributed and config.threads == "auto" else config.threads
        with run_process(threads):
            try:
                run = group.agree(lambda: _set_up(config, run_dir, start, network, group))
                _agree_on_precision(run)
                _ready_to_step(run)
                if config.transfer == "linear-probe":
                    return _linear_probe_run(run)
                return _train_epochs(run, start)
            except RunWriteError:
                raise
            except WriteError as error:
                raise write_failure(error, run_dir, group) from None
            except Exception as error:
                if group.distributed and is_collective_failure(error):
                    raise peer_lost(group, error, run_dir) from None
                raise


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


@dataclass
class _Start:
    """How a run takes its folder: new, started again (a run stopped before its first state.pt: its
    config.yaml, from step 1), or resumed (state.pt restores it)."""

    resuming: bool = False
    restarting: bool = False
    left_over: list[str] = field(default_factory=list)  # temporary files of a killed write, removed

    @property
    def new(self) -> bool:
        return not (self.resuming or self.restarting)


def _prepare(
    config: Any, overrides: dict[str, Any], held: contextlib.ExitStack
) -> tuple[TrainConfig, Path, _Start]:
    """The resolved configuration, the run folder (its lock entered into ``held``) and how the run starts
    there. The lock comes before the checks, so two runs started at one moment cannot both pass them."""
    given = _explicit_settings(config, overrides)
    if given.get("resume"):
        run_dir = Path(given["resume"])
        # not a folder: resume_config says it is not a run folder
        left_over = held.enter_context(run_lock(run_dir)) if run_dir.is_dir() else []
        config = resume_config(run_dir, given)
        if (run_dir / "state.pt").is_file():
            return config, run_dir, _Start(resuming=True, left_over=left_over)
        if not stopped_before_first_checkpoint(run_dir):
            if config.transfer == "linear-probe":
                raise ConvlabError(
                    f"Cannot resume '{run_dir}': it holds a linear probe, one fit with nothing to resume; "
                    "fit it again with another --out."
                )
            raise ConvlabError(
                f"Cannot resume '{run_dir}': its state.pt is gone, though the run got further than its first "
                "epoch; a run continues only from its state.pt (train again with another --out)."
            )
        return config, run_dir, _Start(restarting=True, left_over=left_over)
    config = resolve_config(config, **overrides)
    if config.pretrained is not None:
        apply_source_defaults(config, given)
    if config.out:
        run_dir = Path(config.out)
        left_over = held.enter_context(run_lock(run_dir))
    else:  # a default folder taken by a run started in the same second: the next numbered one
        for _ in range(100):
            run_dir = default_run_dir(config)
            with contextlib.suppress(RunFolderInUse):
                left_over = held.enter_context(run_lock(run_dir))
                break
        else:
            held.enter_context(run_lock(run_dir))  # says which folder is in use
    refuse_previous_run(run_dir)
    config.out = str(run_dir)
    return config, run_dir, _Start(left_over=left_over)


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
    group: Group = SOLO  # the processes of a distributed run (training.distributed); SOLO: this one alone
    trainable: tuple[bool, ...] = ()  # which parameters the step model was made for (a transfer changes them)
    # the precision and layout the run computes in: config.amp and config.channels_last, "auto" resolved
    precision: PrecisionChoice = PrecisionChoice("off", False, "as given")

    @property
    def lr_found(self) -> bool:
        """Whether --lr auto chose the rate (the range test's lr_find.csv is in the run folder)."""
        return (self.run_dir / LR_FIND_CSV).is_file()

    @property
    def has_val(self) -> bool:
        return "val" in self.bundle.splits()

    def train_loader(self, epoch: int):
        """Epoch ``epoch``'s training batches, shuffled and augmented by the seed and the epoch alone (in a
        distributed run, this process's part of each: the processes draw one order and split each batch)."""
        return self.bundle.loader(
            "train",
            self.config.batch_size,
            shuffle=True,
            augment=self.config.augment,
            epoch=epoch,
            seed=self.config.seed,
            device=self.device,
            drop_last=drops_last_batch(self.bundle, self.config.batch_size),
            shard=self.group.shard,
            crop_padding=self.config.crop_padding,
        )


def _set_up(
    config: TrainConfig, run_dir: Path, start: _Start, network: nn.Module | None = None, group: Group = SOLO
) -> _Run:
    """Device, seeds, data and model: the model fitted to the data, on its device, in the run's layout.
    ``_ready_to_step`` then makes the module the steps call. In a distributed run this runs on every
    process, and only process 0 writes or prints."""
    device = group.device(check_device(None if config.device == "auto" else config.device))
    seed_everything(config.seed)  # the same initial weights on every process (DDP checks it)
    progress = TrainProgress(run_dir / "train.log") if group.leader else TrainProgress(None, silent=True)
    # One process builds a folder's decode-once cache; the processes of a distributed run read one built before
    bundle = run_data(config, progress, build_cache=not group.distributed)
    if start.left_over:
        progress.note(
            f"removed {len(start.left_over)} temporary file{'s' if len(start.left_over) > 1 else ''} an "
            f"interrupted write left in {run_dir}: {', '.join(start.left_over)}"
        )
    resolve_batch_size(config, bundle, progress, group.world)
    if group.distributed and bundle.size("train") < config.batch_size:
        raise ConvlabError(
            f"A distributed run takes whole batches of {config.batch_size} images (--batch-size), and the "
            f"training set has {bundle.size('train')}; give a smaller --batch-size (a multiple of {group.world})."
        )
    for line in folder_input_notes(config, bundle):
        progress.note(line)
    # A resume rebuilds your network and its transfer from the run's last checkpoint; a run stopped inside
    # its first epoch has none yet, and sets up as a new run did (state.pt then restores the weights).
    resuming = start.resuming and (run_dir / "last.safetensors").is_file()
    model = network_for_run(config, bundle, run_dir, resuming, network)
    own = network is not None or is_own_network(model)
    if own:  # before fitting the size: the inspector's advice is for zoo models, yours gets its own
        check_channels(model, network_label(model), (bundle.in_chans, *bundle.image_size), bundle.name)
    bundle = fit_input_size(model, bundle, config, progress)
    if config.crop_padding is not None:  # before the first epoch, not when its loader is built
        bundle.check_crop_padding(config.crop_padding)
    if own:
        record_own_network(model, bundle, config)
    transfer = start_transfer(model, bundle, config, run_dir, resuming) if config.pretrained else None
    model.to(device)
    # the same sums (and gradients), faster: convlab.speed
    use_fast_layers(model, (bundle.in_chans, *bundle.image_size), training=True)
    # auto: what pays for this model here, decided at every start (config.yaml keeps "auto")
    size = (bundle.in_chans, *bundle.image_size)
    precision = choose_precision(model, size, device, config.amp, config.channels_last)
    progress.note(f"precision: {precision}")
    if note := fast_layers_note(model):
        progress.note(note)
    if precision.channels_last:
        model.to(memory_format=torch.channels_last)
    run = _Run(config, run_dir, device, bundle, model, model, transfer, progress, group, precision=precision)
    if config.early_stop is not None and not run.has_val:
        raise ConvlabError("--early-stop needs a validation split; give --val-split above 0.")
    if group.rank:  # process 0 draws dropout as one process would; each other its own stream
        seed_everything(config.seed + group.rank)
    return run


def _agree_on_precision(run: _Run) -> None:
    """In a distributed run every process takes process 0's precision and layout (the one train.log gives):
    the machines of a run may differ in their CPUs."""
    if run.group.distributed:
        run.precision = run.group.decide(lambda: run.precision)
        run.model.to(
            memory_format=torch.channels_last if run.precision.channels_last else torch.contiguous_format
        )


def _ready_to_step(run: _Run) -> None:
    """The module the training steps call: the model, inside DDP in a distributed run (which needs every
    process set up, so it comes after ``_set_up``), inside torch.compile's wrapper with --compile. The
    wrappers share the model's parameters: checkpoints and evaluation use the model itself."""
    stepped = run.group.wrap(run.model, run.device, run.config.sync_bn)
    run.step_model = torch.compile(stepped) if run.config.compile else stepped
    run.trainable = tuple(parameter.requires_grad for parameter in run.model.parameters())


# ---------------------------------------------------------------------------------------------------------
# The learning-rate range test: `convlab lr-find` sets a run up for it (the test: training.lr_range)


def lr_find(
    config: TrainConfig | dict | str | Path | None = None,
    *,
    start: float = DEFAULT_START,
    end: float = DEFAULT_END,
    steps: int = DEFAULT_STEPS,
    **overrides: Any,
) -> LRRangeTest:
    """The learning-rate range test (Smith 2015; fastai's ``lr_find``) on the model and data ``train`` would
    use with these settings: ``steps`` steps with the rate growing from ``start`` to ``end``, then the
    weights and optimizer put back. Writes lr_find.csv and lr_find.png into ``out`` (default
    runs/lr-find-<model>-<data>-<time>) and returns the curve and its suggestions.

    >>> convlab.lr_find(model="lenet5", data="fashion-mnist", optimizer="adam").suggestion
    """
    network, config, overrides = _own_network(config, overrides)
    overrides = {**overrides, "lr": None, "resume": None}  # the test tries every rate; it resumes nothing
    if not resolve_config(config, **overrides).out:
        overrides["out"] = str(default_run_dir(resolve_config(config, **overrides), prefix="lr-find-"))
    with contextlib.ExitStack() as held:
        config, run_dir, begin = _prepare(config, overrides, held)
        check_distributed(config, 1)  # the range test runs on one process
        with run_process(config.threads):
            run = _set_up(config, run_dir, begin, network)
            _ready_to_step(run)
            try:
                return range_test_on_run(run, start, end, steps)
            finally:
                run.progress.close()


# ---------------------------------------------------------------------------------------------------------
# The epochs, and what each one leaves in the run folder


@dataclass
class _Steps:
    """How every step of the run learns (optimizer, schedule, loss), and how many steps an epoch takes."""

    optimizer: torch.optim.Optimizer
    schedule: Schedule
    criterion: nn.Module
    per_epoch: int
    gradients: GradientLog | None = None  # --log-gradients: measured around the optimizer step


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


def _train_epochs(run: _Run, start: _Start) -> TrainResult:
    """Epoch after epoch from where the run stands, each saved as it ends (and every --checkpoint-every
    steps inside it), to the last or an early stop."""
    config, progress = run.config, run.progress
    # --transfer feature-extract: the epochs train the head on the frozen part's outputs, computed once, in
    # place of the run's model and data (transfer.feature_cache); None: every step runs the whole network
    cached = head_on_cached_features(run)
    if config.lr == "auto":  # a resumed run's config.yaml holds the rate chosen
        # with the cache, the range test steps the head on it as the epochs will (the backbone's one pass
        # builds it here, and the epochs read it), not the whole network a hundred times
        config.lr = range_test_on_run(cached or run).suggestion
    steps = _steps(run)
    standing, position = _begin_epochs(run, steps, start)
    kept = Kept(standing.epoch, position.steps if position else 0, steps.per_epoch)

    def checkpoint(now: EpochPosition) -> None:
        _save_state(run, steps, standing, now)
        kept.steps = now.steps

    # A resumed run's TensorBoard log forgets what was logged after the epoch it resumes from (a run
    # started again: everything, though a run logs an epoch only once state.pt has committed it). Process 0
    # alone writes it and the gradient log: the gradients it measures are every process's average.
    leader = run.group.leader
    board = TensorBoard(run.run_dir, purge_step=None if start.new else standing.epoch + 1) if leader else None
    if config.log_gradients is not None and leader:
        steps.gradients = GradientLog(run.model, config.log_gradients, run.run_dir, board.writer)
        steps.gradients.resume_from(standing.epoch * steps.per_epoch + (position.steps if position else 0))
    rows = read_metrics_rows(run.run_dir / "metrics.csv", standing.epoch)
    history: list[dict[str, Any]] = []
    epoch = standing.epoch
    failing = True
    try:
        for epoch in range(standing.epoch + 1, config.epochs + 1):
            row = _train_and_validate(cached or run, steps, epoch, position, checkpoint)
            position = None  # only the first epoch continues from one
            improved = standing.after_epoch(epoch, _best_score(row, epoch))
            _save_epoch(run, steps, standing, row, improved, rows)
            kept.epoch, kept.steps = epoch, 0
            history.append(row)
            progress.note(epoch_line(epoch, config.epochs, row, len(run.bundle.classes)))
            progress.epoch_saved(run.run_dir / "metrics.csv")
            if board is not None:
                board.log(row)
            if _early_stop(run, standing):  # every process has the same figures, so all stop together
                break
        failing = False
        run.group.write_digest(run.model)
    except NonFiniteLoss as bad:
        message = _non_finite_message(bad, epoch, kept, steps.optimizer)
        with contextlib.suppress(WriteError):  # a full disk must not hide the advice
            progress.note(message, echo=False)  # the error itself is what the caller sees
        raise TrainingDiverged(message) from None
    except KeyboardInterrupt:
        how = "Continue" if kept.epoch or kept.steps else "Start it again"
        with contextlib.suppress(WriteError):
            progress.note(
                f"interrupted in epoch {epoch}; the run folder keeps {kept}. "
                f"{how} with: convlab train --resume {run.run_dir}{run.group.relaunch}"
            )
        raise
    finally:
        if steps.gradients is not None:
            steps.gradients.close()
        if board is not None:
            board.close(failing)
        progress.close()
    return _finish(run, run.model, standing, history)


def _begin_epochs(run: _Run, steps: _Steps, start: _Start) -> tuple[Standing, EpochPosition | None]:
    """Where the epochs start (a resume restores it, maybe inside an epoch), said in train.log; config.yaml
    and skipped.txt written."""
    config, progress = run.config, run.progress
    position = None
    if start.resuming:
        standing, position = restore(
            run.run_dir, config, run.model, steps.optimizer, steps.schedule, steps.per_epoch, run.group
        )
        if position is None:
            progress.note(f"resuming {run.run_dir} after epoch {standing.epoch} of {config.epochs}")
        else:
            progress.note(
                f"resuming {run.run_dir} at step {position.steps} of {steps.per_epoch} in epoch "
                f"{standing.epoch + 1} of {config.epochs}"
            )
    else:
        standing = Standing()
        if start.restarting:
            progress.note(
                f"starting {run.run_dir} again from its config.yaml: the run stopped before its first "
                "checkpoint (no state.pt)"
            )
        progress.note(
            f"training {config.model} on {data_text(run.bundle)} on {run.device}"
            f"{_threads_note(run.device)}; run folder {run.run_dir}"
        )
    if run.transfer is not None:
        run.transfer.start_epoch(run.model, standing.epoch + 1, progress)
        for line in [*run.transfer.notes, *trainable_lines(run.model)]:
            progress.note(line)
    progress.note(_optimisation_line(config, steps, run.lr_found))
    if run.group.distributed:
        progress.note(_distributed_line(run))
    if not run.group.leader:
        return standing, position
    save_config(config, run.run_dir / "config.yaml")
    if run.bundle.skipped:
        listing = "".join(f"{file}\t{reason}\n" for file, reason in run.bundle.skipped)
        atomic_write(run.run_dir / "skipped.txt", lambda tmp: Path(tmp).write_text(listing))
        progress.note(f"skipped {len(run.bundle.skipped)} unreadable files (listed in skipped.txt)")
    return standing, position


def _distributed_line(run: _Run) -> str:
    """``distributed: 2 processes (gloo, 1 thread each); each takes 32 images of every batch of 64; ...``"""
    group, config, device = run.group, run.config, run.device
    threads = torch.get_num_threads()
    pace = f", {threads} thread{'s' if threads > 1 else ''} each" if device.type == "cpu" else ", a GPU each"
    return (
        f"distributed: {group.world} processes ({'NCCL' if device.type == 'cuda' else 'gloo'}{pace}); each "
        f"takes {config.batch_size // group.world} images of every batch of {config.batch_size} (--batch-size "
        f"is the batch of all the processes together), and the learning rate is the one for that batch, not "
        f"scaled again for the processes; process 0 writes the run folder"
    )


def optimisation_settings(config: TrainConfig, lr_found: bool = False) -> dict[str, Any]:
    """The learning rate, momentum and weight decay a run trains with, defaults resolved, and why the rate
    (``lr_found``: --lr auto chose it)."""
    spec = OPTIMIZERS[config.optimizer]
    lr = config.lr if config.lr is not None else default_lr(config.optimizer, config.batch_size)
    why = "given" if config.lr is not None else lr_words(config.optimizer, config.batch_size)
    if lr_found:
        why = "--lr auto: the range test's minimum / 10, lr_find.png"
    momentum = config.momentum if config.momentum is not None else spec.momentum
    decay = config.weight_decay if config.weight_decay is not None else spec.weight_decay
    return {"lr": lr, "lr_why": why, "momentum": momentum, "weight_decay": decay}


def _optimisation_line(config: TrainConfig, steps: _Steps, lr_found: bool) -> str:
    """``optimizer momentum: lr 0.1 (momentum's default at batch 64), momentum 0.9, ...`` for train.log."""
    chosen = optimisation_settings(config, lr_found)
    momentum = "" if chosen["momentum"] is None else f", momentum {chosen['momentum']:g}"
    return (
        f"optimizer {config.optimizer}: lr {chosen['lr']:g} ({chosen['lr_why']}){momentum}, weight decay "
        f"{chosen['weight_decay']:g}; batch {config.batch_size}, {steps.per_epoch} steps an epoch; "
        f"schedule {config.schedule}"
    )


def _train_and_validate(
    run: _Run, steps: _Steps, epoch: int, position: EpochPosition | None = None, checkpoint=None
) -> dict[str, Any]:
    """Epoch ``epoch`` (from ``position`` inside it, if given): train over the data once, validate, step the
    schedule; returns its metrics row. ``checkpoint``: see train_one_epoch."""
    config, progress = run.config, run.progress
    start = time.perf_counter() - (position.seconds if position else 0.0)
    if run.transfer is not None:
        run.transfer.start_epoch(run.model, epoch, progress)  # head epochs over: the backbone joins in
        if run.group.distributed and run.trainable != tuple(p.requires_grad for p in run.model.parameters()):
            _ready_to_step(run)  # DDP sends the gradients of the parameters that trained when it was made
    # the lr the epoch starts with
    row: dict[str, Any] = {"epoch": epoch, "lr": position.lr if position else steps.schedule.lr}
    loader = run.train_loader(epoch)
    if steps.gradients is not None:
        steps.gradients.begin_epoch(epoch, (epoch - 1) * steps.per_epoch)
    progress.start_epoch(epoch, config.epochs, len(loader))
    try:
        stats = train_one_epoch(
            run.step_model,
            loader,
            steps.optimizer,
            steps.schedule,
            steps.criterion,
            config,
            progress,
            position,
            checkpoint,
            steps.gradients,
            run.group,
            run.precision,
        )
    finally:
        progress.end_epoch()
    row.update(train_loss=stats["train_loss"], train_top1=stats["train_top1"])
    run.group.sync_buffers(run.model)  # what every process evaluates and process 0 saves: the checkpoint
    if run.has_val:
        val = evaluate_model(
            run.model, run.bundle, "val", device=run.device, amp=run.precision.amp, shard=run.group.shard
        )
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
    rows.append(format_row(row))
    if run.group.leader:
        record = checkpoint_record(model, config, bundle, epoch, row)
        if transfer is not None:
            record.transfer = transfer.record(model)
        save_results(run.run_dir, model, record, rows, improved)
    _save_state(run, steps, standing)


def _save_state(run: _Run, steps: _Steps, standing: Standing, position: EpochPosition | None = None) -> None:
    """state.pt: the run after ``standing.epoch`` epochs and, with ``position``, part of the next one (the
    gradient log first, so that what state.pt commits has its rows). In a distributed run every process
    calls it: process 0 writes every process's random states and, inside an epoch, the sums of them all."""
    group = run.group
    rngs = group.gather(rng_state())
    if position is not None and group.distributed:
        sums = group.sum(
            torch.stack(
                [
                    position.loss_sum.double(),
                    position.correct.double(),
                    position.loss_sum.new_tensor(float(position.seen)).double(),
                ]
            )
        )
        position = replace(position, loss_sum=sums[0], correct=sums[1].long(), seen=int(sums[2]))
    if not group.leader:
        return
    if steps.gradients is not None:
        steps.gradients.save()
    distributed = {"rng_ranks": rngs} if group.distributed else {}
    save_state(
        run.run_dir / "state.pt",
        model=run.model,
        optimizer=steps.optimizer,
        schedule=steps.schedule,
        epoch=standing.epoch,
        epochs=run.config.epochs,
        steps_per_epoch=steps.per_epoch,
        standing=asdict(standing),
        in_epoch=None if position is None else position.saved(),
        world_size=group.world,
        **distributed,
    )


def _early_stop(run: _Run, standing: Standing) -> bool:
    """True, with a line in train.log, when --early-stop's patience has run out."""
    if not standing.out_of_patience(run.config.early_stop):
        return False
    run.progress.note(
        f"early stop: val top-1 has not improved for {standing.stale_epochs} epochs "
        f"(best {standing.best_top1:.1%} at epoch {standing.best_epoch})"
    )
    return True


def _non_finite_message(bad: NonFiniteLoss, epoch: int, kept: Kept, optimizer) -> str:
    what = (
        f"The weights or batch norm statistics became non-finite (NaN or infinity) by epoch {epoch}, "
        f"step {bad.step}, though the loss stayed finite"
        if bad.in_weights
        else f"The training loss became {bad.value} at epoch {epoch}, step {bad.step}"
    )
    return (
        f"{what}; the run folder keeps {kept}. "
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
    save_results(run_dir, model, record, [format_row(row)], improved=True)
    board = TensorBoard(run_dir)
    try:
        board.log(row)
    except WriteError:
        board.close(failing=True)
        raise
    board.close()
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
    config, bundle, run_dir, group = run.config, run.bundle, run.run_dir, run.group
    test = final = None
    if standing.best_epoch > 0:
        if group.leader:
            load_weights(model, run_dir / "best.safetensors", map_location=run.device)
        group.broadcast_module(model)  # every process evaluates its part of the split with the best weights
        if "test" in bundle.splits():
            test = final = evaluate_model(
                model,
                bundle,
                "test",
                device=run.device,
                amp=run.precision.amp,
                tta=config.test_tta,
                shard=group.shard,
            )
        elif run.has_val:  # no test split (a folder of photos): the report evaluates the validation split
            final = evaluate_model(
                model, bundle, "val", device=run.device, amp=run.precision.amp, shard=group.shard
            )
        if group.leader:  # the report's figures, pictures and mistakes: process 0 alone, the others are done
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
    chosen = optimisation_settings(config, run.lr_found)
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
        "amp": f"{run.precision.amp} ({run.precision.reason.removeprefix('auto: ')})",
        "channels_last": str(run.precision.channels_last).lower(),
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
