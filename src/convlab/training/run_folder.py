"""A run's folder: the name a new run gets, the checks before a run takes a folder or resumes one, the
files each epoch leaves there (checkpoints, metrics.csv), state.pt read back into a resumed run, and the
one sentence a failed write of the run ends with.

Apart from the engine because these are about the folder, not the order a run goes in: the engine decides
when each is called; sweeps name their folders with ``default_run_dir`` too.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import re
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convlab.checkpoint import read_record, save_checkpoint
from convlab.errors import ConvlabError
from convlab.files import WriteError, atomic_write
from convlab.models import ModelSpec, is_reference
from convlab.record import DataSpec, InputSpec, RunRecord
from convlab.report import METRIC_COLUMNS
from convlab.training.config import FIELDS, TrainConfig, load_config_file, resolve_config
from convlab.training.distributed import SOLO, Group
from convlab.training.inputs import MIN_VAL_PER_CLASS
from convlab.training.optim import Schedule
from convlab.training.progress import TrainProgress
from convlab.training.state import EpochPosition, Standing, load_state, restore_rng, saved_position

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
    "folder_cache",  # where the same pixels come from, decoded once or every epoch
    "test_tta",
    "checkpoint_every",  # how often state.pt is written, not what the run computes
    "log_gradients",  # what is measured, not what is computed
)
RUN_FILES = ("config.yaml", "state.pt", "last.safetensors", "best.safetensors", "metrics.csv")
# The write errors that more space would cure; the others (a read-only or missing folder, no permission)
# need another --out.
OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def resume_config(run_dir: Path, given: dict[str, Any]) -> TrainConfig:
    """The saved configuration of ``run_dir`` with the few settings a resumed run may change."""
    if not (run_dir / "config.yaml").is_file():
        raise ConvlabError(f"Cannot resume '{run_dir}': it is not a run folder (it holds no config.yaml).")
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


def default_run_dir(config: TrainConfig, prefix: str = "") -> Path:
    """``runs/<prefix><model>-<data>-<YYYYmmdd-HHMMSS>``, with a numbered suffix if that folder exists already
    (``prefix``: ``lr-find-`` or ``sweep-`` for the folders of those commands)."""
    data = (
        config.data.split(":", 1)[0] if config.data.startswith("idx:") else Path(config.data.rstrip("/")).name
    )
    data = re.sub(r"[^A-Za-z0-9._-]+", "-", data).strip("-.") or "data"
    # your own network: its function's or class's name, not the path to it
    model = config.model.rpartition(":")[2].rpartition(".")[2] if is_reference(config.model) else config.model
    model = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.") or "model"
    base = Path("runs") / f"{prefix}{model}-{data}-{datetime.now():%Y%m%d-%H%M%S}"
    path, number = base, 2
    while path.exists():
        path, number = base.with_name(f"{base.name}-{number}"), number + 1
    return path


def refuse_previous_run(run_dir: Path) -> None:
    """A new run never overwrites a previous one; the refusal says how to go on with it, where --resume can."""
    held = [name for name in RUN_FILES if (run_dir / name).exists()]
    if not held:
        return
    if stopped_before_first_checkpoint(run_dir):
        raise ConvlabError(
            f"'{run_dir}' holds a run that stopped before its first checkpoint ({', '.join(held)}; no "
            f"state.pt); start it again with --resume {run_dir} or choose another --out."
        )
    resume = f"resume it with --resume {run_dir} or " if "state.pt" in held else ""
    raise ConvlabError(
        f"'{run_dir}' already holds a run ({', '.join(held)}); {resume}choose another --out "
        f"(a previous run is never overwritten)."
    )


def stopped_before_first_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run that stopped before writing its first state.pt: its config.yaml, no
    state.pt, and nothing that a later moment of a run writes (a report, a checkpoint past epoch 1: a
    folder whose state.pt was deleted); a linear probe writes no state.pt, and one with a checkpoint is
    finished. --resume starts such a run again from step 1, and what it wrote before its first state.pt
    (epoch 1's checkpoints and metrics.csv row) is written again alike."""
    if not (run_dir / "config.yaml").is_file() or (run_dir / "state.pt").exists():
        return False
    if (run_dir / "report.md").exists():
        return False
    last = run_dir / "last.safetensors"
    if not last.exists():
        return True
    try:
        probe = load_config_file(run_dir / "config.yaml").get("transfer") == "linear-probe"
        return not probe and read_record(last).epoch == 1
    except ConvlabError:  # a damaged file: nothing to start again from with confidence
        return False


