"""What ``--overwrite`` may replace: a tk run directory, and nothing else.

A run directory is recognised by tk's own files: a ``config.json`` naming a model and
recipe, and a ``status.json`` or ``manifest.json`` in the shape tk writes them. Never
the working directory, the runs root, the home directory or a folder above any of
them, never a file or a symlink, never a folder of someone's files: each is one
line, exit 2, nothing deleted. An empty directory holds nothing to lose and may be
reused. The replacement happens under the run's lock, so a live writer's directory
is never emptied under it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from toolkit import runs
from toolkit.errors import UsageError
from toolkit.runs.lock import LOCK, RunLock, lock_run, refuse_if_busy

MANIFEST = "manifest.json"  # toolkit.integrity.MANIFEST (a layer above this one)
_HINT = "another --out or --name"


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_run_dir(path: str | Path) -> bool:
    """True for a directory tk wrote: its config.json, and its status.json or manifest.json."""
    path = Path(path)
    config = _json(path / runs.CONFIG)
    if not isinstance(config, dict) or not {"model", "recipe"} <= set(config):
        return False
    status = _json(path / runs.STATUS)
    if isinstance(status, dict) and status.get("status") in runs.STATUSES:
        return True
    manifest = _json(path / MANIFEST)
    return isinstance(manifest, dict) and isinstance(manifest.get("files"), dict)


def _empty(path: Path) -> bool:
    return all(entry.name == LOCK for entry in os.scandir(path))


def _home() -> str | None:
    try:
        return str(Path.home())
    except (RuntimeError, KeyError):  # no HOME and no passwd entry
        return None


def check_replaceable(path: str | Path, runs_dir: str | Path) -> None:
    """UsageError unless ``path`` is a tk run directory (or an empty one) that
    ``--overwrite`` may replace; see the module docstring."""
    path = Path(path)
    if path.is_symlink():
        raise UsageError(f"refusing to replace {path}: it is a symlink, not a run directory", _HINT)
    if not path.exists():
        return
    if not path.is_dir():
        raise UsageError(f"refusing to replace {path}: it is a file, not a run directory", _HINT)
    real = os.path.realpath(path)
    protected = (
        ("the working directory", os.getcwd()),
        ("the runs root", str(runs_dir)),
        ("the home directory", _home()),
    )
    for what, other in protected:
        if other is None:
            continue
        other = os.path.realpath(other)
        if os.path.commonpath([real, other]) == real:  # it, or a folder above it
            above = "" if real == other else "a folder above "
            raise UsageError(f"refusing to replace {path}: it is {above}{what}", _HINT)
    if not (is_run_dir(path) or _empty(path)):
        raise UsageError(
            f"refusing to replace {path}: it is not a tk run directory "
            f"(no {runs.CONFIG} with {runs.STATUS} or {MANIFEST} written by tk)",
            _HINT,
        )


def check_target(path: str | Path, overwrite: bool, runs_dir: str | Path) -> None:
    """Before any work: what ``--overwrite`` would replace is a run directory nobody writes."""
    path = Path(path)
    if overwrite and (path.exists() or path.is_symlink()):
        check_replaceable(path, runs_dir)
        refuse_if_busy(path, "tk train --overwrite")


def create_run_dir(path: Path, *, overwrite: bool, runs_dir: str | Path) -> RunLock:
    """Make a new run directory (or, with ``overwrite``, empty a replaceable one), locked.

    The caller releases the lock when it stops writing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
        return lock_run(path, "tk train")
    except FileExistsError:
        if not overwrite:  # made by someone else since the plan was checked
            raise UsageError(
                f"run directory {path} already exists", "a new --out or --name, or --overwrite"
            ) from None
    check_replaceable(path, runs_dir)
    lock = lock_run(path, "tk train --overwrite")
    try:
        check_replaceable(path, runs_dir)  # again, now that nobody else can write it
        _clear(path)
    except BaseException:
        lock.release()
        raise
    return lock


def _clear(path: Path) -> None:
    """Remove everything in ``path`` but its lock file (which the caller holds)."""
    for entry in os.scandir(path):
        if entry.name == LOCK:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
