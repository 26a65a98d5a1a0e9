"""Finding run directories under a runs root and reading what each one says about itself.

Only small files are read (``config.json``, ``status.json``, ``summary.json`` and the
last line of ``metrics.jsonl``) and sizes come from one ``os.scandir`` of the run
directory and of each folder in it (``checkpoints/``, ``tensorboard/``): a listing
of a thousand runs stays well under a second and never imports torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from toolkit import runs
from toolkit.runs import pid_alive
from toolkit.runs.lock import lock_state

CHECKPOINTS = "checkpoints"  # toolkit.checkpoint.CKPT_DIR, without importing checkpoint
TRIAL = "trial.json"  # a tk tune trial's study and number (toolkit.tune.trial.TRIAL_FILE)
_TAIL = 8192  # bytes read from the end of metrics.jsonl: more than one row needs


@dataclass
class RunInfo:
    """One run directory, read back: what ``tk runs`` shows for it."""

    path: Path  # as found under the runs root (not resolved)
    name: str  # relative to the runs root, e.g. circle/20261201-101010
    config: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)
    status_file: dict[str, Any] = field(default_factory=dict)  # status.json as written
    status: str = "failed"  # finished | running | interrupted | failed | pruned, as judged now
    started: str | None = None
    epochs: int = 0  # epochs done
    epochs_planned: int | None = None
    size: int = 0  # bytes of the run's files (one level of folders)
    checkpoints: int = 0
    metrics: dict[str, float] = field(default_factory=dict)  # the last row, test on top
    trial: dict[str, Any] = field(default_factory=dict)  # trial.json of a tk tune trial

    @property
    def trial_label(self) -> str | None:
        """``study#7`` for a tk tune trial, else None."""
        if "study" not in self.trial:
            return None
        return f"{self.trial['study']}#{self.trial.get('number')}"

    @property
    def model(self) -> str:
        """The run's model name."""
        return str(self.config.get("model", "?"))

    @property
    def dataset(self) -> str:
        """The run's dataset name."""
        return str(self.config.get("dataset", "?"))

    @property
    def started_ts(self) -> float:
        """``started`` as a POSIX time (0 when unknown), for filters and sorting."""
        return parse_time(self.started) or 0.0

    def to_json(self) -> dict[str, Any]:
        """What ``tk runs --json`` prints for this run."""
        return {
            "run": self.name,
            "path": str(self.path),
            "model": self.model,
            "dataset": self.dataset,
            "task": self.config.get("task"),
            "status": self.status,
            "started": self.started,
            "ended": self.status_file.get("ended"),
            "error": self.status_file.get("error"),
            "epochs": self.epochs,
            "epochs_planned": self.epochs_planned,
            "metrics": self.metrics,
            "selected": self.summary.get("selected"),
            "checkpoints": self.checkpoints,
            "size": self.size,
            "trial": self.trial or None,
        }


