"""The loop's extension points: a small callback interface, called at fixed moments.

A callback overrides only the events it needs; each receives the running
:class:`~toolkit.train.state.Loop`, which holds the model, optimizer, epoch and the
metrics so far. The order of events in one ``fit``::

    on_fit_start(loop)                 after setup and resume, before the first epoch
      on_epoch_end(loop, epoch)        after each epoch's held-out evaluation
      on_log(loop, rows)               at log points: the rows since the last log point
      on_checkpoint(loop, state)       a TrainState to persist (periodic, final, interrupt)
    on_fit_end(loop)                   after the last epoch (not after an error)
    on_exception(loop, exc)            instead, when an exception ends the fit (then it
                                       propagates): an interrupt, a TrainingError, a crash

Metrics stay on the device until someone needs them: ``loop.metrics()`` inside
``on_epoch_end`` copies the pending epochs to the host (one sync) and returns every
row so far. A callback that decides training should end calls
``loop.request_stop(reason)``; the loop finishes the epoch, checkpoints and stops.

A callback with state that must survive a resume (a best score, a patience count)
returns it from ``state_dict()`` and takes it back in ``load_state_dict()``; the
checkpoint stores it under the callback's ``key``, by default the class's qualified
name (``module.Class``; ``#2`` for a second instance of the same class), so a
callback that never sets ``key`` still gets its state back on resume.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toolkit.checkpoint import TrainState
    from toolkit.train.state import Loop


class Callback:
    """Base class of loop callbacks; every event is a no-op until overridden."""

    key: str = ""  # where state_dict() is stored in checkpoints ("": the qualified name)

    def on_fit_start(self, loop: Loop) -> None:
        """Training is about to begin (or continue after a resume)."""

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        """Epoch ``epoch`` was trained and evaluated (its metrics may be on the device)."""

    def on_step(self, loop: Loop, epoch: int, done: int, total: int, loss: Any) -> None:
        """Batch ``done`` of ``total`` in epoch ``epoch`` was trained; ``loss`` is its
        loss tensor (reading it is a host sync: do it rarely)."""

    def on_log(self, loop: Loop, rows: list[dict[str, float]]) -> None:
        """A log point: ``rows`` are the epochs since the previous one, on the host."""

    def on_checkpoint(self, loop: Loop, state: TrainState) -> None:
        """A checkpoint is due: persist ``state`` (the run writer does)."""

    def on_fit_end(self, loop: Loop) -> None:
        """The last epoch is done (or a callback stopped training)."""

    def on_exception(self, loop: Loop, exc: BaseException) -> None:
        """``exc`` ended the fit (``Interrupted``, ``TrainingError``, anything); it is
        raised again once every callback has been told. Release what you hold."""

    def state_dict(self) -> dict[str, Any]:
        """State to store in checkpoints (tensors allowed); ``{}`` for none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned, when a run resumes."""


class Callbacks(Callback):
    """Several callbacks called in order, as one."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.items = [c for c in callbacks if c is not None]
        # Only callbacks that override on_step are called per step.
        self.stepping = [c for c in self.items if type(c).on_step is not Callback.on_step]

    def on_fit_start(self, loop: Loop) -> None:
        for c in self.items:
            c.on_fit_start(loop)

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        for c in self.items:
            c.on_epoch_end(loop, epoch)

    def on_step(self, loop: Loop, epoch: int, done: int, total: int, loss: Any) -> None:
        for c in self.stepping:
            c.on_step(loop, epoch, done, total, loss)

    def on_log(self, loop: Loop, rows: list[dict[str, float]]) -> None:
        for c in self.items:
            c.on_log(loop, rows)

    def on_checkpoint(self, loop: Loop, state: TrainState) -> None:
        for c in self.items:
            c.on_checkpoint(loop, state)

    def on_fit_end(self, loop: Loop) -> None:
        for c in self.items:
            c.on_fit_end(loop)

    def on_exception(self, loop: Loop, exc: BaseException) -> None:
        for c in self.items:
            try:
                c.on_exception(loop, exc)
            except Exception as err:  # never mask the error that ended the fit
                exc.add_note(f"{type(c).__qualname__}.on_exception failed too: {err!r}")

    def keyed(self) -> list[tuple[str, Callback]]:
        """``(checkpoint key, callback)`` for each callback with state of its own."""
        out: list[tuple[str, Callback]] = []
        seen: dict[str, int] = {}
        for c in self.items:
            if not c.key and type(c).state_dict is Callback.state_dict:
                continue  # stateless: nothing to store
            key = c.key or f"{type(c).__module__}.{type(c).__qualname__}"
            seen[key] = seen.get(key, 0) + 1
            out.append((key if seen[key] == 1 else f"{key}#{seen[key]}", c))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {key: c.state_dict() for key, c in self.keyed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, c in self.keyed():
            if key in state:
                c.load_state_dict(state[key])
