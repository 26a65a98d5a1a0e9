"""Timing several ways of doing one job fairly: interleaved rounds and latency percentiles.

``tk bench`` (and the benchmark scripts, which keep their own copy under
``scripts/bench/timing.py``) time every variant round-robin, one call each in
turn, with the order rotated every round: a burst of load from another process
then hits all of them alike, instead of whichever happened to run during it.

Pure Python, no toolkit imports: importing it costs nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

PERCENTILES = (50, 90, 99)


def interleave(
    variants: dict[str, Callable[[], Any]], rounds: int, min_seconds: float = 0.0
) -> dict[str, list[float]]:
    """Wall seconds of each variant per round, timed round-robin with a rotated order.

    Runs ``rounds`` rounds, and more until ``min_seconds`` have passed.
    """
    names = list(variants)
    times: dict[str, list[float]] = {k: [] for k in names}
    start = time.perf_counter()
    r = 0
    while r < rounds or time.perf_counter() - start < min_seconds:
        # Rotating the order keeps any variant from always running right after
        # (or before) a particular other one.
        shift = r % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - t0)
        r += 1
    return times


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency(values: Sequence[float], rows: int) -> dict[str, float]:
    """p50/p90/p99 in milliseconds and rows per second (at the median) of one batch size."""
    out = {f"p{q}_ms": 1e3 * percentile(values, q) for q in PERCENTILES}
    p50 = percentile(values, 50)
    out["rows_per_s"] = rows / p50 if p50 > 0 else math.nan
    out["rounds"] = len(values)
    return out
