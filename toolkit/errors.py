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
