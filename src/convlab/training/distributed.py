"""Training on several processes, GPUs or machines with PyTorch's DistributedDataParallel (DDP).

A run is distributed when torchrun starts it (``torchrun --nproc-per-node N -m convlab train ...``), or
``convlab train --nproc N``, which starts the same command through torch.distributed's elastic launcher
(``launch``): the environment then names this process's RANK among WORLD_SIZE. Every process trains on its
part of each batch (``convlab.data.bundle.Shard``), DDP averages the gradients, and the figures are summed
over the processes; process 0 alone writes the run folder and speaks for the run (docs/distributed.md).

The processes act together in three ways, all in ``Group``:

- ``decide``: process 0 does a thing (takes the run folder, reads state.pt) and the others get its outcome,
  or stop with its error, which process 0 says;
- ``agree``: every process does a thing (loads the data, builds the model); when any fails, all stop, and
  process 0 says why;
- collectives at the same step of every process: the loss check every CHECK_EVERY steps, the epoch's sums,
  the evaluation's sums, the random states of a checkpoint.

A single-process run has the group ``SOLO``, whose collectives do nothing, so the engine reads the same
either way.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from convlab.data.bundle import Shard
from convlab.errors import ConvlabError
from convlab.threads import resolve_threads
from convlab.training.config import environment_world
from convlab.training.state import saved_position

T = TypeVar("T")

# How long a process waits in a collective for the others. A process that dies closes its connections, and
# the others fail at once (gloo: "Connection reset by peer"), so this bounds only a process that hangs; it
# is long enough for one process to write a large checkpoint or to finish reading the data while the others
# wait.
COLLECTIVE_TIMEOUT = timedelta(minutes=5)
# The loss check is a collective in a distributed run, so it happens at the same steps on every process:
# every CHECK_EVERY steps (and at checkpoints and the epoch's end). A non-finite loss spreads to every
# process's weights through the averaged gradients, so stopping a few steps later loses nothing.
CHECK_EVERY = 25
# The exit status of a process that stopped because another one did: the launcher looks past it for the cause.
PEER_LOST_STATUS = 3
# Set by ``launch`` for its processes: the file process 0 writes its run folder's path into, so that the
# launcher can say what the folder keeps when a process dies.
RUN_DIR_NOTE = "CONVLAB_RUN_DIR_NOTE"
# Test hooks (tests/training/test_distributed.py), read only in a distributed run. CONVLAB_TEST_DIGESTS=DIR:
# each process writes the SHA-256 of its weights after the last epoch to DIR/rank-R.sha256.
# CONVLAB_TEST_STOP=R:N: process R ends itself (os._exit, as a crash would) after its N-th optimizer step.
DIGESTS_HOOK = "CONVLAB_TEST_DIGESTS"
STOP_HOOK = "CONVLAB_TEST_STOP"
STOP_HOOK_STATUS = 17


class PeerLost(ConvlabError):
    """Another process of the run stopped (died, or was stopped by the launcher): this one cannot go on."""


class Terminated(Exception):
    """SIGTERM, turned into an exception in a distributed run: the elastic agent ends the other processes
    with it when one fails (or when the launcher itself is stopped), and this one then says what the run
    folder keeps before it goes, instead of vanishing."""


def _terminate(signum, frame) -> None:
    raise Terminated()


class SaidByProcessZero(ConvlabError):
    """An error process 0 met and says; the other processes stop with it, quietly."""


def launched_by_convlab() -> bool:
    return RUN_DIR_NOTE in os.environ


@dataclass(frozen=True)
class Group:
    """This process's place in the run: rank ``rank`` of ``world`` processes, ``local_rank`` of the
    ``local_world`` on its machine. ``SOLO`` (one process) does no communication at all."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def leader(self) -> bool:
        """Process 0: it writes the run folder, prints and logs."""
        return self.rank == 0

    @property
    def shard(self) -> Shard | None:
        return Shard(self.rank, self.world) if self.distributed else None

    @property
    def relaunch(self) -> str:
        """What a --resume of this run adds to say it takes as many processes: `` --nproc 2``, or
        `` on 2 processes`` under torchrun (whose command the user knows); nothing for one process."""
        if not self.distributed:
            return ""
        return f" --nproc {self.world}" if launched_by_convlab() else f" on {self.world} processes"

    # -- where and how -------------------------------------------------------------------------------
    def device(self, device: torch.device) -> torch.device:
        """The device this process trains on: on CUDA, one GPU per process of the machine (LOCAL_RANK)."""
        if not self.distributed or device.type != "cuda":
            return device
        if device.index is not None:
            raise ConvlabError(
                f"--device {device} names one GPU, but a distributed run gives each process its own "
                "(LOCAL_RANK); give --device cuda or auto."
            )
        count = torch.cuda.device_count()
        if self.local_world > count:
            raise ConvlabError(
                f"{self.local_world} processes on this machine need a GPU each, and it has {count}; start "
                f"at most {count} processes on it, or train with --device cpu."
            )
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def wrap(self, model: nn.Module, device: torch.device, sync_bn: bool) -> nn.Module:
        """The module the training steps call: ``model`` itself for one process, else DDP around it, which
        averages the gradients of the parameters that train (frozen ones are not sent) during backward."""
        if not self.distributed:
            return model
        if sync_bn:
            if device.type == "cpu":
                raise ConvlabError(
                    "--sync-bn needs GPUs: torch's SyncBatchNorm runs on CUDA only; on CPUs each process "
                    "normalises its own part of the batch (leave --sync-bn out)."
                )
            nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place below the top module
        if not any(parameter.requires_grad for parameter in model.parameters()):
            return model  # nothing trains, nothing to average (a transfer whose head epochs are not begun)
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    # -- acting together -------------------------------------------------------------------------------
    def decide(self, work: Callable[[], T]) -> T:
        """``work()`` on process 0; the others get what it returned, or stop with its error (said by process 0)."""
        if not self.distributed:
            return work()
        outcome: list[Any] = [None]
        failure: BaseException | None = None
        if self.leader:
            try:
                outcome[0] = ("done", work())
            except BaseException as error:  # the others stop too, whatever stopped process 0
                failure = error
                outcome[0] = (
                    "failed",
                    str(error) if isinstance(error, ConvlabError) else type(error).__name__,
                )
        dist.broadcast_object_list(outcome, src=0)
        if failure is not None:
            raise failure
        kind, value = outcome[0]
        if kind == "failed":
            raise SaidByProcessZero(value)
        return value

    def agree(self, work: Callable[[], T]) -> T:
        """``work()`` on every process; when it fails on any, every process stops, and process 0 says why
        (its own error, or else the first failed process's, with its rank)."""
        if not self.distributed:
            return work()
        result = failure = None
        try:
            result = work()
        except Exception as error:  # every process must reach the gather below, or the others would wait
            failure = error
        said = (
            None if failure is None else str(failure) if isinstance(failure, ConvlabError) else repr(failure)
        )
        outcomes: list[Any] = [None] * self.world
        dist.all_gather_object(outcomes, said)
        failed = [(rank, message) for rank, message in enumerate(outcomes) if message is not None]
        if not failed:
            return result
        if self.leader and failure is not None:
            raise failure
        if self.leader:
            rank, message = failed[0]
            raise ConvlabError(f"Training process {rank} of {self.world} could not start: {message}")
        raise SaidByProcessZero(said or "another process could not start")

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the processes, in place (and returned)."""
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor

    def first_bad_step(self, step: torch.Tensor) -> int:
        """The first step whose loss was not finite on any process (-1: none): a collective in a distributed
        run, so every process stops at once."""
        if not self.distributed:
            return int(step)
        never = torch.iinfo(torch.int64).max
        earliest = torch.where(step < 0, never, step).reshape(1)
        dist.all_reduce(earliest, op=dist.ReduceOp.MIN)
        return -1 if int(earliest) == never else int(earliest)

    def bad_value(self, step: torch.Tensor, value: torch.Tensor, first: int) -> float:
        """The loss of step ``first`` on the processes where it was not finite (NaN when they differ)."""
        if not self.distributed:
            return float(value)
        mine = torch.where(
            step == first, value.double(), torch.zeros((), dtype=torch.float64, device=value.device)
        )
        return float(self.sum(mine.reshape(1)))

    def gather(self, value: T) -> list[T] | None:
        """Every process's ``value`` on process 0, in rank order (None on the others)."""
        if not self.distributed:
            return [value]
        gathered: list[Any] | None = [None] * self.world if self.leader else None
        dist.gather_object(value, gathered, dst=0)
        return gathered

    def broadcast_module(self, module: nn.Module) -> None:
        """Give every process process 0's weights and buffers."""
        if self.distributed:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)

    def sync_buffers(self, module: nn.Module) -> None:
        """Process 0's buffers (BatchNorm's running statistics) on every process. DDP sends them at the start
        of each forward, so after the last step each process still holds its own; evaluating, and saving,
        with process 0's makes every process's figures those of the checkpoint."""
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    # -- test hooks --------------------------------------------------------------------------------------
    def stepped(self) -> None:
        """After each optimizer step: the STOP_HOOK test hook (a process that dies, for the tests)."""
        if _stop_hook.steps is not None:
            _stop_hook.taken += 1
            if _stop_hook.taken == _stop_hook.steps:
                os._exit(STOP_HOOK_STATUS)

    def write_digest(self, model: nn.Module) -> None:
        """The DIGESTS_HOOK test hook: this process's weights, as a SHA-256, into the folder it names."""
        folder = os.environ.get(DIGESTS_HOOK) if self.distributed else None
        if folder:
            Path(folder, f"rank-{self.rank}.sha256").write_text(weights_digest(model.state_dict()) + "\n")


