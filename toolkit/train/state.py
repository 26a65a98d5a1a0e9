"""The loop's running state, and the two ways it crosses a process: snapshot and restore.

:class:`Loop` is what callbacks see: the model and optimizer (fixed for the run),
:class:`Counters` (where the loop is: epoch, step, rows seen; what moves), and the
metrics so far. :func:`snapshot` turns it into a
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

    from toolkit.augment import Augmentation
    from toolkit.distributed import DistContext
    from toolkit.train.finetune import Finetune
    from toolkit.train.selection import Monitor
    from toolkit.train.signals import StopFlag


@dataclass
class FitOptions:
    """How ``fit`` runs beyond its recipe; library use needs none of them."""

    grad_clip: float | None = None  # clip the total gradient norm (non-finite: stop)
    stop: StopFlag | None = None  # once set: stop after this step, checkpoint, Interrupted
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (autocast + GradScaler)
    compile: bool = False  # run the training forward through torch.compile
    dist: DistContext | None = None  # the distributed job (DDP, shards, reduced metrics)
    monitor: Monitor | None = None  # the validation metric a plateau schedule watches
    workers: int = 0  # DataLoader worker processes for data streamed from disk
    augment: Augmentation | None = None  # training batches only (toolkit.augment)
    finetune: Finetune | None = None  # the head: its own lr, a frozen backbone


@dataclass
class Counters:
    """What moves while a run trains: where the loop is, and what it has seen.

    Everything else in :class:`Loop` is fixed once ``fit`` has set up; these are what a
    checkpoint saves and :func:`restore` puts back (with the weights and RNGs).
    """

    step: int = 0  # optimizer steps taken
    samples: int = 0  # training rows seen (this rank)
    start_epoch: int = 1  # the first epoch this fit runs (after a resume: the next one)
    skip: int = 0  # batches of start_epoch done before a mid-epoch resume
    partial: list[float] | None = None  # their (loss, metric, rows) sums
    logged: int = 0  # metric rows already handed to on_log
    stop_reason: str | None = None  # the first reason a callback gave to stop


@dataclass
class Loop:
    """Everything one ``fit`` works with: fixed for the run once set up, except
    :attr:`counters` (what moves) and the metrics buffer."""

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
    augment: Any = None  # a toolkit.augment.BatchAugment for training batches, else None
    params: list[Any] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)

    # What callbacks read of the counters (read-only here: the loop moves them).
    @property
    def step(self) -> int:
        """Optimizer steps taken so far."""
        return self.counters.step

    @property
    def samples(self) -> int:
        """Training rows seen so far (this rank)."""
        return self.counters.samples

    @property
    def start_epoch(self) -> int:
        """The first epoch this fit runs (the one after a resumed checkpoint)."""
        return self.counters.start_epoch

    @property
    def stop_reason(self) -> str | None:
        """Why a callback asked to stop (None: nobody did)."""
        return self.counters.stop_reason

    def epochs(self) -> range:
        """The epochs still to run (none when a callback stopped the run before it began)."""
        if self.counters.stop_reason is not None:
            return range(0)
        return range(self.counters.start_epoch, self.recipe.epochs + 1)

    def metrics(self) -> list[dict[str, float]]:
        """Every epoch's metrics so far, on the host (copies pending epochs: a sync)."""
        self.buffer.flush()
        return self.buffer.rows

    def request_stop(self, reason: str) -> None:
        """End training after this epoch (the first reason given is kept)."""
        if self.counters.stop_reason is None:
            self.counters.stop_reason = reason

    def log(self) -> None:
        """A log point: hand the rows since the previous one to the callbacks."""
        rows = self.metrics()[self.counters.logged :]
        self.counters.logged += len(rows)
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
        step=loop.counters.step,
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
    moving = loop.counters
    moving.logged = len(loop.buffer.rows)
    restore_rng(state)
    moving.start_epoch, moving.step = state.epoch + 1, state.step
    if state.batch_index:
        # Mid-epoch: redraw the interrupted epoch's order, skip the batches done.
        loop.gen.set_state(state.epoch_gen_state)
        moving.skip, moving.partial = state.batch_index, state.partial
    elif state.gen_state is not None:
        loop.gen.set_state(state.gen_state)
