"""Interleaved timing: every comparison of the benchmarks is measured with these.

Shared by ``scripts/bench`` and ``scripts/bench_export.py``.
"""

from __future__ import annotations

import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def median(values: list[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else math.nan


def interleave(
    variants: dict[str, Callable[[], Any]], rounds: int, min_seconds: float = 0.0
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Wall seconds of each variant per round, timed round-robin with a rotated order.

    Runs ``rounds`` rounds, and more until ``min_seconds`` have passed. Returns (times
    per variant, the last result each variant returned).
    """
    names = list(variants)
    times: dict[str, list[float]] = {k: [] for k in names}
    results: dict[str, Any] = {}
    start = time.perf_counter()
    r = 0
    while r < rounds or time.perf_counter() - start < min_seconds:
        # Rotating the order keeps any variant from always running right after
        # (or before) a particular other one.
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            results[name] = variants[name]()
            times[name].append(time.perf_counter() - t0)
        r += 1
    return times, results


def paired_ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b), both measured in the same round."""
    pairs = [x / y for x, y in zip(times[a], times[b], strict=True) if y > 0]
    return median(pairs)


def paired_diffs(times: dict[str, list[float]], a: str, b: str) -> list[float]:
    """time(a) - time(b) of every round."""
    return [x - y for x, y in zip(times[a], times[b], strict=True)]


def run_process(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one child process; raises when it fails.

    CPU time (user + system) moves much less than wall time when other processes
    compete for the cores, so it is a useful cross-check of a wall-time difference.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-800:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def child_env(threads: int) -> dict[str, str]:
    """The environment of every child process: same threads, no TK_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TK_")}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def tk_command() -> list[str]:
    """The installed ``tk`` console script next to this Python, else ``python -m toolkit``."""
    script = Path(sys.executable).with_name("tk")
    return [str(script)] if script.exists() else [sys.executable, "-m", "toolkit"]
