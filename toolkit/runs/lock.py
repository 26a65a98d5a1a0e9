"""One writer per run directory: an OS lock that dies with its process.

A process that writes a run directory (``tk train``, a resume, ``tk export``, ``tk
plot``, ``tk runs rm``) holds ``fcntl.flock`` on ``RUN/.lock``, with its pid written
inside, for as long as it writes. A second writer is refused in one line naming that
pid. The kernel drops the lock when its process dies, however it dies (SIGKILL
included), so a restarted torchrun rank 0 takes over its dead predecessor's run, and
a reader (``tk runs``) tells a live run from a dead one by testing the lock: unlike
the pid in ``status.json``, a lock cannot be inherited by an unrelated process that
got the same pid.

Within one process the lock is reentrant (a resume takes it to clean the directory,
the writer takes it again to write): each :func:`lock_run` is matched by a
``release``, and :func:`released_on_exit` drops every lock a block took.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from toolkit import runs
from toolkit.errors import UsageError

LOCK = ".lock"
WAIT = 0.5  # seconds a writer retries: a reader holds the lock for a microsecond
_FLAGS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class RunBusy(UsageError):
    """Another live process is writing this run directory."""


class RunLock:
    """A held lock on a run directory; ``release`` (or ``with``) gives it back."""

    def __init__(self, run_dir: Path, fd: int | None) -> None:
        self.run_dir = run_dir
        self.fd = fd
        self.count = 1

    def release(self) -> None:
        """Give back one acquisition; the lock goes when the last one is given back."""
        self.count -= 1
        if self.count <= 0:
            self.close()

    def close(self) -> None:
        """Give the lock back now, whatever the count."""
        self.count = 0
        _HELD.pop(os.path.realpath(self.run_dir), None)
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_HELD: dict[str, RunLock] = {}


def _fcntl():
    try:
        import fcntl
    except ImportError:  # Windows: no flock; status.json's pid is all there is
        return None
    return fcntl


def lock_run(run_dir: str | Path, doing: str, wait: float = WAIT) -> RunLock:
    """Take ``run_dir``'s lock for writing, then remove temp files dead writers left.

    Raises RunBusy (exit 2) naming the pid that holds it, after ``wait`` seconds.
    """
    run_dir = Path(run_dir)
    held = _HELD.get(os.path.realpath(run_dir))
    if held is not None:
        held.count += 1
        return held
    fcntl = _fcntl()
    fd = None
    if fcntl is not None:
        fd = _open(run_dir, os.O_RDWR | os.O_CREAT, doing)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    owner = _owner(fd)
                    os.close(fd)
                    raise RunBusy(
                        f"{doing}: run directory {run_dir} is being written by another "
                        f"process (pid {owner or 'unknown'})",
                        "wait for it to finish, or stop that process first",
                    ) from None
                time.sleep(0.01)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    lock = RunLock(run_dir, fd)
    _HELD[os.path.realpath(run_dir)] = lock
    # The next writer cleans up after a dead one; a live writer's temp files (its pid
    # is in their names) are never touched.
    runs.clean_stale_temps(run_dir)
    runs.clean_stale_temps(run_dir / runs.CHECKPOINTS)
    return lock


def _open(run_dir: Path, flags: int, doing: str) -> int:
    try:
        return os.open(run_dir / LOCK, flags | _FLAGS, 0o666)
    except OSError as exc:
        # O_NOFOLLOW: a symlink planted as the lock file is refused, never truncated.
        raise UsageError(
            f"{doing}: cannot lock run directory {run_dir} ({exc.strerror})",
            "check that the directory exists and is writable",
        ) from None


def _owner(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def lock_state(run_dir: str | Path) -> bool | None:
    """True while a live process holds ``run_dir``'s lock, False when nobody does, None
    when it cannot be told (no lock file: a run of an older tk; no flock here)."""
    fcntl = _fcntl()
    if fcntl is None:
        return None
    if os.path.realpath(run_dir) in _HELD:
        return True
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY | _FLAGS)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock, if it was taken
    return False


def lock_owner(run_dir: str | Path) -> int | None:
    """The pid written in ``run_dir``'s lock file (the last process that held it)."""
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY | _FLAGS)
    except OSError:
        return None
    try:
        return _owner(fd)
    finally:
        os.close(fd)


def refuse_if_busy(run_dir: str | Path, doing: str) -> None:
    """RunBusy when a live process holds ``run_dir``'s lock (another process's, not ours)."""
    if os.path.realpath(run_dir) in _HELD or not lock_state(run_dir):
        return
    raise RunBusy(
        f"{doing}: run directory {run_dir} is being written by another process "
        f"(pid {lock_owner(run_dir) or 'unknown'})",
        "wait for it to finish, or stop that process first",
    )


@contextlib.contextmanager
def released_on_exit() -> Iterator[None]:
    """Every lock taken inside the block is given back when it ends, however it ends."""
    before = set(_HELD)
    try:
        yield
    finally:
        for key in [k for k in _HELD if k not in before]:
            _HELD[key].close()
