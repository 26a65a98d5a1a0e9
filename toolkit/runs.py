"""Run directories: the single hand-off between train and export/verify/predict.

A run directory holds everything needed to rebuild the eager model::

    runs/<model>/<name>/
        config.json        fully resolved config, versions of tk, torch and plugins
        model.safetensors  weights (no pickle: loading runs no code)
        metrics.jsonl      one JSON object per epoch
        metrics.csv        the same, for spreadsheets
        summary.json       final metrics, wall time, sha256 of the weights
        status.json        running | finished | interrupted | failed, with pid and times

``runs/latest`` is a symlink to the newest run. Every file is written atomically:
a temp file in the same directory, fsync, then ``os.replace``, so a file on disk is
always either the old one or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import UsageError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
SUMMARY = "summary.json"
STATUS = "status.json"
STATUSES = ("running", "finished", "interrupted", "failed")
LATEST = "latest"
TMP_MARK = ".tmp-"
_UMASK = os.umask(0)
os.umask(_UMASK)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one.

    The temp file lives in the same directory (a rename across filesystems is a
    copy, and not atomic: the mistake Lightning's /tmp staging made).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent)
    try:
        # mkstemp makes 0600 files; a run's files should honour the umask like open().
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically write UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Atomically write pretty-printed JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def clean_stale_temps(directory: str | Path) -> list[Path]:
    """Remove temp files that a killed write left behind; returns what was removed."""
    removed = []
    d = Path(directory)
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        if p.name.startswith(".") and TMP_MARK in p.name and p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def plan_run_dir(
    runs_dir: str, model: str, name: str | None, out: str | None, overwrite: bool
) -> Path:
    """Decide where a new run goes, refusing an existing directory unless ``overwrite``.

    Nothing is created here: a run that fails validation leaves nothing behind.
    """
    if out is not None:
        path = Path(out)
    elif name is not None:
        if not name or "/" in name or name in (".", "..", LATEST):
            raise UsageError(f"invalid run name {name!r}", "--name my-run")
        path = Path(runs_dir) / model / name
    else:
        import time

        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(runs_dir) / model / stamp
        n = 2
        while path.exists():
            path = Path(runs_dir) / model / f"{stamp}-{n}"
            n += 1
        return path
    if path.exists() and not overwrite:
        flag = "--out" if out is not None else "--name"
        raise UsageError(
            f"run directory {path} already exists",
            f"a new {flag}, or --overwrite to replace it",
        )
    return path


def set_latest(runs_dir: str | Path, run_dir: Path) -> None:
    """Point ``runs_dir/latest`` at ``run_dir`` (an atomic symlink swap)."""
    runs = Path(runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    link = runs / LATEST
    try:
        target = os.path.relpath(run_dir.resolve(), runs.resolve())
    except ValueError:  # another drive on Windows
        target = str(run_dir.resolve())
    tmp = runs / f".{LATEST}{TMP_MARK}{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.symlink(target, tmp)
        os.replace(tmp, link)
    except OSError:
        # No symlinks (some Windows setups): a one-line file holding the path.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if link.is_symlink():
            link.unlink()
        atomic_write_text(link, target + "\n")


def resolve_run(run: str | Path | None, runs_dir: str | Path = "runs") -> Path:
    """Find a run directory: ``None``/``"latest"`` is the newest run, else a path.

    Raises a UsageError naming what was looked for and how to make a run.
    """
    runs = Path(runs_dir)
    if run is None or str(run) == LATEST:
        link = runs / LATEST
        # Keep the path as the user would type it (runs/circle/x), not resolved.
        if link.is_symlink():
            path = runs / os.readlink(link)
        elif link.is_file():
            path = runs / link.read_text().strip()
        else:
            raise UsageError(f"no runs yet in {runs}/", "tk train circle")
    else:
        path = Path(run)
        if not path.exists() and (runs / str(run)).exists():
            path = runs / str(run)
    if not (path / CONFIG).is_file():
        raise UsageError(f"{path} is not a tk run directory (no {CONFIG})", "tk train MODEL")
    return path


@dataclass
class Run:
    """A finished (or in-progress) run directory, read back."""

    path: Path
    config: dict[str, Any]

    @property
    def weights(self) -> Path:
        """Path of the weights file."""
        return self.path / WEIGHTS

    def summary(self) -> dict[str, Any]:
        """The run's summary.json ({} while the run is still going)."""
        p = self.path / SUMMARY
        return json.loads(p.read_text()) if p.is_file() else {}


def open_run(run: str | Path | None, runs_dir: str | Path = "runs") -> Run:
    """Resolve and read a run directory's config."""
    path = resolve_run(run, runs_dir)
    try:
        config = json.loads((path / CONFIG).read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path / CONFIG} is not valid JSON: {exc}") from None
    return Run(path, config)


def write_status(run_dir: str | Path, status: str, **fields: Any) -> dict[str, Any]:
    """Record what a run is doing now in ``status.json`` (fields merged into the old ones).

    ``running`` carries the pid and host of the training process, so a reader can
    tell a live run from one that was killed (SIGKILL leaves ``running`` behind).
    """
    import socket
    import time

    p = Path(run_dir) / STATUS
    old: dict[str, Any] = {}
    if p.is_file():
        with contextlib.suppress(json.JSONDecodeError, OSError):
            old = json.loads(p.read_text())
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    new = {**old, "status": status, **fields}
    if status == "running":
        new.update(pid=os.getpid(), host=socket.gethostname(), ended=None, error=None)
        new.setdefault("started", now)
    else:
        new["ended"] = now
    atomic_write_json(p, new)
    return new
