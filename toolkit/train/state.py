"""The loop's running state, and the two ways it crosses a process: snapshot and restore.

:class:`Loop` is what callbacks see: the model and optimizer, where the loop is
(epoch, step), and the metrics so far. :func:`snapshot` turns it into a
:class:`~toolkit.checkpoint.TrainState` (a checkpoint's content); :func:`restore`
puts a TrainState back, bit for bit, so a resumed run continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from toolkit.checkpoint import TrainState, capture_rng, restore_rng
from toolkit.data import Data, Split
from toolkit.registry import Recipe
from toolkit.tasks import Task
from toolkit.train.callbacks import Callbacks
from toolkit.train.metrics import MetricBuffer

if TYPE_CHECKING:
    import torch

    from toolkit.distributed import DistContext
    from toolkit.train.selection import Monitor
    from toolkit.train.signals import StopFlag


@dataclass
class FitOptions:
    """How ``fit`` runs beyond its recipe; library use needs none of them."""

    grad_clip: float | None = None  # clip the total gradient norm (non-finite: stop)
    stop: StopFlag | None = None  # once set: stop after this step, checkpoint, Interrupted
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (autocast + GradScaler, CUDA)
    compile: bool = False  # run the training forward through torch.compile
    dist: DistContext | None = None  # the distributed job (DDP, shards, reduced metrics)
    monitor: Monitor | None = None  # the validation metric a plateau schedule watches
    workers: int = 0  # DataLoader worker processes for data streamed from disk


@dataclass
class Loop:
    """Everything one ``fit`` works with, from setup to the last epoch."""

    model: torch.nn.Module
    train_model: Any  # what the forward runs through: the model, DDP or torch.compile
    data: Data
    recipe: Recipe
    task: Task
    device: torch.device
    optimizer: torch.optim.Optimizer
    scaler: Any  # a GradScaler for fp16, else None
    schedule: Any  # a toolkit.train.schedule.Schedule, else None
    gen: torch.Generator  # the data order
    batch_size: int
    train_split: Any
    held_out: Any
    buffer: MetricBuffer
    callbacks: Callbacks
    shard: tuple[int, int] = (0, 1)  # (rank, world size)
    local_full: Split | None = None  # this rank's rows of a full-batch split
    grad_clip: float | None = None
    check_every_step: bool = True  # read the loss every step (free on the CPU)
    autocast: Any = None
    log_every: int = 0
    checkpoint_every: int | None = None  # None: no checkpoints; 0: the final one only
    stop: StopFlag | None = None
    dist: DistContext | None = None
    workers: int = 0
    stream: Any = None  # the persistent DataLoader of a Dataset training split
    step: int = 0
    samples: int = 0
    start_epoch: int = 1
    skip: int = 0  # batches of start_epoch done before a mid-epoch resume
    partial: list[float] | None = None  # their (loss, metric, rows) sums
    logged: int = 0  # rows already handed to on_log
    stop_reason: str | None = None
    params: list[Any] = field(default_factory=list)

    def epochs(self) -> range:
        """The epochs still to run (none when a callback stopped the run before it began)."""
        if self.stop_reason is not None:
            return range(0)
        return range(self.start_epoch, self.recipe.epochs + 1)

    def metrics(self) -> list[dict[str, float]]:
        """Every epoch's metrics so far, on the host (copies pending epochs: a sync)."""
        self.buffer.flush()
        return self.buffer.rows

    def request_stop(self, reason: str) -> None:
        """End training after this epoch (the first reason given is kept)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def log(self) -> None:
        """A log point: hand the rows since the previous one to the callbacks."""
        rows = self.metrics()[self.logged :]
        self.logged += len(rows)
        if rows:
            self.callbacks.on_log(self, rows)


def snapshot(
    loop: Loop,
    epoch_done: int,
    *,
    batch_index: int = 0,
    sums: list[float] | None = None,
    reason: str = "periodic",
    epoch_gen: Any = None,
) -> TrainState:
    """The loop as a TrainState: ``epoch_done`` epochs and ``batch_index`` batches done."""
    state = TrainState(
        epoch=epoch_done,
        step=loop.step,
        batch_index=batch_index,
        partial=sums or [0.0, 0.0, 0.0],
        history=list(loop.buffer.rows),
        model_state=loop.model.state_dict(),
        optimizer_state=loop.optimizer.state_dict(),
        gen_state=loop.gen.get_state(),
        epoch_gen_state=epoch_gen,
        reason=reason,
        scaler_state=loop.scaler.state_dict() if loop.scaler is not None else None,
        scheduler_state=loop.schedule.state_dict() if loop.schedule is not None else None,
        callbacks=loop.callbacks.state_dict(),
    )
    capture_rng(state)
    return state


def restore(loop: Loop, state: TrainState) -> None:
    """Continue from ``state`` exactly: weights, optimizer, RNGs, data order, metrics."""
    loop.model.load_state_dict(state.model_state)
    loop.optimizer.load_state_dict(state.optimizer_state)
    if loop.scaler is not None and state.scaler_state:
        loop.scaler.load_state_dict(state.scaler_state)
    if loop.schedule is not None and state.scheduler_state:
        loop.schedule.load_state_dict(state.scheduler_state)
    loop.callbacks.load_state_dict(state.callbacks or {})
    loop.buffer.rows.extend(dict(r) for r in state.history)
    loop.logged = len(loop.buffer.rows)
    restore_rng(state)
    loop.start_epoch, loop.step = state.epoch + 1, state.step
    if state.batch_index:
        # Mid-epoch: redraw the interrupted epoch's order, skip the batches done.
        loop.gen.set_state(state.epoch_gen_state)
        loop.skip, loop.partial = state.batch_index, state.partial
    elif state.gen_state is not None:
        loop.gen.set_state(state.gen_state)
