"""The real ``tk`` command line in a subprocess, for tests of what a user sees."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

# Kept even with inherit_tk=False: where tk records what it exported
# (toolkit/trust.py), so a test's subprocesses share the test's record, never a home's.
KEPT = ("TK_HOME",)


def tk_env(env: Mapping[str, str] | None = None, *, inherit_tk: bool = True) -> dict[str, str]:
    """This process's environment plus ``env``; ``inherit_tk=False`` drops every ``TK_*``
    but ``TK_HOME`` (tk's record of its exports)."""
    base = {
        k: v for k, v in os.environ.items() if inherit_tk or not k.startswith("TK_") or k in KEPT
    }
    return {**base, "PYTHONUNBUFFERED": "1", **(env or {})}


def run_tk(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float | None = None,
    inherit_tk: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``tk`` command line in a subprocess (``python -m toolkit ARGS``).

    Returns the finished process (``returncode``, ``stdout``, ``stderr``); ``env``
    entries are added to the current environment. Use it to test what a user sees,
    e.g. that ``tk list models`` shows your model.
    """
    return subprocess.run(
        [sys.executable, "-m", "toolkit", *args],
        cwd=cwd,
        env=tk_env(env, inherit_tk=inherit_tk),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def popen_tk(
    args: list[str], cwd: str | Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start ``tk ARGS`` without waiting (to signal or kill it); ``TK_*`` are not inherited."""
    return subprocess.Popen(
        [sys.executable, "-m", "toolkit", *args],
        cwd=cwd,
        env=tk_env(env, inherit_tk=False),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint(
    run: Path, proc: subprocess.Popen[str] | None = None, *, count: int = 1, epoch: int = 0
) -> bool:
    """Wait (up to 120 s) until ``run`` lists ``count`` checkpoints, the newest of epoch
    ``epoch`` or later; False when the time ran out or ``proc`` ended first."""
    from toolkit.checkpoint import list_checkpoints

    deadline = time.time() + 120
    while time.time() < deadline and (proc is None or proc.poll() is None):
        listed = list_checkpoints(run)
        if len(listed) >= count and listed and _epoch(listed[-1]) >= epoch:
            return True
        time.sleep(0.02)
    return False


def _epoch(path: Path) -> int:
    # epoch-000012.safetensors or epoch-000012-step-000000034.safetensors
    return int(path.name.split("-")[1].split(".")[0])
