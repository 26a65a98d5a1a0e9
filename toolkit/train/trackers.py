"""Experiment trackers (TensorBoard, MLflow, a plugin's own) driven by one loop callback.

Trackers are plugins (``tk_register_trackers``). Names and options are checked up
front by :func:`check_trackers`, before any run directory exists; the callback
then runs every selected tracker on rank 0 only:

====================  ======================================================
``on_fit_start``      ``factory(**options)``, ``start(run_config)``, then
                      ``state()`` (optional) into ``RUN/trackers.json``
``on_log``            ``log_metrics(epoch, metrics)`` per epoch, then ``flush()``
``close(...)``        ``log_artifact(path)`` per file, then ``finish(summary)``
``on_exception``      ``finish`` with status ``interrupted`` or ``failed``
====================  ======================================================

A tracker is somebody else's code talking to somebody else's server: one that
raises is disabled with one warning line and training goes on, unless
``TK_STRICT_PLUGINS=1`` makes it an error (as for a broken plugin).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import PluginError, UsageError, one_line
from toolkit.registry import Registry, TrackerSpec
from toolkit.train.callbacks import Callback
from toolkit.train.tracked import write_record

if TYPE_CHECKING:
    from toolkit.train.state import Loop

# finish(summary) gets one of these as summary["status"], like status.json.


@dataclass
class Selected:
    """A tracker chosen for a run: its spec and its resolved options."""

    spec: TrackerSpec
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The tracker's registered name."""
        return self.spec.name


