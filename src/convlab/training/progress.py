"""Training progress: a rich progress bar on a terminal, a progress line and live curves in a Jupyter
notebook, one plain line per epoch otherwise (CI, logs).

Every line (the per-epoch summaries and the run's notes) is also appended to the run's
train.log. A log is append-only by nature: each line is written whole and flushed, so an
interrupted run leaves every line it finished.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from convlab.files import write_error
from convlab.notebook import in_notebook
from convlab.terminal import wrap_line

# How often the engine reads its on-device sums for the bar: each read is a device sync, so not every step.
REFRESH_SECONDS = 0.5


def epoch_line(epoch: int, epochs: int, row: dict, num_classes: int | None = None) -> str:
    """``epoch 3/10  train loss 0.412 top1 85.1%  val loss 0.398 top1 85.9% top5 99.6%  lr 0.0100  12.3 s  5120 img/s``

    The row's ``val_top5`` is top-min(5, classes) (as evaluation counts it), so with 2 classes the
    line says ``top2``: a top-5 of 100% for two classes would say nothing.
    """
    width = len(str(epochs))
    text = f"epoch {epoch:>{width}}/{epochs}  train loss {row['train_loss']:.3f} top1 {row['train_top1']:.1%}"
    if row.get("val_loss") is not None:
        k = 5 if num_classes is None else min(5, num_classes)
        text += f"  val loss {row['val_loss']:.3f} top1 {row['val_top1']:.1%} top{k} {row['val_top5']:.1%}"
    return text + f"  lr {row['lr']:.4g}  {row['seconds']:.1f} s  {row['images_per_s']:.0f} img/s"


class NotebookView:
    """In a Jupyter notebook: an HTML progress line for the epoch and the run's curves, each one output that
    is updated in place (IPython display handles), not a terminal bar printed as text."""

    def __init__(self) -> None:
        self._bar = None
        self._curves = None
        self._label = ""
        self._total = 1

    def start(self, epoch: int, epochs: int, steps: int) -> None:
        from IPython.display import HTML, display

        self._label, self._total = f"epoch {epoch}/{epochs}", max(steps, 1)
        self._bar = display(HTML(self._html(0, "")), display_id=True)

    def update(self, steps_done: int, figures: str) -> None:
        if self._bar is not None:
            from IPython.display import HTML

            self._bar.update(HTML(self._html(steps_done, figures)))

    def end(self) -> None:
        if self._bar is not None:  # the epoch's line (printed by the engine) takes the bar's place
            from IPython.display import HTML

            self._bar.update(HTML(""))
            self._bar = None

    def show_curves(self, metrics_csv: Path) -> None:
        """The run's loss, accuracy and learning-rate curves so far (curves.png, which the report redraws)."""
        from IPython.display import Image, display

        from convlab.report import plot_curves

        picture = Image(filename=str(plot_curves(metrics_csv, metrics_csv.parent / "curves.png")))
        if self._curves is None:
            self._curves = display(picture, display_id=True)
        else:
            self._curves.update(picture)

    def _html(self, steps_done: int, figures: str) -> str:
        from convlab.notebook import escape

        return (
            f"<div><code>{escape(self._label)}</code> <progress value='{steps_done}' max='{self._total}' "
            f"style='width:40%'></progress> <code>{steps_done}/{self._total} {escape(figures)}</code></div>"
        )


class TrainProgress:
    """Shows training as it goes; ``interactive=None`` picks the bar when stdout is a terminal, and the
    notebook view (a progress line and live curves) inside a Jupyter kernel."""

    def __init__(
        self,
        log_path: Path | None,
        interactive: bool | None = None,
        console: Console | None = None,
        silent: bool = False,
    ) -> None:
        self.console = console or Console()
        # silent: the processes of a distributed run other than process 0, which speaks for the run
        self.silent = silent
        self.notebook = NotebookView() if interactive is None and in_notebook() and not silent else None
        self.interactive = self.console.is_terminal if interactive is None else interactive
        if self.notebook is not None or silent:
            self.interactive = False  # a notebook: rich's bar would be drawn as text into the cell
        self.log_path = None if silent else log_path
        self._bar: Progress | None = None
        self._task = None
        self._last_refresh = 0.0

    def note(self, text: str, echo: bool = True) -> None:
        """Print a line (above the bar if one is showing) and append it to train.log."""
        if self.silent:
            return
        # a terminal gets the line broken between words at its width (train.log keeps it whole)
        shown = wrap_line(text, self.console.width) if self.interactive else text
        if echo and self._bar is not None:
            self._bar.console.print(shown, markup=False, highlight=False, soft_wrap=True)
        elif echo:
            print(shown, flush=True)
        if self.log_path is not None:
            try:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.log_path, "a") as log:
                    log.write(text + "\n")
            except OSError as error:  # a full disk: the run stops with one sentence (engine.train)
                raise write_error(self.log_path, error) from None

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self._last_refresh = time.perf_counter()
        if self.notebook is not None:
            self.notebook.start(epoch, epochs, steps)
        if not self.interactive:
            return
        self._bar = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[figures]}"),  # empty until the first figures are read: no nan, no 0%
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._task = self._bar.add_task("train", total=steps, figures="")
        self._bar.start()

    def due(self) -> bool:
        """Whether it is time to read the running figures (cheap: no device sync); never when silent."""
        return not self.silent and time.perf_counter() - self._last_refresh >= REFRESH_SECONDS

    def update(self, steps_done: int, loss: float, top1: float, images_per_s: float) -> None:
        self._last_refresh = time.perf_counter()
        figures = f"loss {loss:.3f}  top1 {top1:.1%}  {images_per_s:.0f} img/s"
        if self._bar is not None:
            self._bar.update(self._task, completed=steps_done, figures=figures)
        if self.notebook is not None:
            self.notebook.update(steps_done, figures)

    def epoch_saved(self, metrics_csv: Path) -> None:
        """An epoch's row is in metrics.csv: a notebook redraws the run's curves with it."""
        if self.notebook is not None:
            self.notebook.show_curves(metrics_csv)

    def end_epoch(self) -> None:
        if self.notebook is not None:
            self.notebook.end()
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def close(self) -> None:
        self.end_epoch()
        sys.stdout.flush()
