"""The errors a user can cause, each one line naming what failed and the fix.

Exit codes (documented in the README and ``tk --help``):

====  =====================================================================
0     success
1     runtime failure: training diverged, verification found a mismatch
2     usage or bad input: unknown model, bad parameter, missing data, ...
3     a file cannot be exported, loaded or run
130   interrupted (Ctrl-C); 143 terminated (SIGTERM)
====  =====================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_EXPORT = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class TkError(Exception):
    """Base of every error tk reports to a user as one line on stderr.

    :param message: what failed, in one line.
    :param hint: the command or flag that fixes it, appended as ``(fix: ...)``.
    """

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (try: {self.hint})"
        return self.message


class UsageError(TkError):
    """Bad input from the user: unknown names, bad parameters, missing files."""

    exit_code = EXIT_USAGE


class IntegrityError(TkError):
    """A file does not match the sha256 recorded in its run's manifest, or would make
    a runtime read outside it."""

    exit_code = EXIT_EXPORT


class PluginError(TkError):
    """A plugin failed to load or registered something invalid."""

    exit_code = EXIT_FAILURE


class TrainingError(TkError):
    """Training could not continue (non-finite loss, diverged, ...)."""

    exit_code = EXIT_FAILURE


class ExportError(TkError):
    """A model could not be exported, or an exported file cannot be loaded or run."""

    exit_code = EXIT_EXPORT


class VerificationError(TkError):
    """An exported file runs but disagrees with the eager model."""

    exit_code = EXIT_FAILURE


def debug_enabled() -> bool:
    """True when ``TK_DEBUG`` is set to anything but empty or 0: show tracebacks."""
    import os

    return os.environ.get("TK_DEBUG", "") not in ("", "0")


def one_line(
    exc: BaseException, limit: int = 300, *, typed: bool = True, hint: bool = False
) -> str:
    """An exception squeezed onto one line (ANSI colours removed), at most ``limit`` long.

    ``Type: message`` unless ``typed`` is False; tk's own errors never get the type,
    and keep their ``(try: ...)`` fix only with ``hint``.
    """
    import re

    own = isinstance(exc, TkError) and not hint
    text = re.sub(r"\x1b\[[0-9;]*m", "", exc.message if own else str(exc))
    text = " ".join(text.split()) or type(exc).__name__
    if typed and not isinstance(exc, TkError):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_number(
    label: str,
    value: float,
    low: float | None = None,
    *,
    above: bool = False,
    high: float | None = None,
    hint: str | None = None,
) -> float:
    """``value`` if it is a finite number within bounds, else a UsageError naming ``label``.

    ``low`` is the least value allowed (``above=True``: the value must exceed it),
    ``high`` the largest. Every numeric option of every command goes through here,
    so NaN, infinities and negatives are refused alike.
    """
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{label} must be a number, got {value!r}", hint)
    if not math.isfinite(value):
        raise UsageError(f"{label} must be a finite number, got {value}", hint)
    bad_low = low is not None and (value <= low if above else value < low)
    if bad_low or (high is not None and value > high):
        if high is not None and low is not None:
            want = f"be in {'(' if above else '['}{_num(low)}, {_num(high)}]"
        elif high is not None:
            want = f"be at most {_num(high)}"
        elif above:
            want = "be positive" if low == 0 else f"be greater than {_num(low)}"
        else:
            want = "not be negative" if low == 0 else f"be at least {_num(low)}"
        raise UsageError(f"{label} must {want}, got {_num(value)}", hint)
    return value


def _num(x: float | None) -> str:
    """An integer as typed (4294967295), any other number short (0.5, 1e-05)."""
    return str(int(x)) if isinstance(x, int) or (x is not None and x.is_integer()) else f"{x:g}"
