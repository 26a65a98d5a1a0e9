"""Progress: the seed notes' line at log points, and a rich bar on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from toolkit.tasks import Task
from toolkit.train.callbacks import Callback

if TYPE_CHECKING:
    from toolkit.train.state import Loop


def format_line(row: dict[str, float], task: Task) -> str:
    """The seed notes' progress line for one epoch (validation, else test, figures)."""
    held = "val" if "val_loss" in row else "test"
    name = held.capitalize()
    e, m = int(row["epoch"]), task.metric
    if m == "mae":
        line = (
            f"Epoch: {e} | Loss: {row['train_loss']:.5f}, MAE: {row['train_mae']:.5f} | "
            f"{name} loss: {row[held + '_loss']:.5f}, {name} MAE: {row[held + '_mae']:.5f}"
        )
    else:
        line = (
            f"Epoch: {e} | Loss: {row['train_loss']:.5f}, Accuracy: {task.show(row['train_' + m])} "
            f"| {name} loss: {row[held + '_loss']:.5f}, "
            f"{name} acc: {task.show(row[held + '_' + m])}"
        )
    return line + (f" | lr: {row['lr']:.3g}" if "lr" in row else "")


class Reporter(Callback):
    """Plain lines when stdout is not a terminal; a rich progress bar when it is."""

    def __init__(self, total: int, task: Task, quiet: bool) -> None:
        self.task = task
        self.quiet = quiet
        self.progress = None
        self.total = total
        self.last_update = 0.0
        if not quiet and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self.progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=True,
                refresh_per_second=8,
            )
            self.task_id = self.progress.add_task("epochs", total=total)
            self.progress.start()

    def on_log(self, loop: Loop, rows: list[dict[str, float]]) -> None:
        """Print the last row of the interval."""
        if self.quiet:
            return
        line = format_line(rows[-1], self.task)
        if self.progress is not None:
            self.progress.console.print(line)
        else:
            print(line, flush=True)

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        """Move the bar (at most ten redraws a second)."""
        if self.progress is None:
            return
        # Bounded update rate: a 1000-epoch run must not pay for 1000 redraws.
        now = time.perf_counter()
        if now - self.last_update > 0.1 or epoch == self.total:
            self.progress.update(self.task_id, completed=epoch)
            self.last_update = now

    def close(self) -> None:
        """Take the bar off the terminal (safe to call twice)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
