"""Ctrl-C and SIGTERM during training: finish the step, checkpoint, say how to resume.

Inside :class:`Signals` both signals only set a :class:`StopFlag`; the loop reads
it after each step (after each epoch in a distributed job, where ranks must agree)
and raises :class:`Interrupted`, which the CLI turns into exit 130 or 143.
"""

from __future__ import annotations

import sys
from typing import Any

from toolkit.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, TkError


class StopFlag:
    """Set by a signal handler; the loop stops after the current step when it is set."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def request(self, signum: int) -> None:
        """Ask the loop to stop (a second request changes nothing)."""
        if self.signum is None:
            self.signum = signum


class Interrupted(TkError):
    """Training stopped on SIGINT/SIGTERM after writing a checkpoint."""

    def __init__(self, signum: int, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        import signal

        self.exit_code = EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED


class Signals:
    """SIGINT/SIGTERM set a StopFlag instead of raising, for the duration of training."""

    def __init__(self, stop: StopFlag) -> None:
        self.stop = stop
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return self

        def handler(signum: int, frame: Any) -> None:
            if self.stop.signum is None:
                print(
                    "\ntk: stopping after this step and writing a checkpoint...",
                    file=sys.stderr,
                    flush=True,
                )
            self.stop.request(signum)

        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        for sig, old in self.previous.items():
            # After a stop, a repeated Ctrl-C/SIGTERM must not kill the process
            # halfway through its exit: ignore them from here on.
            signal.signal(sig, signal.SIG_IGN if self.stop.signum is not None else old)