def tracker_names(values: str | Iterable[str] | None) -> list[str]:
    """``["tensorboard,mlflow", "x"]`` (repeated flags, comma lists) -> unique names, in order."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    out: list[str] = []
    for item in items:
        for name in str(item).split(","):
            if name.strip() and name.strip() not in out:
                out.append(name.strip())
    return out


def check_trackers(
    names: str | Iterable[str] | None, registry: Registry, options: Mapping[str, Any] | None = None
) -> list[Selected]:
    """Resolve tracker names and options, or raise a UsageError naming the allowed values.

    ``options`` keys are an option name (given to every selected tracker that
    declares it, e.g. ``tracking_uri``) or ``tracker.option`` for one tracker; a
    None value counts as not given. Each tracker's ``requires`` must be importable
    (checked without importing it). Nothing is built or imported here.
    """
    specs = [registry.tracker(name) for name in tracker_names(names)]
    given: dict[str, dict[str, Any]] = {s.name: {} for s in specs}
    for key, value in (options or {}).items():
        if value is None:
            continue
        for spec in _option_targets(key, specs):
            given[spec.name][key.rpartition(".")[2]] = value
    for spec in specs:
        missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise UsageError(
                f"tracker '{spec.name}' needs {', '.join(missing)}, which is not installed",
                spec.install or f"pip install {' '.join(missing)}",
            )
    return [Selected(spec, spec.resolve_options(given[spec.name])) for spec in specs]


def _option_targets(key: str, specs: list[TrackerSpec]) -> list[TrackerSpec]:
    """The selected trackers an option is for; an option none of them takes is an error."""
    owner, dot, option = key.rpartition(".")
    if dot:
        targets = [s for s in specs if s.name == owner and any(o.name == option for o in s.options)]
    else:
        targets = [s for s in specs if any(o.name == option for o in s.options)]
    if targets:
        return targets
    allowed = [f"{s.name}.{o.name}" for s in specs for o in s.options]
    chosen = ", ".join(s.name for s in specs) or "none"
    raise UsageError(
        f"tracker option '{key}' is not an option of the selected trackers ({chosen}); "
        f"allowed: {', '.join(allowed) or '(none)'}",
        "tk list trackers",
    )


class TrackerCallback(Callback):
    """Drives the selected trackers through one run, on rank 0 only.

    The run writer's files come first: ``start`` sees ``config.json``, and
    :meth:`close` is called once the weights and ``summary.json`` are written.
    """

    def __init__(
        self,
        selected: list[Selected],
        run_dir: str | Path,
        *,
        main: bool = True,
        runs_dir: str | Path | None = None,
    ) -> None:
        self.selected = selected
        self.run_dir = Path(run_dir)
        self.main = main
        self.runs_dir = runs_dir
        self.active: dict[str, Any] = {}  # name -> tracker object, while it works
        self.failures: list[str] = []  # the warning lines printed
        self.closed = False

    def run_config(self) -> dict[str, Any]:
        """What ``start`` gets: the run's ``config.json`` plus absolute ``run_dir``."""
        try:
            cfg = json.loads((self.run_dir / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            cfg = {}  # fit() without a run writer: the trackers still get the directory
        cfg["run_dir"] = str(self.run_dir.resolve())
        if self.runs_dir is not None:
            cfg["runs_dir"] = str(Path(self.runs_dir).resolve())
        return cfg

    def on_fit_start(self, loop: Loop) -> None:
        """Build each tracker and start it with the run's configuration."""
        if not self.main or self.closed:
            return
        cfg = self.run_config()
        for sel in self.selected:
            tracker = self._guard(
                sel.name, "start", lambda sel=sel: sel.spec.factory(**sel.options)
            )
            if tracker is None:
                continue
            self.active[sel.name] = tracker
            self._guard(sel.name, "start", lambda t=tracker: t.start(dict(cfg)))
        self._record()

    def _record(self) -> None:
        """``RUN/trackers.json``: how to reach each started tracker's copy after the run."""
        entries = {}
        for sel in self.selected:
            tracker = self.active.get(sel.name)
            if tracker is None:
                continue
            state = getattr(tracker, "state", None)
            found = self._guard(sel.name, "state", state) if callable(state) else {}
            entries[sel.name] = {
                "options": sel.options,
                "state": found if isinstance(found, dict) else {},
            }
        if entries:
            write_record(self.run_dir, entries)

    def on_log(self, loop: Loop, rows: list[dict[str, float]]) -> None:
        """Every new epoch's metrics to every tracker, then a flush where it has one."""
        for name, tracker in list(self.active.items()):
            for row in rows:
                if not self._guard(name, "log_metrics", partial(_log_row, tracker, row)):
                    break
            flush = getattr(tracker, "flush", None)
            if name in self.active and callable(flush):
                self._guard(name, "flush", flush)

    def on_exception(self, loop: Loop, exc: BaseException) -> None:
        """The fit ended with ``exc``: finish every tracker as ``interrupted`` (a signal,
        a stop flag) or ``failed`` (anything else), without the run's files."""
        from toolkit.train.signals import Interrupted

        self.close({}, [], status="interrupted" if isinstance(exc, Interrupted) else "failed")

    def close(
        self,
        summary: Mapping[str, Any] | None = None,
        artifacts: Iterable[str | Path] = (),
        status: str = "finished",
    ) -> None:
        """The run's files as artifacts (those that exist), then ``finish(summary)``.

        Call it once the weights and ``summary.json`` are written, or with
        ``status="interrupted"``/``"failed"`` when training stopped; later calls do
        nothing. ``summary["status"]`` tells the tracker how the run ended.
        """
        if self.closed:
            return
        self.closed = True
        final = {**(summary or {}), "status": status}
        paths = [Path(p) for p in artifacts if Path(p).is_file()]
        for name, tracker in list(self.active.items()):
            for path in paths:
                if not self._guard(
                    name, "log_artifact", lambda t=tracker, p=path: t.log_artifact(p)
                ):
                    break
            if name in self.active:
                self._guard(name, "finish", lambda t=tracker: t.finish(dict(final)))
        self.active.clear()

    def _guard(self, name: str, phase: str, call: Callable[[], Any]) -> Any:
        """Run one tracker call; a failure disables the tracker (or raises, strict)."""
        try:
            result = call()
        except Exception as exc:
            self.active.pop(name, None)
            reason = one_line(exc, typed=True, hint=True)
            if os.environ.get("TK_STRICT_PLUGINS", "") not in ("", "0"):
                traceback.print_exc()
                raise PluginError(
                    f"tracker '{name}' failed in {phase}: {reason}",
                    "unset TK_STRICT_PLUGINS to train on without it",
                ) from exc
            line = f"tk: warning: tracker '{name}' failed in {phase} and is disabled: {reason}"
            self.failures.append(line)
            print(line, file=sys.stderr, flush=True)
            return None
        return True if result is None else result


def _log_row(tracker: Any, row: Mapping[str, Any]) -> None:
    tracker.log_metrics(*metrics_of(row))


def metrics_of(row: Mapping[str, Any]) -> tuple[int, dict[str, float]]:
    """A metrics row as (epoch, the numeric values by name)."""
    metrics = {
        k: float(v)
        for k, v in row.items()
        if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return int(row["epoch"]), metrics


def tracker_callback(
    names: str | Iterable[str] | None,
    registry: Registry,
    options: Mapping[str, Any] | None,
    run_dir: str | Path,
    main: bool,
    runs_dir: str | Path | None = None,
) -> TrackerCallback | None:
    """The callback for ``--tracker NAMES``, or None when none is selected.

    Raises a UsageError for an unknown tracker or option (call :func:`check_trackers`
    earlier to find it before the run directory exists).
    """
    selected = check_trackers(names, registry, options)
    if not selected:
        return None
    return TrackerCallback(selected, run_dir, main=main, runs_dir=runs_dir)
