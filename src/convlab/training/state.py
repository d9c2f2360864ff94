"""Seeding and the resumable state of a run (state.pt): weights, optimizer, schedule, RNGs, early-stop counters.

state.pt is written with torch.save and read with ``weights_only=True``, so it holds only
tensors and plain Python values (the numpy and Python RNG states are converted to those). It is
written at the end of every epoch and, with ``--checkpoint-every N``, every N steps inside one; then
``in_epoch`` says how far that epoch had got (``EpochPosition``). ``standing`` is where the run stands
after its last completed epoch (``Standing``), so early stopping resumes too.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convlab.errors import ConvlabError
from convlab.files import atomic_write


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's random: the same seed gives the same run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gauss": float(cached_gauss),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state["numpy"]
    np.random.set_state(
        (
            saved["kind"],
            saved["keys"].numpy().astype(np.uint32),
            saved["position"],
            saved["has_gauss"],
            saved["cached_gauss"],
        )
    )
    saved = state["python"]
    random.setstate((saved["version"], tuple(saved["internal"]), saved["gauss_next"]))


def save_state(path: Path, *, model: torch.nn.Module, optimizer, schedule, **counters: Any) -> None:
    """Everything a resume needs, in one atomically written file: a failed write leaves the previous one."""
    state = {
        "model": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "rng": rng_state(),
        **counters,
    }
    # Serialised in memory, written by Python: torch.save's own writer reports a full disk as
    # "unexpected pos 576 vs 534", where Python's gives the OSError (ENOSPC, EFBIG, ...) that says so.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getbuffer()))


def load_state(path: Path, mmap: bool = False) -> dict[str, Any]:
    """state.pt's contents on the CPU; ``mmap`` maps the tensors instead of reading them (a quick look at
    the counters)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # a damaged or foreign file: say which, not a pickle traceback
        raise ConvlabError(
            f"Cannot read the training state '{path}' ({type(error).__name__}: {error})."
        ) from None


@dataclass
class Kept:
    """What a run folder's state.pt holds: ``epoch`` epochs completed and ``steps`` steps of the next."""

    epoch: int
    steps: int
    per_epoch: int

    def __str__(self) -> str:
        """``epoch 3``, ``epoch 3 and 40 of the 118 steps of epoch 4``, ``no checkpoint yet``."""
        done = f"epoch {self.epoch}" if self.epoch else ""
        partial = (
            f"{self.steps} of the {self.per_epoch} steps of epoch {self.epoch + 1}" if self.steps else ""
        )
        return " and ".join(part for part in (done, partial) if part) or "no checkpoint yet"


def saved_position(path: Path) -> Kept:
    """How far the run of state.pt ``path`` had got: its counters only (the tensors stay on disk)."""
    saved = load_state(path, mmap=True)
    return Kept(saved["epoch"], (saved.get("in_epoch") or {}).get("steps", 0), saved["steps_per_epoch"])


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
class EpochPosition:
    """How far an epoch had got at an in-epoch checkpoint (``--checkpoint-every``): the steps done, the
    learning rate the epoch started with, its training seconds, the running sums of its figures, and the
    RNG states of that moment (state.pt's ``rng``), which a resume applies once the steps done are replayed.

    The epoch's order and augmentation need nothing saved: the loader draws them from (seed, epoch)."""

    steps: int
    lr: float
    seconds: float
    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int
    rng: dict[str, Any] | None = None

    def saved(self) -> dict[str, Any]:
        """What state.pt's ``in_epoch`` holds (the RNG states are state.pt's own ``rng``)."""
        return {
            "steps": self.steps,
            "lr": self.lr,
            "seconds": self.seconds,
            "loss_sum": self.loss_sum.detach().cpu(),
            "correct": self.correct.detach().cpu(),
            "seen": self.seen,
        }
