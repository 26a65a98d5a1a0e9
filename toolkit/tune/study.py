"""A study in optuna's storage: its definition, its sampler and pruner, its trial count.

The storage is optuna's RDB storage: an SQLite file in the runs root by default
(nothing to start), or any URL optuna takes (``postgresql://...``) so that
processes on several machines share one study. A study records its definition
(model, base configuration, search space, monitor, sampler, pruner, trial count) in
its user attributes, so a process joining it needs only its name and storage.

Trials are counted as optuna states them: finished, pruned, running and queued
ones count towards ``--trials``, and so do failed ones that produced a result (a
diverged loss, an error); a trial that was interrupted, killed or never started
does not, and another takes its place.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.config import TrainConfig
from toolkit.errors import UsageError

if TYPE_CHECKING:
    import optuna

SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "none")
DB_FILE = "tune.db"
STORAGE_ENV = "TK_TUNE_STORAGE"  # the storage URL when --storage is not given
ATTR = "tk"  # the study's user attribute holding its definition
# Options that say how this machine runs trials, not what a trial is: a process
# joining a study uses its own.
LOCAL = (
    "runs_dir",
    "quiet",
    "device",
    "workers",
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "tracking_uri",
)
# Failed trials that still count towards --trials (they produced a result).
COUNTED_FAILURES = ("diverged", "error")
HEARTBEAT_S, GRACE_S = 10, 60  # a trial silent for a minute is failed (another machine died)


@dataclass
class StudyDef:
    """What a study is: every process running its trials builds them from this."""

    model: str
    base: dict[str, Any]  # TrainConfig fields (without the LOCAL ones)
    space: list[str]  # canonical NAME=SPEC entries
    monitor: str  # val_loss | val_acc | val_mae
    direction: str  # minimize | maximize
    sampler: str = "tpe"
    pruner: str = "median"
    trials: int = 20
    sampler_seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The user attribute's value."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StudyDef:
        """Read back a definition a study stored."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def base_config(self, local: TrainConfig) -> TrainConfig:
        """The base configuration, with this machine's own LOCAL options."""
        return TrainConfig(**{**self.base, **{k: getattr(local, k) for k in LOCAL}})

    def differs(self, other: StudyDef) -> str | None:
        """The first thing ``other`` says differently (trial count aside), or None."""
        mine, theirs = self.to_json(), other.to_json()
        for key in ("model", "space", "monitor", "sampler", "pruner", "sampler_seed"):
            if mine[key] != theirs[key]:
                return f"{key} {json.dumps(mine[key])} (this command: {json.dumps(theirs[key])})"
        for key in sorted(set(self.base) | set(other.base)):
            if self.base.get(key) != other.base.get(key):
                a, b = self.base.get(key), other.base.get(key)
                return f"{key} {json.dumps(a)} (this command: {json.dumps(b)})"
        return None


def monitor_key(name: str) -> str:
    """The metrics row key a monitor reads (``val_acc`` -> ``val_accuracy``)."""
    from toolkit.train.selection import MONITORS

    return MONITORS[name]


def definition_base(config: TrainConfig) -> dict[str, Any]:
    """A configuration's fields as a study stores them (without the LOCAL ones)."""
    return {k: v for k, v in config.to_json().items() if k not in LOCAL}


def require_optuna() -> None:
    """optuna is an extra: a one-line error naming it when it is not installed."""
    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        raise UsageError(
            "tk tune needs optuna, which is not installed", "pip install 'tk-torch[tune]'"
        )


def check_study_name(name: str) -> str:
    """A study name is also a folder name under ``runs/<model>/``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}", name) or name == "latest":
        raise UsageError(
            f"invalid study name {name!r}: letters, digits, '-', '_', '.', '+' (a folder name)",
            "--study my-study",
        )
    return name


def storage_url(storage: str | None, runs_dir: str) -> str:
    """``--storage``, else ``TK_TUNE_STORAGE``, else an SQLite file in the runs root."""
    storage = storage or os.environ.get(STORAGE_ENV)
    if storage:
        return storage
    return "sqlite:///" + os.path.abspath(os.path.join(runs_dir, DB_FILE))


def shown_url(url: str) -> str:
    """The URL with any password replaced (it appears in messages and trial.json)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: str, *, create: bool) -> Any:
    """Optuna's RDB storage at ``url`` with heartbeats; an SQLite file that is not there
    is a UsageError unless ``create`` (a study is being created)."""
    import optuna

    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not path.is_file() and not create:
            raise UsageError(f"no studies in {path} (no such file)", "tk tune MODEL --space ...")
        path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    quiet()
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                _driver(url),
                engine_kwargs=kwargs,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=requeue_failed,
            )
        except Exception as exc:  # a URL optuna or the database refuses: one line
            from toolkit.errors import one_line

            # Processes starting together on an empty database all create optuna's
            # tables; the losers see "already exists" and find the tables on a retry.
            if "already exists" in str(exc) and attempt < 4:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise UsageError(f"cannot open storage {shown_url(url)}: {one_line(exc)}") from None
    raise AssertionError("unreachable")


