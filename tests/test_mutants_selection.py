"""Model selection and early stopping epoch by epoch: each test kills mutants of
``toolkit/train/selection.py`` (``make mutate MODULES=selection``).

tests/test_effects_train.py checks the selected epoch of real runs; here the
callbacks see scripted metrics (values chosen at the ``min_delta`` boundary) through
a stand-in for the loop that holds what they read: the model, the metrics rows, and
the stop requests.
"""

from __future__ import annotations

import pytest
import torch

from toolkit.errors import UsageError
from toolkit.train.selection import (
    BestWeights,
    EarlyStopping,
    Monitor,
    Selection,
    _equal,
    monitor_for,
)


class Loop:
    """What the selection callbacks use of ``toolkit.train.state.Loop``."""

    def __init__(self) -> None:
        self.model = torch.nn.Linear(2, 1)
        self.rows: list[dict[str, float]] = []
        self.stops: list[str] = []

    def metrics(self) -> list[dict[str, float]]:
        return self.rows

    def request_stop(self, reason: str) -> None:
        self.stops.append(reason)

    def epoch(self, n: int, **metrics: float) -> None:
        """Epoch ``n`` ends: its weights are all ``n``, its metrics row is appended."""
        with torch.no_grad():
            for p in self.model.parameters():
                p.fill_(float(n))
        self.rows.append(metrics)


def test_better_is_strict_beyond_min_delta_in_the_monitors_direction():
    low = Monitor("val_loss", "val_loss", "min")
    high = Monitor("val_acc", "val_accuracy", "max")
    assert low.better(5.0, None) and high.better(-5.0, None)
    assert not low.better(1.0, 1.0) and not high.better(1.0, 1.0)  # a tie is not better
    assert low.better(0.5, 1.0) and not low.better(1.5, 1.0)
    assert high.better(1.5, 1.0) and not high.better(0.5, 1.0)
    assert not low.better(0.75, 1.0, 0.25) and low.better(0.7, 1.0, 0.25)
    assert not high.better(1.25, 1.0, 0.25) and high.better(1.3, 1.0, 0.25)


def test_monitor_for_each_name_and_task():
    assert monitor_for("val_loss", "binary") == Monitor("val_loss", "val_loss", "min")
    assert monitor_for("val_acc", "multiclass") == Monitor("val_acc", "val_accuracy", "max")
    assert monitor_for("val_accuracy", "binary") == Monitor("val_accuracy", "val_accuracy", "max")
    assert monitor_for("val_mae", "regression") == Monitor("val_mae", "val_mae", "min")
    assert monitor_for("val_loss", "regression").mode == "min"
    for name, task, allowed in (
        ("val_mae", "binary", ("val_loss", "val_acc")),
        ("val_accuracy", "regression", ("val_loss", "val_mae")),
        ("val_acc", "regression", ("val_loss", "val_mae")),
    ):
        with pytest.raises(UsageError) as info:
            monitor_for(name, task)
        assert info.value.message == (
            f"--monitor {name} does not fit a {task} model; choose {allowed[0]} or {allowed[1]}"
        )
        assert info.value.hint == "--monitor val_loss"


def test_selection_records_its_settings():
    sel = Selection(0.2, "val_acc", None, 5, 0.01)
    assert sel.to_json() == {
        "val_fraction": 0.2,
        "monitor": "val_acc",
        "early_stop": 5,
        "min_delta": 0.01,
    }


def test_best_weights_keep_the_first_best_epoch_as_a_copy():
    loop, best = Loop(), BestWeights(Monitor("val_loss", "val_loss", "min"))
    best.on_fit_start(loop)
    for n, value in enumerate([3.0, 1.0, 2.0, 1.0], start=1):
        loop.epoch(n, val_loss=value)
        best.on_epoch_end(loop, n)
    assert (best.epoch, best.value) == (2, 1.0)  # epoch 4 ties: the first is kept
    assert all(float(w.flatten()[0]) == 2.0 for w in best.weights.values())
    assert set(best.weights) == set(loop.model.state_dict())
    kept = best.weights["weight"]
    loop.epoch(5, val_loss=0.5)
    best.on_epoch_end(loop, 5)
    assert best.weights["weight"] is kept  # copied into, not reallocated
    assert float(kept.flatten()[0]) == 5.0 and (best.epoch, best.value) == (5, 0.5)
    loop.epoch(6, val_loss=0.6)  # the model moves on; the kept weights do not
    assert float(kept.flatten()[0]) == 5.0
    assert best.describe() == {
        "epoch": 5,
        "monitor": "val_loss",
        "value": 0.5,
        "reason": "best val_loss (min) on the validation split",
    }