@dataclass
class _StopHook:
    """STOP_HOOK as read when the process group starts: the step this process ends itself after, if any."""

    steps: int | None = None
    taken: int = 0

    def read(self, rank: int) -> None:
        hook_rank, _, steps = os.environ.get(STOP_HOOK, "").partition(":")
        self.steps = int(steps) if steps and int(hook_rank) == rank else None
        self.taken = 0


_stop_hook = _StopHook()
SOLO = Group()


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of named tensors: names, dtypes, shapes and bytes, in name order (a state dict, or a
    safetensors file's contents)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class process_group:
    """``with process_group() as group``: the run's Group; under torchrun's environment (WORLD_SIZE > 1) the
    process group is set up first (gloo for CPU tensors, NCCL for CUDA ones) and torn down at the end."""

    def __enter__(self) -> Group:
        rank, world = environment_world()
        self.started = world > 1 and not dist.is_initialized()
        self.handling = world > 1 and threading.current_thread() is threading.main_thread()
        if world <= 1:
            return SOLO
        if self.started:
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
        if self.handling:  # Python takes signals in the main thread only
            self.previous = signal.signal(signal.SIGTERM, _terminate)
        _stop_hook.read(rank)
        return Group(
            rank=rank,
            world=world,
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            local_world=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        )

    def __exit__(self, *exc_info) -> None:
        if self.handling:
            signal.signal(signal.SIGTERM, self.previous or signal.SIG_DFL)  # None: set outside Python
        if self.started and dist.is_initialized():
            # DDP's wrapper lives in reference cycles: freed now, while the group and the interpreter are
            # alive, not by the interpreter's final collection, where gloo's threads abort the process
            # ("terminate called without an active exception", seen once at the end of a run)
            gc.collect()
            dist.destroy_process_group()


def is_collective_failure(error: BaseException) -> bool:
    """Whether ``error`` is a collective that failed because another process went away or hung: torch's
    DistError, or the RuntimeError gloo and NCCL raise ("Connection reset by peer", "Timed out ..."); or
    this process was told to stop (Terminated)."""
    if isinstance(error, (dist.DistError, Terminated)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("gloo" in text or "NCCL" in text)


def peer_lost(group: Group, error: BaseException, run_dir: Path | None) -> PeerLost:
    """The sentence for a process whose collective failed (another process died or hung) or that was told
    to stop, with what the run folder keeps (said by process 0)."""
    if isinstance(error, Terminated):
        what = (
            f"Process {group.rank} of this {group.world}-process run was told to stop (SIGTERM: another "
            "process failed, or the launcher was stopped)"
        )
    else:
        # gloo's sentence without its source location: "Read error [127.0.0.1]:6562: Connection reset by peer"
        text = re.sub(r"^\[[^\]]*\]\s*", "", str(error).strip().splitlines()[0] if str(error).strip() else "")
        reason = text.split(". ")[0] or type(error).__name__
        what = (
            f"Another process of this {group.world}-process run stopped, so process {group.rank} stopped too "
            f"({reason})"
        )
    if not group.leader:
        return PeerLost(what + ".")
    return PeerLost(f"{what}; {folder_keeps(run_dir, group.relaunch)}")


# ---------------------------------------------------------------------------------------------------------
# `convlab train --nproc N`: the same command on N processes of this machine, through torch's elastic agent


@dataclass
class Launched:
    """How a launch ended: the exit status, and the sentence to print (None when a process said it)."""

    status: int
    message: str | None = None


def launch(processes: int, arguments: list[str], threads: int | str | None) -> Launched:
    """Run ``python -m convlab train ARGUMENTS`` on ``processes`` processes of this machine, as
    ``torchrun --standalone --nproc-per-node PROCESSES`` would (a rendezvous on a free loopback port), each
    with ``threads`` torch threads, or, for auto, the idle cores shared out (at least one each).

    A process that dies stops the others (the elastic agent ends them), and the launch says which died and
    what the run folder keeps."""
    import logging
    import tempfile

    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if threads in (None, "auto"):
        threads = max(1, resolve_threads("auto", os.cpu_count() or 1) // processes)
    # The agent's own log lines (which process it signals, the failure table) would bury the one sentence
    # below; its loggers set their levels when imported, so each is quietened by name.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone
        max_restarts=0,
    )
    with tempfile.TemporaryDirectory(prefix="convlab-launch-") as folder:
        note = Path(folder) / "run_dir"
        saved = {name: os.environ.get(name) for name in (RUN_DIR_NOTE, "OMP_NUM_THREADS")}
        os.environ.update(
            {RUN_DIR_NOTE: str(note), "OMP_NUM_THREADS": str(threads)}
        )  # what the processes inherit
        try:
            elastic_launch(config, sys.executable)("-u", "-m", "convlab", "train", *arguments)
            return Launched(0)
        except ChildFailedError as failed:
            return _failure(failed, processes, note)
        except SignalException as stopped:  # Ctrl-C (or a kill) reached the processes too: they said it
            return Launched(128 + int(stopped.sigval))
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _failure(failed, processes: int, note: Path) -> Launched:
    """The launch's exit status and sentence when a process failed. The cause is the first process that
    failed by itself: not one that stopped because another did (PEER_LOST_STATUS), nor one the agent
    ended (SIGTERM) once the first had failed."""
    failures = failed.failures
    causes = {
        rank: failure
        for rank, failure in failures.items()
        if failure.exitcode not in (PEER_LOST_STATUS, -signal.SIGTERM)
    } or failures
    rank = min(causes, key=lambda r: (causes[r].timestamp, r))
    status = causes[rank].exitcode
    if rank == 0 and status in (1, 2):  # process 0 printed its error (convlab's, or a traceback)
        return Launched(status)
    if status < 0:
        try:
            how = f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            how = f"was killed by signal {-status}"
    else:
        how = f"exited with status {status}"
    run_dir = note.read_text().strip() if note.is_file() else None
    return Launched(
        1,
        f"Training process {rank} of {processes} {how}, so the run stopped on every process; "
        f"{folder_keeps(run_dir, f' --nproc {processes}')}",
    )


def folder_keeps(run_dir: str | Path | None, relaunch: str) -> str:
    """``the run folder keeps epoch 1 (resume with --resume RUN --nproc 2).``, or what else it holds;
    ``relaunch`` (Group.relaunch) follows the --resume."""
    if run_dir is None:
        return "it had not written a run folder yet."
    state = Path(run_dir) / "state.pt"
    if state.is_file():
        try:
            kept = saved_position(state)
        except (ConvlabError, KeyError):
            return f"the state.pt of '{run_dir}' cannot be read; start the run again with another --out."
        return f"the run folder keeps {kept} (resume with --resume {run_dir}{relaunch})."
    if (Path(run_dir) / "config.yaml").is_file():
        return f"the run folder keeps no checkpoint yet (start it again with --resume {run_dir}{relaunch})."
    return f"nothing was written in '{run_dir}' yet."
