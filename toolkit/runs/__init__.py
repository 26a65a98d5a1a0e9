"""Run directories: the single hand-off between train and export/verify/predict.

A run directory holds everything needed to rebuild the eager model::

    runs/<model>/<name>/
        config.json        fully resolved config, versions of tk, torch and plugins
        model.safetensors  weights (no pickle: loading runs no code)
        metrics.jsonl      one JSON object per epoch
        metrics.csv        the same, for spreadsheets
        summary.json       final metrics, wall time, sha256 of the weights
        status.json        running | finished | interrupted | failed | pruned, pid and times

``runs/latest`` is a symlink to the newest run under the runs root: it moves when a
run starts (or is resumed), so it names a run cut off by Ctrl-C too. Every file is
written atomically: a temp file in the same directory (named after the writer's pid),
fsync, then ``os.replace``, so a file on disk is always either the old one or the new one.

One resolver, :func:`resolve_run`, turns what a user typed into a run directory, for
every command. The rule: ``latest`` (or ``RUNS/latest``) and names relative to the
runs root (``circle/demo``) must lead to a run directory inside the runs root, once
symlinks and ``..`` are resolved; so must any path typed *through* the runs root. A
path the user typed outside the runs root (a ``--out`` directory) is taken as typed.
``tk runs rm`` is stricter: it deletes only runs inside the runs root
(``toolkit.runlog.query``). Locks and the overwrite guard live in
:mod:`toolkit.runs.lock` and :mod:`toolkit.runs.replace`.
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
STATUSES = ("running", "finished", "interrupted", "failed", "pruned")  # pruned: by tk tune
LATEST = "latest"
CHECKPOINTS = "checkpoints"  # toolkit.checkpoint.CKPT_DIR
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
    # The pid in the name tells a later writer whether this temp file's writer still lives.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}{os.getpid()}-", dir=path.parent)
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
    """Remove temp files that a killed write left behind; returns what was removed.

    A temp file whose name carries the pid of a live process (this one included) is
    a write in progress, and is kept; one of a dead process, or of a tk that did not
    put the pid in the name, is removed.
    """
    removed: list[Path] = []
    d = Path(directory)
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        if not (p.name.startswith(".") and TMP_MARK in p.name and p.is_file()):
            continue
        pid = p.name.rsplit(TMP_MARK, 1)[1].split("-", 1)[0]
        if pid.isdigit() and (int(pid) == os.getpid() or pid_alive(int(pid))):
            continue
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


def pid_alive(pid: Any) -> bool:
    """Whether process ``pid`` exists on this machine and is not a zombie."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, owned by someone else
        return True
    try:  # Linux: a killed child that nobody reaped yet is a zombie, not a run
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


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

    Nothing is created here: a run that fails validation leaves nothing behind. What
    ``overwrite`` may replace is checked by :func:`toolkit.runs.replace.check_target`.
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
    if (path.exists() or path.is_symlink()) and not overwrite:
        flag = "--out" if out is not None else "--name"
        raise UsageError(
            f"run directory {path} already exists",
            f"a new {flag}, or --overwrite to replace it",
        )
    return path


def set_latest(runs_dir: str | Path, run_dir: Path) -> None:
    """Point ``runs_dir/latest`` at ``run_dir`` (an atomic symlink swap).

    Only a run inside the runs root becomes ``latest`` (no reference may lead out of
    it); a run trained with ``--out`` elsewhere is named by its path.
    """
    runs = Path(runs_dir)
    if not inside_root(run_dir, runs):
        return
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


class OutsideRunsRoot(UsageError):
    """A run reference (``latest``, a name under the runs root) that leads outside it."""


def inside_root(path: str | Path, runs_dir: str | Path) -> bool:
    """True when ``path``, symlinks and ``..`` resolved, is strictly inside the runs root."""
    real, root = os.path.realpath(path), os.path.realpath(runs_dir)
    return real != root and os.path.commonpath([real, root]) == root


def _through_root(path: Path, runs_dir: Path) -> bool:
    """True when ``path`` as typed (``..`` folded, no symlink followed) is in the runs root."""
    typed, root = os.path.abspath(path), os.path.abspath(runs_dir)
    return os.path.commonpath([typed, root]) == root


def guard_path(
    path: str | Path, runs_dir: str | Path, *, indirect: bool = False, name: str | None = None
) -> Path:
    """``path`` itself, or OutsideRunsRoot when it is reached through the runs root (or
    ``indirect``ly: ``latest``, a name relative to the root) yet leads outside it.
    ``name``: what the user typed, for the message."""
    path, root = Path(path), Path(runs_dir)
    if not (indirect or _through_root(path, root)):
        return path  # typed by the user outside the runs root: taken as typed
    if os.path.realpath(path) == os.path.realpath(root):
        raise UsageError(f"{path} is the runs root, not a run directory", "tk runs")
    if not inside_root(path, root):
        raise OutsideRunsRoot(
            f"{name or path} leads outside the runs root {root}/ (to {os.path.realpath(path)}); "
            "refusing to follow it",
            f"name the run by its own path, or point {root / LATEST} at a run: tk train",
        )
    return path


def _latest(root: Path) -> Path:
    """Where ``root/latest`` points (a symlink, or the one-line file of Windows setups)."""
    link = root / LATEST
    # Keep the path as the user would type it (runs/circle/x), not resolved.
    if link.is_symlink():
        return root / os.readlink(link)
    if link.is_file():
        return root / link.read_text().strip()
    raise UsageError(f"no runs yet in {root}/", "tk train circle")


def locate(ref: str | Path | None, runs_dir: str | Path = "runs") -> Path:
    """The path a reference names, guarded (see :func:`resolve_run`); it may be a file."""
    root = Path(runs_dir)
    if ref is None or str(ref) == LATEST:
        return guard_path(_latest(root), root, indirect=True, name=str(root / LATEST))
    path = Path(ref)
    if not (path.exists() or path.is_symlink()) and not path.is_absolute():
        under = root / path
        if under.exists() or under.is_symlink():
            return guard_path(under, root, indirect=True, name=str(path))
    return guard_path(path, root)


def resolve_run(run: str | Path | None, runs_dir: str | Path = "runs") -> Path:
    """The run directory a user named, for every command: ``None``/``latest`` (the
    newest run), ``runs/latest``, a path, or ``MODEL/NAME`` relative to the runs root.

    ``latest`` and names under the runs root must lead inside it (OutsideRunsRoot
    otherwise, exit 2); a path typed outside the runs root is taken as typed. Raises a
    UsageError naming what was looked for when it is not a run directory.
    """
    path = locate(run, runs_dir)
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
        """The run's summary.json ({} while the run is still going, or unreadable)."""
        try:
            data = json.loads((self.path / SUMMARY).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


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
