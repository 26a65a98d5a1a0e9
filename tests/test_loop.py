"""``fit`` as a library: the loop's callback events, in order, with the metrics they promise."""

from __future__ import annotations

import dataclasses

import pytest
from fixtures.small_data import quadrants

from toolkit.checkpoint import decode, encode
from toolkit.registry import Recipe
from toolkit.train import Callback, fit


def _data():
    return quadrants()


def _model():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))


class Recorder(Callback):
    """Writes down every event; reads the metrics at each epoch end when asked to."""

    key = "recorder"

    def __init__(self, read_metrics: bool = False, stop_at: int | None = None):
        self.events: list[tuple] = []
        self.read_metrics = read_metrics
        self.stop_at = stop_at
        self.seen = 0

    def on_fit_start(self, loop):
        self.events.append(("start", loop.start_epoch))

    def on_epoch_end(self, loop, epoch):
        self.events.append(("epoch", epoch))
        self.seen += 1
        if self.read_metrics:
            rows = loop.metrics()
            assert rows[-1]["epoch"] == epoch  # flushed up to this very epoch
        if epoch == self.stop_at:
            loop.request_stop("enough")

    def on_log(self, loop, rows):
        self.events.append(("log", [int(r["epoch"]) for r in rows]))

    def on_checkpoint(self, loop, state):
        self.events.append(("checkpoint", state.epoch, state.reason))
        self.last_state = state

    def on_fit_end(self, loop):
        self.events.append(("end", loop.stop_reason))

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]


RECIPE = Recipe(optimizer="adam", lr=0.05, epochs=6, batch_size=32)


def test_events_come_in_order_and_logs_only_at_log_points():
    rec = Recorder()
    history = fit(_model(), _data(), RECIPE, task="binary", log_every=2, callbacks=[rec])
    assert rec.events == [
        ("start", 1),
        ("epoch", 1),
        ("epoch", 2),
        ("log", [1, 2]),
        ("epoch", 3),
        ("epoch", 4),
        ("log", [3, 4]),
        ("epoch", 5),
        ("epoch", 6),
        ("log", [5, 6]),
        ("end", None),
    ]
    assert [r["epoch"] for r in history.epochs] == [1, 2, 3, 4, 5, 6]
    assert history.last["test_accuracy"] > 0.8


def test_reading_metrics_every_epoch_changes_neither_logs_nor_numbers():
    quiet = fit(_model(), _data(), RECIPE, task="binary", log_every=3)
    rec = Recorder(read_metrics=True)
    eager = fit(_model(), _data(), RECIPE, task="binary", log_every=3, callbacks=[rec])
    assert [e for e in rec.events if e[0] == "log"] == [("log", [1, 2, 3]), ("log", [4, 5, 6])]
    assert eager.epochs == quiet.epochs


def test_request_stop_ends_after_that_epoch_with_a_final_checkpoint():
    rec = Recorder(stop_at=3)
    history = fit(_model(), _data(), RECIPE, task="binary", callbacks=[rec], checkpoint_every=0)
    assert len(history.epochs) == 3
    assert ("checkpoint", 3, "final") in rec.events
    assert rec.events[-1] == ("end", "enough")


@pytest.mark.parametrize("every", [None, 2])
def test_checkpoints_only_when_asked(every):
    rec = Recorder()
    fit(_model(), _data(), RECIPE, task="binary", callbacks=[rec], checkpoint_every=every)
    got = [e[1:] for e in rec.events if e[0] == "checkpoint"]
    assert got == ([] if every is None else [(2, "periodic"), (4, "periodic"), (6, "final")])


def test_callback_state_travels_in_the_checkpoint_and_resume_is_exact():
    full = fit(_model(), _data(), RECIPE, task="binary")
    first = Recorder(stop_at=2)
    fit(_model(), _data(), RECIPE, task="binary", callbacks=[first], checkpoint_every=1)
    state = decode(encode(first.last_state))  # through the checkpoint's bytes
    assert state.callbacks == {"recorder": {"seen": 2}}
    second = Recorder()
    rest = fit(_model(), _data(), RECIPE, task="binary", callbacks=[second], resume=state)
    assert second.seen == 2 + 4
    assert second.events[0] == ("start", 3)
    assert rest.epochs == full.epochs


class KeylessCounter(Callback):
    """Stateful, and forgets to set ``key``: the class's qualified name keeps its state."""

    def __init__(self) -> None:
        self.seen = 0

    def on_epoch_end(self, loop, epoch):
        self.seen += 1

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]


def test_a_callback_without_a_key_keeps_its_state_on_resume():
    first, twin, rec = KeylessCounter(), KeylessCounter(), Recorder(stop_at=2)
    twin.seen = 100  # a second instance of the class gets a key of its own
    fit(_model(), _data(), RECIPE, task="binary", callbacks=[first, twin, rec], checkpoint_every=1)
    state = decode(encode(rec.last_state))
    name = f"{__name__}.KeylessCounter"
    assert state.callbacks == {
        name: {"seen": 2},
        f"{name}#2": {"seen": 102},
        "recorder": {"seen": 2},
    }
    again, twin_again = KeylessCounter(), KeylessCounter()
    fit(_model(), _data(), RECIPE, task="binary", callbacks=[again, twin_again], resume=state)
    assert (again.seen, twin_again.seen) == (2 + 4, 102 + 4)


class Raises(Callback):
    def on_epoch_end(self, loop, epoch):
        if epoch == 2:
            raise RuntimeError("boom")


class Hears(Callback):
    def __init__(self) -> None:
        self.heard: list[str] = []

    def on_exception(self, loop, exc):
        self.heard.append(f"{type(exc).__name__}: {exc} at epoch {loop.metrics()[-1]['epoch']}")
        raise ValueError("and this one fails as well")


def test_on_exception_hears_what_ended_the_fit_and_never_masks_it():
    hears, later = Hears(), Hears()
    with pytest.raises(RuntimeError, match="boom") as info:
        fit(_model(), _data(), RECIPE, task="binary", callbacks=[Raises(), hears, later])
    assert hears.heard == later.heard == ["RuntimeError: boom at epoch 2"]
    assert (
        info.value.__notes__
        == ["Hears.on_exception failed too: ValueError('and this one fails as well')"] * 2
    )


class Watches(Callback):
    """Keeps what the loop holds at the start and the counters at the end."""

    def on_fit_start(self, loop):
        self.fixed = {k: id(v) for k, v in vars(loop).items() if k not in ("counters", "buffer")}

    def on_fit_end(self, loop):
        self.moved = dataclasses.asdict(loop.counters)
        self.fixed_after = {k: id(v) for k, v in vars(loop).items() if k in self.fixed}
        with pytest.raises(AttributeError):
            loop.step = 0  # read-only for callbacks: the loop moves the counters


def test_what_moves_is_the_counters_and_the_rest_stays_fixed():
    watch = Watches()
    history = fit(_model(), _data(), RECIPE, task="binary", callbacks=[watch])
    rows = len(_data().train)
    steps = -(-rows // RECIPE.batch_size) * RECIPE.epochs
    assert watch.moved == {
        "step": steps, "samples": rows * RECIPE.epochs, "start_epoch": 1, "skip": 0,
        "partial": None, "logged": RECIPE.epochs, "stop_reason": None,
    }  # fmt: skip
    assert (history.steps, history.samples) == (steps, rows * RECIPE.epochs)
    assert watch.fixed_after == watch.fixed  # the model, optimizer, schedule, ... never rebound
