"""Honest model selection: the validation split picks the epoch, the test split only reports.

:class:`BestWeights` keeps the weights of the best epoch by the monitored
validation metric (``model.safetensors``; the last epoch's go to
``last.safetensors``); :class:`EarlyStopping` ends training when the monitor has
not improved for ``patience`` epochs. Both keep their state in every checkpoint, so
a resumed run selects exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from toolkit.errors import UsageError
from toolkit.train.callbacks import Callback

if TYPE_CHECKING:
    from toolkit.train.state import Loop

# What --monitor accepts, and the metrics row key each one reads.
MONITORS = {"val_loss": "val_loss", "val_acc": "val_accuracy", "val_accuracy": "val_accuracy",
            "val_mae": "val_mae"}  # fmt: skip
_FITS = {"binary": ("val_loss", "val_acc"), "multiclass": ("val_loss", "val_acc"),
         "regression": ("val_loss", "val_mae")}  # fmt: skip


@dataclass(frozen=True)
class Monitor:
    """A validation metric and which way is better."""

    name: str  # as the user wrote it: val_acc
    key: str  # the metrics row key: val_accuracy
    mode: str  # min | max

    def better(self, value: float, best: float | None, min_delta: float = 0.0) -> bool:
        """True when ``value`` improves on ``best`` by more than ``min_delta``."""
        if best is None:
            return True
        if self.mode == "min":
            return value < best - min_delta
        return value > best + min_delta


@dataclass(frozen=True)
class Selection:
    """How a run picks its model: validation rows, the monitor, early stopping."""

    val_fraction: float
    monitor_name: str
    monitor: Monitor | None  # None until the task is known (a dataset that infers it)
    patience: int | None
    min_delta: float

    def to_json(self) -> dict[str, Any]:
        """The part of ``config.json`` that records the selection settings."""
        return {
            "val_fraction": self.val_fraction,
            "monitor": self.monitor_name,
            "early_stop": self.patience,
            "min_delta": self.min_delta,
        }


def monitor_for(name: str, task: str) -> Monitor:
    """The monitor called ``name``, refused when it does not fit the task."""
    allowed = _FITS[task]
    short = "val_acc" if name == "val_accuracy" else name
    if short not in allowed:
        raise UsageError(
            f"--monitor {name} does not fit a {task} model; choose {' or '.join(allowed)}",
            f"--monitor {allowed[0]}",
        )
    key = MONITORS[name]
    return Monitor(name, key, "max" if key == "val_accuracy" else "min")


class BestWeights(Callback):
    """Remembers the weights of the best epoch by the monitor (a copy, on the device)."""

    key = "best"

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.epoch = 0
        self.value: float | None = None
        self.weights: dict[str, Any] = {}
        self.model: Any = None
        self.same_as_model = False

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        """Keep this epoch's weights when it beats every earlier one (ties keep the first)."""
        value = loop.metrics()[-1][self.monitor.key]
        if not self.monitor.better(value, self.value):
            return
        self.epoch, self.value = epoch, value
        if self.weights:
            # Copy into the tensors of the last best: no allocation each time.
            for name, tensor in loop.model.state_dict().items():
                self.weights[name].copy_(tensor.detach())
        else:
            self.weights = {k: v.detach().clone() for k, v in loop.model.state_dict().items()}

    def on_fit_start(self, loop: Loop) -> None:
        """Hold the model: a checkpoint whose best weights are the model's stores them once."""
        self.model = loop.model
        if self.same_as_model:  # resumed from such a checkpoint: the model holds them
            self.weights = {k: v.detach().clone() for k, v in loop.model.state_dict().items()}
            self.same_as_model = False

    def state_dict(self) -> dict[str, Any]:
        # A checkpoint at the best epoch would hold the same weights twice (a 2-epoch
        # ResNet-18 run was 257 MB): the model's copy is enough.
        same = self.model is not None and _equal(self.weights, self.model.state_dict())
        weights = {} if same else self.weights
        return {"epoch": self.epoch, "value": self.value, "weights": weights, "same": same}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.value = int(state["epoch"]), state["value"]
        self.weights = dict(state["weights"])
        self.same_as_model = bool(state.get("same"))

    def describe(self) -> dict[str, Any]:
        """What ``summary.json`` records as the selected epoch, and why."""
        return {
            "epoch": self.epoch,
            "monitor": self.monitor.name,
            "value": self.value,
            "reason": f"best {self.monitor.name} ({self.monitor.mode}) on the validation split",
        }


def _equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    import torch

    return bool(a) and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class EarlyStopping(Callback):
    """Ends training once the monitor has not improved for ``patience`` epochs."""

    key = "early_stopping"

    def __init__(self, monitor: Monitor, patience: int, min_delta: float = 0.0) -> None:
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.best: float | None = None
        self.wait = 0
        self.stopped_at = 0

    def on_fit_start(self, loop: Loop) -> None:
        """A run that already stopped early stays stopped when resumed."""
        if self.stopped_at:
            loop.request_stop(self.reason())

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        """Count the epochs without improvement; stop at ``patience``."""
        value = loop.metrics()[-1][self.monitor.key]
        if self.monitor.better(value, self.best, self.min_delta):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        if self.wait >= self.patience:
            self.stopped_at = epoch
            loop.request_stop(self.reason())

    def reason(self) -> str:
        """One line: why training ended early."""
        return (
            f"early stop at epoch {self.stopped_at}: {self.monitor.name} did not improve by "
            f"more than {self.min_delta:g} for {self.patience} epochs"
        )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "stopped_at": self.stopped_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = state["best"], int(state["wait"])
        self.stopped_at = int(state["stopped_at"])