def test_best_weights_state_stores_the_weights_once():
    loop, best = Loop(), BestWeights(Monitor("val_acc", "val_accuracy", "max"))
    assert best.state_dict() == {"epoch": 0, "value": None, "weights": {}, "same": False}
    best.on_fit_start(loop)
    assert best.state_dict() == {"epoch": 0, "value": None, "weights": {}, "same": False}
    loop.epoch(1, val_accuracy=0.5)
    best.on_epoch_end(loop, 1)
    state = best.state_dict()  # the best epoch is the model's: stored once, by the model
    assert state["weights"] == {} and state["same"] is True and state["epoch"] == 1
    loop.epoch(2, val_accuracy=0.4)
    best.on_epoch_end(loop, 2)
    state = best.state_dict()
    assert state["same"] is False and state["weights"] is best.weights
    # a resumed run: the checkpoint of epoch 1 restores the model and this state
    again, loop2 = BestWeights(Monitor("val_acc", "val_accuracy", "max")), Loop()
    again.load_state_dict({"epoch": 1.0, "value": 0.5, "weights": {}, "same": True})
    assert type(again.epoch) is int and again.same_as_model is True
    loop2.epoch(1, val_accuracy=0.5)
    again.on_fit_start(loop2)
    assert again.same_as_model is False and again.model is loop2.model
    assert torch.equal(again.weights["weight"], loop2.model.weight)
    assert again.weights["weight"] is not loop2.model.weight  # a copy
    loop2.epoch(2, val_accuracy=0.4)
    assert float(again.weights["weight"].flatten()[0]) == 1.0
    other = BestWeights(Monitor("val_acc", "val_accuracy", "max"))
    other.load_state_dict({"epoch": 3, "value": 0.9, "weights": state["weights"]})
    assert other.same_as_model is False and other.weights == state["weights"]
    assert other.weights is not state["weights"]  # its own dict


def test_equal_needs_the_same_keys_and_tensors():
    a = {"w": torch.ones(2), "b": torch.zeros(1)}
    assert _equal(a, {"w": torch.ones(2), "b": torch.zeros(1)})
    assert not _equal({}, {})  # nothing kept is not the model's weights
    assert not _equal(a, {"w": torch.ones(2)})
    assert not _equal(a, {"w": torch.ones(2), "b": torch.ones(1)})


def test_early_stopping_counts_epochs_without_improvement_beyond_min_delta():
    loop = Loop()
    stop = EarlyStopping(Monitor("val_loss", "val_loss", "min"), patience=2, min_delta=0.125)
    values = [1.0, 0.9375, 0.75, 0.8, 0.625, 0.7]  # 0.9375 and 0.625: not by more than 0.125
    waits = []
    for n, value in enumerate(values, start=1):
        loop.epoch(n, val_loss=value)
        stop.on_epoch_end(loop, n)
        waits.append(stop.wait)
    assert waits == [0, 1, 0, 1, 2, 3]
    assert stop.best == 0.75 and stop.stopped_at == 6
    reason = "early stop at epoch 5: val_loss did not improve by more than 0.125 for 2 epochs"
    assert loop.stops[0] == reason  # first at epoch 5 (wait reached patience)
    assert stop.state_dict() == {"best": 0.75, "wait": 3, "stopped_at": 6}


def test_early_stopping_default_min_delta_is_zero_and_state_round_trips():
    loop = Loop()
    stop = EarlyStopping(Monitor("val_acc", "val_accuracy", "max"), patience=1)
    assert stop.state_dict() == {"best": None, "wait": 0, "stopped_at": 0}  # before epoch 1
    loop.epoch(1, val_accuracy=0.5)
    stop.on_epoch_end(loop, 1)
    loop.epoch(2, val_accuracy=0.5001)  # any improvement counts
    stop.on_epoch_end(loop, 2)
    assert stop.wait == 0 and not loop.stops and stop.stopped_at == 0
    stop.on_fit_start(loop)  # not stopped: a resume goes on
    assert not loop.stops
    resumed = EarlyStopping(Monitor("val_acc", "val_accuracy", "max"), patience=3, min_delta=0.5)
    resumed.load_state_dict({"best": 0.9, "wait": 2.0, "stopped_at": 7.0})
    assert (resumed.best, resumed.wait, resumed.stopped_at) == (0.9, 2, 7)
    assert type(resumed.wait) is int and type(resumed.stopped_at) is int
    resumed.on_fit_start(loop)  # already stopped: stays stopped
    assert loop.stops == [
        "early stop at epoch 7: val_acc did not improve by more than 0.5 for 3 epochs"
    ]