def _driver(url: str) -> str:
    """``postgresql://`` through the driver that is installed: SQLAlchemy 2.1 picks
    psycopg 3 for it, 2.0 psycopg2 (the one ``tk-torch[tune]`` installs)."""
    import importlib.util

    psycopg2_only = importlib.util.find_spec("psycopg") is None and importlib.util.find_spec(
        "psycopg2"
    )
    if url.startswith("postgresql://") and psycopg2_only:
        return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def quiet() -> None:
    """Optuna's own log lines and experimental-feature warnings off: tk prints its own."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def load(storage: Any, name: str, wait_s: float = 10.0) -> tuple[optuna.Study, StudyDef] | None:
    """The study called ``name`` and its definition, or None when there is none; an
    empty study without tk's definition is waited for up to ``wait_s`` seconds."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None
    # Optuna creates a study and sets its attributes in separate transactions: a
    # second `tk tune` started with the first can find the study a moment before its
    # definition. A study made by tk has it within milliseconds; wait before refusing.
    deadline = time.monotonic() + wait_s
    while not isinstance(data := study.user_attrs.get(ATTR), dict):
        if time.monotonic() >= deadline or study.get_trials(deepcopy=False):
            raise UsageError(f"study '{name}' was not made by tk tune", "another --study")
        time.sleep(0.1)
        study = optuna.load_study(study_name=name, storage=storage)
    return study, StudyDef.from_json(data)


def create(storage: Any, name: str, definition: StudyDef) -> optuna.Study:
    """Create the study (or take the one another process created a moment ago)."""
    import optuna

    study = optuna.create_study(
        storage=storage, study_name=name, direction=definition.direction, load_if_exists=True
    )
    if ATTR not in study.user_attrs:
        study.set_user_attr(ATTR, definition.to_json())
    return study


def make_sampler(definition: StudyDef, dims: list[Any], slot: int) -> Any:
    """The study's sampler; each process draws from its own seed (``slot``)."""
    import optuna

    seed = None if definition.sampler_seed is None else definition.sampler_seed + 1000 * slot
    if definition.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if definition.sampler == "grid":
        return optuna.samplers.GridSampler({d.name: d.grid() for d in dims}, seed=seed)
    if definition.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    startup = min(10, max(2, definition.trials // 4))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


def make_pruner(definition: StudyDef) -> Any:
    """The study's pruner (median over earlier trials at the same epoch, or Hyperband)."""
    import optuna

    if definition.pruner == "none":
        return optuna.pruners.NopPruner()
    if definition.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    startup = min(5, max(1, definition.trials // 4))
    # The first fifth of the epochs are noisy: no trial is judged on them.
    warmup = max(1, int(definition.extra.get("epochs", 10)) // 5)
    return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)


def counted(study: optuna.Study, below: int | None = None) -> int:
    """Trials that count towards ``--trials`` (those numbered below ``below`` when given)."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False):
        if below is not None and t.number >= below:
            continue
        if t.state != TrialState.FAIL or t.user_attrs.get("ended") in COUNTED_FAILURES:
            n += 1
    return n


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Running trials whose process on this machine is gone (SIGKILL, a crash): failed
    now, and continued from their last checkpoint when they have one. Other machines'
    trials are failed by optuna's heartbeat once they fall silent."""
    import socket

    from optuna.trial import TrialState

    from toolkit.runlog.scan import pid_alive

    here = socket.gethostname()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        # A trial claimed a moment ago has no pid yet: its owner is alive, not dead.
        if attrs.get("host") != here or "pid" not in attrs or pid_alive(attrs["pid"]):
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        except Exception:  # another process failed it a moment ago
            continue
        failed.append(t.number)
        requeue_failed(study, t)
    return failed


def requeue_failed(study: optuna.Study, trial: Any) -> None:
    """A trial that stopped without a result (killed, interrupted): when its run has a
    checkpoint, a queued trial with the same values continues that run. Optuna's
    heartbeat calls this too, for a trial whose machine fell silent."""
    from toolkit import checkpoint

    run_dir = trial.user_attrs.get("run_dir")
    if not run_dir or not Path(run_dir).is_dir():
        return
    if checkpoint.newest_valid_checkpoint(run_dir) is None:
        return
    if any(t.user_attrs.get("continues") == trial.number for t in study.get_trials(deepcopy=False)):
        return  # another process queued it already
    study.enqueue_trial(
        trial.params,
        user_attrs={"resume_run": run_dir, "continues": trial.number},
        skip_if_exists=False,
    )
