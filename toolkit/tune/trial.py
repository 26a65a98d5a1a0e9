"""One trial: the study's configuration plus the sampled values, trained as a normal run.

:func:`trial_config` and :func:`run_trial` are the only places that know how a
configuration is built and trained; everything else in ``toolkit.tune`` goes
through them. :class:`TrialCallback` is the pruning hook: it reports the monitored
validation metric to optuna during training and asks the loop to stop when
optuna's pruner says so; the run then ends with status ``pruned``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import runs
from toolkit.config import TrainConfig, check_config
from toolkit.train.callbacks import Callback

if TYPE_CHECKING:
    from toolkit.registry import Registry
    from toolkit.train import TrainResult
    from toolkit.train.state import Loop
    from toolkit.tune.space import Dimension

TRIAL_FILE = "trial.json"  # in a trial's run directory: its study and number (tk runs shows it)
REPORTS = 20  # intermediate values per trial at most: each one is a write to the storage


def trial_config(base: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """``base`` with the sampled values on top, checked like any configuration.

    ``overrides`` maps a dimension's name to its value: a TrainConfig option in its
    command-line spelling (``batch-size``), ``param.NAME`` or ``data.NAME``.
    """
    fields: dict[str, Any] = {}
    params, data_params = dict(base.params), dict(base.data_params)
    for name, value in overrides.items():
        target, dot, key = name.partition(".")
        if dot and target == "param":
            params[key] = value
        elif dot and target == "data":
            data_params[key] = value
        else:
            fields[name.replace("-", "_")] = value
    return check_config(replace(base, params=params, data_params=data_params, **fields))


def run_trial(
    config: TrainConfig, run_dir: Path, callbacks: list[Callback], registry: Registry
) -> TrainResult:
    """Train ``config`` into ``run_dir`` (a resume when ``config.resume`` is set), quietly."""
    from toolkit.train import train

    if config.resume:
        config = replace(config, quiet=True)
    else:
        config = replace(config, out=str(run_dir), name=None, overwrite=False, quiet=True)
    return train(config, registry, callbacks=callbacks)


def check_dimensions(base: TrainConfig, dims: list[Dimension], registry: Registry) -> None:
    """Each bound and choice, set alone on ``base``, passes the training plan's checks
    (optimizer and scheduler names, warm-up within the epochs, parameters): a bad one is
    a UsageError naming the entry, before any trial runs."""
    from toolkit.errors import UsageError
    from toolkit.train.plan import resolve

    for dim in dims:
        for value in dim.values:
            try:
                resolve(trial_config(base, {dim.name: value}), registry, run_dir=Path("."))
            except UsageError as exc:
                raise UsageError(f"--space {dim.entry}: {exc.message}", exc.hint) from None


class TrialCallback(Callback):
    """Reports the monitor to the optuna trial and stops the run when it is pruned."""

    def __init__(self, trial: Any, monitor_key: str, run_dir: Path, info: dict[str, Any]) -> None:
        self.trial = trial
        self.monitor_key = monitor_key
        self.run_dir = run_dir
        self.info = info
        self.every = 1
        self.pruned_at: int | None = None

    def on_fit_start(self, loop: Loop) -> None:
        """Record the trial in its run directory; a resumed run reports its epochs so far."""
        runs.atomic_write_json(self.run_dir / TRIAL_FILE, self.info)
        self.every = max(1, round(loop.recipe.epochs / REPORTS))
        for row in loop.metrics():
            if row["epoch"] % self.every == 0:
                self.trial.report(row[self.monitor_key], row["epoch"])

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        """Every few epochs: report, then stop after this epoch when optuna prunes."""
        if epoch % self.every and epoch != loop.recipe.epochs:
            return
        self.trial.report(loop.metrics()[-1][self.monitor_key], epoch)
        if epoch < loop.recipe.epochs and self.trial.should_prune():
            self.pruned_at = epoch
            loop.request_stop(f"pruned by the study at epoch {epoch}")


def mark_pruned(run_dir: Path, epoch: int) -> None:
    """The run stopped because the study pruned it: its status says so."""
    runs.write_status(run_dir, "pruned", error=None, pruned_at=epoch)


def whereabouts() -> dict[str, Any]:
    """This process, as a trial records it (a dead pid on this host is a killed trial).

    The pid comes first: attributes are written one by one, and another worker that
    sees ``host`` must already see the ``pid`` it would otherwise call dead."""
    return {"pid": os.getpid(), "host": socket.gethostname()}
