"""A run's tb/ folder (``TensorBoard``).

Apart from the engine because TensorBoard's quirks (its writer thread, its late errors) are no part of
how a run reads; the gradient log (--log-gradients) writes through the same writer.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from convlab.files import write_error


class TensorBoard:
    """The run's tb/ folder: each epoch's figures as TensorBoard scalars. TensorBoard is imported only when
    a run writes to it: it is heavy, and nothing else in convlab needs it.

    TensorBoard writes on a thread of its own, which prints a write error as a traceback and hands it to
    the next ``add_scalar`` or ``flush``, without the file's name; here it is a WriteError naming tb/,
    and the thread stays quiet (``_quiet_tensorboard_thread``).
    """

    def __init__(self, run_dir: Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder = run_dir / "tb"
        self._hook = _quiet_tensorboard_thread()
        try:
            self.writer = SummaryWriter(str(self.folder), purge_step=purge_step)
        except OSError as error:
            self._restore_hook()
            raise write_error(self.folder, error) from None

    def log(self, row: dict[str, Any]) -> None:
        try:
            for key in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr"):
                if row.get(key) is not None:
                    # TensorBoard groups "train/loss", "val/top1", ... by their prefix
                    name = key.replace("_", "/", 1) if key != "lr" else "lr"
                    self.writer.add_scalar(name, row[key], row["epoch"])
            self.writer.flush()
        except OSError as error:
            raise write_error(self.folder, error) from None

    def close(self, failing: bool = False) -> None:
        """Flush and close; when the run is ``failing`` already, a write error here is not the news."""
        try:
            self.writer.close()
        except OSError as error:
            if not failing:
                raise write_error(self.folder, error) from None
        finally:
            self._restore_hook()

    def _restore_hook(self) -> None:
        if threading.excepthook is self._hook:
            threading.excepthook = self._hook.previous


def _quiet_tensorboard_thread():
    """Install (and return) a threading.excepthook that keeps TensorBoard's writer thread from printing its
    OSError; the thread hands the same error to the run, which says it in one sentence."""
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    previous = threading.excepthook

    def hook(args) -> None:
        if not (isinstance(args.thread, _AsyncWriterThread) and issubclass(args.exc_type, OSError)):
            previous(args)

    hook.previous = previous
    threading.excepthook = hook
    return hook
