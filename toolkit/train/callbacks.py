"""The loop's extension points: a small callback interface, called at fixed moments.

A callback overrides only the events it needs; each receives the running
:class:`~toolkit.train.state.Loop`, which holds the model, optimizer, epoch and the
metrics so far. The order of events in one ``fit``::

    on_fit_start(loop)                 after setup and resume, before the first epoch
      on_epoch_end(loop, epoch)        after each epoch's held-out evaluation
      on_log(loop, rows)               at log points: the rows since the last log point
      on_checkpoint(loop, state)       a TrainState to persist (periodic, final, interrupt)
    on_fit_end(loop)                   after the last epoch (not after an error)

Metrics stay on the device until someone needs them: ``loop.metrics()`` inside
``on_epoch_end`` copies the pending epochs to the host (one sync) and returns every
row so far. A callback that decides training should end calls
``loop.request_stop(reason)``; the loop finishes the epoch, checkpoints and stops.

A callback with state that must survive a resume (a best score, a patience count)
returns it from ``state_dict()`` and takes it back in ``load_state_dict()``; the
checkpoint stores it under the callback's ``key``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toolkit.checkpoint import TrainState
    from toolkit.train.state import Loop


class Callback:
    """Base class of loop callbacks; every event is a no-op until overridden."""

    key: str = ""  # where state_dict() is stored in checkpoints ("" : stateless)

    def on_fit_start(self, loop: Loop) -> None:
        """Training is about to begin (or continue after a resume)."""

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        """Epoch ``epoch`` was trained and evaluated (its metrics may be on the device)."""

    def on_log(self, loop: Loop, rows: list[dict[str, float]]) -> None:
        """A log point: ``rows`` are the epochs since the previous one, on the host."""

    def on_checkpoint(self, loop: Loop, state: TrainState) -> None:
        """A checkpoint is due: persist ``state`` (the run writer does)."""

    def on_fit_end(self, loop: Loop) -> None:
        """The last epoch is done (or a callback stopped training)."""

    def state_dict(self) -> dict[str, Any]:
        """State to store in checkpoints (tensors allowed); ``{}`` for none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned, when a run resumes."""


class Callbacks(Callback):
    """Several callbacks called in order, as one."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.items = [c for c in callbacks if c is not None]

    def on_fit_start(self, loop: Loop) -> None:
        for c in self.items:
            c.on_fit_start(loop)

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        for c in self.items:
            c.on_epoch_end(loop, epoch)

    def on_log(self, loop: Loop, rows: list[dict[str, float]]) -> None:
        for c in self.items:
            c.on_log(loop, rows)

    def on_checkpoint(self, loop: Loop, state: TrainState) -> None:
        for c in self.items:
            c.on_checkpoint(loop, state)

    def on_fit_end(self, loop: Loop) -> None:
        for c in self.items:
            c.on_fit_end(loop)

    def state_dict(self) -> dict[str, Any]:
        return {c.key: c.state_dict() for c in self.items if c.key}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for c in self.items:
            if c.key and c.key in state:
                c.load_state_dict(state[c.key])