def restore(
    run_dir: Path,
    config: TrainConfig,
    model,
    optimizer,
    schedule: Schedule,
    steps_per_epoch: int,
    group: Group = SOLO,
) -> tuple[Standing, EpochPosition | None]:
    """Put model, optimizer, schedule and RNGs back as they were at the run's last checkpoint: the end of
    an epoch, or (``--checkpoint-every``) a step inside one, whose EpochPosition is returned too; its RNG
    states apply once the epoch's steps done are replayed (train_one_epoch). In a distributed run process 0
    reads state.pt and sends it to the others (their machines need not see the run folder), and each takes
    back its own random states."""
    state = group.decide(lambda: load_state(run_dir / "state.pt"))
    trained_on = state.get("world_size", 1)  # absent from the state.pt of a convlab before distributed runs
    if trained_on != group.world:
        how = (
            f"--nproc {trained_on} (or torchrun with {trained_on} processes)"
            if trained_on > 1
            else "one process"
        )
        raise ConvlabError(
            f"Cannot resume '{run_dir}' on {group.world} process{'es' if group.world > 1 else ''}: it was "
            f"trained on {trained_on}, and which images and random draws each process takes depend on that; "
            f"resume it with {how}."
        )
    if group.distributed:  # this process's own random states, and its sums of the epoch begun (process 0's
        # are every process's at the checkpoint; the others start again from zero)
        state["rng"] = state["rng_ranks"][group.rank]
        if state.get("in_epoch") and not group.leader:
            state["in_epoch"] = {
                **state["in_epoch"],
                "loss_sum": torch.zeros((), dtype=torch.float64),
                "correct": torch.zeros((), dtype=torch.int64),
                "seen": 0,
            }
    if state["steps_per_epoch"] != steps_per_epoch:
        raise ConvlabError(
            f"Cannot resume '{run_dir}': its data gave {state['steps_per_epoch']} batches per epoch, "
            f"now {steps_per_epoch}; the data set changed since the run started."
        )
    within = state.get("in_epoch")  # absent from the state.pt of a convlab before --checkpoint-every
    begun = state["epoch"] + (1 if within else 0)
    if config.epochs < begun:
        raise ConvlabError(
            f"--epochs {config.epochs} is fewer than the {begun} epochs already "
            f"{'begun' if within else 'done'}."
        )
    model.load_state_dict(state["model"])
    position = None if not within else EpochPosition(**within, rng=state["rng"])
    if config.epochs != state["epochs"] and schedule.depends_on_length:
        # More epochs: the schedule is redrawn over the new length and continues from the step reached.
        with warnings.catch_warnings():
            # The replay steps a fresh schedule with no optimizer step, on purpose; torch takes that for
            # the wrong order. Harmless: the resumed epochs' learning rates are an unbroken run's
            # (tests/cli/test_terminal.py).
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            schedule.fast_forward(state["epoch"] * steps_per_epoch)
            if position is not None:  # the epoch's metrics row shows the redrawn rate it started with
                position.lr = schedule.lr
                schedule.fast_forward(position.steps)
        redrawn = [group["lr"] for group in optimizer.param_groups]
        optimizer.load_state_dict(state["optimizer"])
        for group, lr in zip(optimizer.param_groups, redrawn):
            group["lr"] = lr
    else:
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
    if position is None:
        restore_rng(state["rng"])
    return Standing(**state["standing"]), position


def save_results(run_dir: Path, model: nn.Module, record, rows: list[dict[str, str]], improved: bool) -> None:
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


def format_row(row: dict[str, Any]) -> dict[str, str]:
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


class RunWriteError(WriteError):
    """A file of the run could not be written: said with what the run folder keeps and how to go on."""

    def __init__(self, error: WriteError, message: str) -> None:
        super().__init__(error.path, error.reason, error.errno, message)


def cannot_write(error: WriteError) -> str:
    """``Cannot write 'runs/x/state.pt': No space left on device; free space or choose another --out.``"""
    cure = "free space or choose another --out" if error.errno in OUT_OF_SPACE else "choose another --out"
    return f"Cannot write '{error.path}': {error.reason}; {cure}."


def write_failure(error: WriteError, run_dir: Path, group: Group = SOLO) -> RunWriteError:
    """The one sentence for a write of the run that failed, with what its folder keeps: the state.pt on
    disk, which a failed write leaves as it was (files.atomic_write). Said in train.log too, if it can be."""
    state = run_dir / "state.pt"
    if state.is_file():
        try:
            kept = saved_position(state)  # the counters only: the tensors stay on disk
            after = f"The run folder keeps {kept} (resume with --resume {run_dir}{group.relaunch})."
        except (ConvlabError, KeyError):
            after = "Its state.pt cannot be read; start the run again with another --out."
    elif stopped_before_first_checkpoint(run_dir):
        after = f"The run folder keeps no checkpoint yet (start it again with --resume {run_dir}{group.relaunch})."
    else:
        after = "Nothing to resume was written; start the run again once it can write."
    message = f"{cannot_write(error)} {after}"
    if (run_dir / "train.log").is_file():
        with contextlib.suppress(WriteError):
            TrainProgress(run_dir / "train.log").note(message, echo=False)
    return RunWriteError(error, message)