def parse_time(text: str | None) -> float | None:
    """A timestamp tk wrote (``2026-12-01T10:10:10+0000``) as POSIX time; None if unreadable."""
    if not text:
        return None
    try:
        stamp = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return (stamp if stamp.tzinfo else stamp.astimezone()).timestamp()


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _last_row(path: str) -> dict[str, Any]:
    """The last complete JSON line of ``metrics.jsonl``, reading only its tail."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - _TAIL))
            lines = fh.read().splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if isinstance(row, dict):
                return row
    return {}


def _sizes(path: str) -> tuple[int, int]:
    """(bytes of files in ``path`` and in its folders one level down, checkpoint files).

    A file with two names (``last.safetensors`` linked to ``model.safetensors`` when
    they hold the same weights) counts once, as it does on the disk."""
    total = checkpoints = 0
    seen: set[int] = set()
    with contextlib.suppress(OSError), os.scandir(path) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                if st.st_nlink > 1 and st.st_ino in seen:
                    continue
                seen.add(st.st_ino)
                total += st.st_size
            elif entry.is_dir(follow_symlinks=False):
                with contextlib.suppress(OSError), os.scandir(entry.path) as inner:
                    for item in inner:
                        if item.is_file(follow_symlinks=False):
                            total += item.stat(follow_symlinks=False).st_size
                            if entry.name == CHECKPOINTS and item.name.endswith(".safetensors"):
                                checkpoints += 1
    return total, checkpoints


def judge_status(
    status: dict[str, Any], has_summary: bool, checkpoints: int, locked: bool | None = None
) -> str:
    """The run's status now: ``status.json``, corrected for a process that is gone.

    A ``running`` status whose writer no longer holds the run's lock (``locked``
    False; the lock dies with its process, whatever reused its pid since), or, for
    runs without a lock file (``locked`` None), whose process no longer exists on
    this host, was killed (SIGKILL, a power cut): ``interrupted``, or ``finished``
    if it got as far as ``summary.json``. Without ``status.json`` (runs of an older
    tk): ``finished`` with a summary, else ``interrupted`` with checkpoints, else
    ``failed``.
    """
    word = status.get("status")
    if word == "running":
        here = status.get("host") in (None, socket.gethostname())
        alive = pid_alive(status.get("pid")) if locked is None else locked
        if not here or alive:
            return "running"
        return "finished" if has_summary else "interrupted"
    if word in runs.STATUSES:
        return str(word)
    if has_summary:
        return "finished"
    return "interrupted" if checkpoints else "failed"


def _metrics(summary: dict[str, Any], last: dict[str, Any]) -> dict[str, float]:
    """The final epoch's row (or the last logged one), the final test evaluation on top."""
    row = summary.get("final") or last
    out = {k: v for k, v in row.items() if k != "epoch" and isinstance(v, (int, float))}
    for key, value in (summary.get("test") or {}).items():
        if isinstance(value, (int, float)) and key != "rows":  # a count, not a figure
            out[f"test_{key}"] = value
    return out


def _locked(path: str, status: dict[str, Any]) -> bool | None:
    """The run's lock, tested only where ``status.json`` says ``running`` (one open)."""
    return lock_state(path) if status.get("status") == "running" else None


def read_run(path: str | Path, root: str | Path) -> RunInfo | None:
    """A run directory read back, or None when ``path`` holds no readable ``config.json``."""
    base = str(path)
    config = _read_json(os.path.join(base, runs.CONFIG))
    if config is None:
        return None
    summary = _read_json(os.path.join(base, runs.SUMMARY)) or {}
    status = _read_json(os.path.join(base, runs.STATUS)) or {}
    size, checkpoints = _sizes(base)
    last = {} if summary else _last_row(os.path.join(base, runs.METRICS_JSONL))
    recipe = config.get("recipe") or {}
    rel = Path(os.path.relpath(base, root)).as_posix()
    info = RunInfo(
        path=Path(base),
        name=base if rel.startswith("..") else rel,  # outside the root: its own path
        config=config,
        summary=summary,
        status_file=status,
        status=judge_status(status, bool(summary), checkpoints, _locked(base, status)),
        started=status.get("started") or config.get("created"),
        epochs=int(summary.get("epochs") or last.get("epoch") or 0),
        epochs_planned=recipe.get("epochs") if isinstance(recipe, dict) else None,
        size=size,
        checkpoints=checkpoints,
        metrics=_metrics(summary, last),
        trial=_read_json(os.path.join(base, TRIAL)) or {},
    )
    return info


def run_dirs(root: str | Path) -> list[str]:
    """Every run directory under ``root``: ``root/NAME``, ``root/MODEL/NAME`` or a study's
    trial ``root/MODEL/STUDY/trial-NNNN`` (``tk tune``).

    ``latest``, hidden entries and symlinks are skipped (a run is listed once).
    """
    return sorted(_runs_in(str(root), 3))


def _runs_in(folder: str, depth: int) -> list[str]:
    """Run directories in ``folder`` and, ``depth`` levels down, in folders that are not runs."""
    found: list[str] = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if not _candidate(entry):
                continue
            if os.path.isfile(os.path.join(entry.path, runs.CONFIG)):
                found.append(entry.path)
            elif depth > 1:
                found += _runs_in(entry.path, depth - 1)
    return found


def _candidate(entry: os.DirEntry[str]) -> bool:
    return (
        not entry.name.startswith(".")
        and entry.name != runs.LATEST
        and entry.is_dir(follow_symlinks=False)
    )


def scan_runs(root: str | Path) -> list[RunInfo]:
    """Every run under ``root``, oldest first (by start time, then name)."""
    infos = [info for d in run_dirs(root) if (info := read_run(d, root)) is not None]
    infos.sort(key=lambda r: (r.started_ts, r.name))
    return infos
