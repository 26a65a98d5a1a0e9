"""Progress: the seed notes' line at log points, and a rich bar on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

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
    """Plain lines when stdout is not a terminal; on a terminal, an epoch bar and under it
    a step bar with samples/s, the running loss and an ETA (rich, at most 10 redraws/s)."""

    def __init__(self, total: int, task: Task, quiet: bool) -> None:
        self.task = task
        self.quiet = quiet
        self.progress = None
        self.total = total
        self.last_update = 0.0  # the epoch bar's last redraw
        self.last_step = 0.0  # the step bar's
        self.epoch_start = 0.0
        self.epoch_samples = 0
        self.losses: list[float] = []
        if not quiet and sys.stdout.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                transient=True,
                refresh_per_second=8,
            )
            self.task_id = self.progress.add_task("epochs", total=total, info="")
            self.step_id = self.progress.add_task("  steps", total=1, info="", visible=False)
            self.progress.start()

    def on_step(self, loop: Loop, epoch: int, done: int, total: int, loss: Any) -> None:
        """Move the step bar: samples/s and the running loss of this epoch so far."""
        if self.progress is None:
            return
        now = time.perf_counter()
        if done == 1 or not self.losses:
            self.losses = []
            self.progress.reset(self.step_id, total=total, visible=True, info="")
        if now - self.last_step < 0.1 and done != total:
            return
        self.last_step = now
        self.losses.append(float(loss))  # a host sync, at most ten times a second
        seconds = max(now - self.epoch_start, 1e-9)
        rate = (loop.samples - self.epoch_samples) / seconds
        info = f"{rate:,.0f} samples/s  loss {sum(self.losses) / len(self.losses):.4f}"
        self.progress.update(
            self.step_id, completed=done, description=f"  epoch {epoch} steps", info=info
        )
        self.progress.refresh()

    def on_log(self, loop: Loop, rows: list[dict[str, float]]) -> None:
        """Print the last row of the interval."""
        if self.quiet:
            return
        line = format_line(rows[-1], self.task)
        if self.progress is not None:
            self.progress.console.print(line)
        else:
            print(line, flush=True)

    def on_fit_start(self, loop: Loop) -> None:
        """The first epoch starts now (samples/s counts from here)."""
        self.epoch_start, self.epoch_samples = time.perf_counter(), loop.samples

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        """Move the epoch bar (at most ten redraws a second); the next epoch starts."""
        self.epoch_start, self.epoch_samples = time.perf_counter(), loop.samples
        if self.progress is None:
            return
        # Bounded update rate: a 1000-epoch run must not pay for 1000 redraws.
        now = time.perf_counter()
        if now - self.last_update > 0.1 or epoch == self.total:
            self.progress.update(self.task_id, completed=epoch)
            self.last_update = now

    def close(self) -> None:
        """Take the bars off the terminal (safe to call twice)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
