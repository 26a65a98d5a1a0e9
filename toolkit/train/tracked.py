"""A run's trackers after the run: the record of where each one keeps its copy, files
exported later, and deleting that copy with the run.

While a run trains, :class:`toolkit.train.trackers.TrackerCallback` writes
``RUN/trackers.json``: per tracker, the options it was built with and the ``state()``
it reported (MLflow: the tracking URI and run id). After the run, a tracker is built
again from that record and pointed back at its copy with ``reopen(state)``; then

- ``tk export`` hands it each file it wrote (``log_artifact``), so an MLflow run holds
  the ONNX file exported a week after training, in the same MLflow run;
- ``tk runs rm`` asks it to ``delete()`` its copy, and says in one line when it
  cannot (no ``delete``, a copy it will not touch, a store that is gone).

``state``, ``reopen`` and ``delete`` are optional: a tracker without them simply
keeps what it has, and tk says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from toolkit import runs
from toolkit.errors import one_line
from toolkit.registry import Registry

RECORD = "trackers.json"


def write_record(run_dir: Path, entries: Mapping[str, Mapping[str, Any]]) -> None:
    """Merge ``{name: {"options", "state"}}`` into ``RUN/trackers.json`` (atomically).

    A resumed run keeps the entries of trackers it no longer uses: their copies exist.
    """
    if not run_dir.is_dir():  # fit() without a run directory: nothing to record
        return
    record = read_record(run_dir)
    record.update({name: dict(entry) for name, entry in entries.items()})
    text = json.dumps({"schema": 1, "trackers": record}, indent=2, default=str)
    runs.atomic_write_text(run_dir / RECORD, text + "\n")


def read_record(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``{name: {"options": ..., "state": ...}}`` from ``RUN/trackers.json`` ({} if none)."""
    try:
        data = json.loads((Path(run_dir) / RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    found = data.get("trackers") if isinstance(data, dict) else None
    return {k: v for k, v in (found or {}).items() if isinstance(v, dict)}


def _reopened(
    record: Mapping[str, Mapping[str, Any]], registry: Registry, method: str
) -> Iterator[tuple[str, Any, str | None]]:
    """``(name, tracker, None)`` per recorded tracker pointed back at its copy and able to
    ``method``, or ``(name, None, why not)``."""
    for name, entry in record.items():
        spec = registry.trackers.get(name)
        if spec is None:
            yield name, None, "the tracker is not installed"
            continue
        try:
            tracker = spec.factory(**dict(entry.get("options") or {}))
            reopen = getattr(tracker, "reopen", None)
            if not callable(reopen) or not callable(getattr(tracker, method, None)):
                yield name, None, f"it has no reopen() and {method}() to reach a finished run"
                continue
            reopen(dict(entry.get("state") or {}))
        except Exception as exc:  # somebody else's code and server: say why, go on
            yield name, None, one_line(exc, typed=True)
            continue
        yield name, tracker, None


def send_files(
    run_dir: str | Path, paths: Iterable[str | Path], registry: Registry
) -> tuple[list[str], list[str]]:
    """Log files made after a run (exports) to the run's recorded trackers.

    :returns: (the trackers that got every file, one warning line per tracker that did not).
    """
    files = [Path(p) for p in paths if Path(p).is_file()]
    record = read_record(run_dir)
    if not files or not record:
        return [], []
    names = ", ".join(p.name for p in files)
    sent, warnings = [], []
    for name, tracker, why in _reopened(record, registry, "log_artifact"):
        if tracker is not None:
            try:
                for path in files:
                    tracker.log_artifact(path)
                sent.append(name)
                continue
            except Exception as exc:
                why = one_line(exc, typed=True)
        warnings.append(f"tk: warning: tracker '{name}' did not get {names}: {why}")
    return sent, warnings


def delete_copies(
    record: Mapping[str, Mapping[str, Any]], registry: Registry, echo: Callable[[str], None]
) -> None:
    """Ask each recorded tracker to delete its copy of a run: one line per tracker."""
    for name, tracker, why in _reopened(record, registry, "delete"):
        if tracker is not None:
            try:
                echo(f"tracker {name}: deleted {tracker.delete()}")
                continue
            except Exception as exc:
                why = one_line(exc, typed=False)
        echo(f"tracker {name}: its copy was NOT deleted: {why}")
