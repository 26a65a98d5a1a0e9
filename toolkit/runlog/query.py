"""Choosing runs: filters, sort keys, a run named the way a user types it, safe removal."""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from toolkit import runs
from toolkit.errors import UsageError
from toolkit.runlog.scan import RunInfo, read_run, run_dirs, scan_runs
from toolkit.runs.lock import lock_owner, lock_run, lock_state
from toolkit.train.tracked import delete_copies, read_record

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Sort keys every run has; any metric name (test_accuracy, val_loss, ...) works too.
FIXED_KEYS = ("started", "run", "model", "dataset", "status", "epochs", "size")


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: a date (2026-12-01), a local time (2026-12-01T10:00) or an age (3d, 12h)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        return (time.time() if now is None else now) - float(m[1]) * _UNITS[m[2]]
    try:
        stamp = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--since expects a date (2026-12-01), a time (2026-12-01T10:00) or an age "
            f"(30m, 12h, 3d, 2w), got {text!r}"
        ) from None
    return (stamp if stamp.tzinfo else stamp.astimezone()).timestamp()


def parse_statuses(text: str) -> set[str]:
    """``--status finished,interrupted`` -> the set, each checked."""
    wanted = {w.strip() for w in text.split(",") if w.strip()}
    bad = sorted(wanted - set(runs.STATUSES))
    if bad or not wanted:
        raise UsageError(
            f"unknown status {', '.join(repr(b) for b in bad) or repr(text)}; "
            f"allowed: {', '.join(runs.STATUSES)}"
        )
    return wanted


def select(
    items: Iterable[RunInfo],
    model: str | None = None,
    since: str | None = None,
    status: str | None = None,
) -> list[RunInfo]:
    """The runs whose model matches ``model`` (a name or glob), started at or after
    ``since``, with one of the comma-separated ``status`` words."""
    out = list(items)
    if model:
        out = [r for r in out if fnmatch.fnmatchcase(r.model, model)]
    if since:
        cutoff = parse_since(since)
        out = [r for r in out if r.started_ts >= cutoff]
    if status:
        wanted = parse_statuses(status)
        out = [r for r in out if r.status in wanted]
    return out


def _value(run: RunInfo, key: str) -> object:
    fixed = {
        "started": run.started_ts,
        "run": run.name,
        "model": run.model,
        "dataset": run.dataset,
        "status": run.status,
        "epochs": run.epochs,
        "size": run.size,
    }
    return fixed[key] if key in fixed else run.metrics.get(key)


def sort_runs(items: Iterable[RunInfo], key: str | None) -> list[RunInfo]:
    """Sort by ``key``: a metric best first (accuracy high to low, loss and MAE low to
    high), any other key ascending; ``-key`` reverses. Runs without the metric go last."""
    out = list(items)
    if not key:
        return out
    reverse = key.startswith("-")
    name = key[1:] if reverse else key
    metric_keys = sorted({k for r in out for k in r.metrics})
    if name not in FIXED_KEYS and name not in metric_keys:
        raise UsageError(
            f"cannot sort by '{name}'; allowed: {', '.join([*FIXED_KEYS, *metric_keys])}",
            "tk runs --sort test_accuracy",
        )
    have = [r for r in out if _value(r, name) is not None]
    missing = [r for r in out if _value(r, name) is None]
    higher_is_better = name not in FIXED_KEYS and "accuracy" in name
    have.sort(key=lambda r: _value(r, name), reverse=higher_is_better != reverse)  # type: ignore[arg-type, return-value]
    return have + missing


def find_run(text: str, root: str | Path) -> RunInfo:
    """The run a user named: ``latest``, a path, ``MODEL/NAME`` under the root, or a
    bare ``NAME`` that only one run has."""
    root = Path(root)
    try:
        path: Path | str = runs.resolve_run(text, root)
    except runs.OutsideRunsRoot:
        raise  # found, and refused: never looked up again by its bare name
    except UsageError:
        if text == runs.LATEST:
            raise
        path = _by_name(text, root)
    info = read_run(path, root)
    if info is None:
        raise UsageError(f"{path}/{runs.CONFIG} cannot be read", "tk runs")
    return info


def _by_name(text: str, root: Path) -> str:
    found = {Path(os.path.relpath(d, root)).as_posix(): d for d in run_dirs(root)}
    matches = [d for rel, d in found.items() if rel.rsplit("/", 1)[-1] == text]
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(Path(os.path.relpath(d, root)).as_posix() for d in matches)
        raise UsageError(f"'{text}' names {len(matches)} runs: {names}", "name one as MODEL/NAME")
    # A typo is usually in the run's own name: match that, suggest the full name.
    by_base = {rel.rsplit("/", 1)[-1]: rel for rel in found}
    close = difflib.get_close_matches(text, [*found, *by_base], n=1, cutoff=0.6)
    hint = f"; did you mean '{by_base.get(close[0], close[0])}'?" if close else ""
    raise UsageError(f"no run '{text}' in {root}/{hint}", "tk runs")


def removal_targets(texts: Iterable[str], root: str | Path) -> list[RunInfo]:
    """The runs ``tk runs rm`` would delete, each checked: found by the run resolver,
    a run directory strictly inside the runs root once symlinks and ``..`` are
    resolved (deleting is stricter than reading: a path typed outside the root is
    refused too), and written by nobody. Raises a UsageError for the first that is not."""
    out: list[RunInfo] = []
    for text in texts:
        info = find_run(text, root)
        if not runs.inside_root(info.path, root):
            raise UsageError(
                f"refusing to delete {info.path}: it is not a run inside the runs root {root}/",
                "--runs-dir ROOT (the root the run is in)",
            )
        locked = lock_state(info.path)
        if info.status == "running" or locked:
            pid = (lock_owner(info.path) if locked else None) or info.status_file.get("pid")
            raise UsageError(f"run {info.name} is still running (pid {pid})", "stop it first")
        real = os.path.realpath(info.path)
        if all(os.path.realpath(o.path) != real for o in out):
            out.append(info)
    return out


def remove_runs(
    targets: Iterable[RunInfo], root: str | Path, echo: Callable[[str], None] | None = None
) -> list[Path]:
    """Delete checked runs (see :func:`removal_targets`), each under its lock (a writer
    that started since is never deleted under); then :func:`fix_latest`.

    With ``echo``: ``deleted RUN`` per run, then one line per tracker the run was
    trained with (``RUN/trackers.json``), saying it deleted its copy or why it did not.
    """
    removed = []
    for info in targets:
        real = Path(os.path.realpath(info.path))
        with lock_run(real, "tk runs rm"):
            tracked = read_record(real)  # read before the directory goes
            shutil.rmtree(real)
        removed.append(info.path)
        if echo is not None:
            echo(f"deleted {info.path}")
            if tracked:
                from toolkit.plugins import get_registry

                delete_copies(tracked, get_registry(), echo)
    fix_latest(root)
    return removed


def fix_latest(root: str | Path) -> None:
    """Repoint ``root/latest`` when the run it names is gone (or lies outside the root):
    at the newest run left, whatever its status, or remove it when none is left."""
    link = Path(root) / runs.LATEST
    if not (link.is_symlink() or link.is_file()):
        return
    try:
        runs.resolve_run(runs.LATEST, root)
        return
    except UsageError:
        pass
    left = scan_runs(root)
    if left:
        runs.set_latest(root, left[-1].path)
    else:
        link.unlink()
