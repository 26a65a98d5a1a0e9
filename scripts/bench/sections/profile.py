"""Section 6: torch.profiler over one tk epoch."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from ..baselines import fashion_mlp
from ..report import fmt, table
from ..workloads import fashion_data, fashion_recipe, fashion_tensors

GROUPS = {
    "matrix multiplies (addmm, mm)": ("aten::addmm", "aten::mm"),
    "batch gather (index, index_select)": ("aten::index", "aten::index_select"),
    "uint8->float conversion and scaling (copy_, to, mul_)": (
        "aten::copy_",
        "aten::_to_copy",
        "aten::mul_",
    ),
    "optimizer (add_)": ("aten::add_",),
}


def quiet() -> Any:
    """A context that keeps the profiler's C++ log lines (no GPU here) off stderr."""
    try:
        from toolkit.formats.runtime import quiet_native
    except ImportError:
        return contextlib.nullcontext()
    return quiet_native()


def profiled_epoch(n_train: int) -> tuple[list[Any], float]:
    """The profiler's events of one tk epoch (after a warm-up one), and its wall time."""
    from torch.profiler import ProfilerActivity, profile

    from toolkit.train import fit

    t = fashion_tensors(n_train, max(1, n_train // 6))
    data, recipe = fashion_data(t), fashion_recipe()
    small = fashion_data({k: v[:640] for k, v in t.items()})
    fit(fashion_mlp(), small, recipe, task="multiclass", seed=0)  # warm-up
    with quiet(), profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        fit(fashion_mlp(), data, recipe, task="multiclass", seed=0)
        wall = time.perf_counter() - start
    events = [e for e in prof.key_averages() if not e.key.startswith("ProfilerStep")]
    return events, wall


def measure(sizes: Any, threads: int, tmp: Path) -> tuple[dict[str, Any], list[str]]:
    """Top operators by self time, grouped, and the share outside aten."""
    events, wall = profiled_epoch(sizes.profile_train)
    total_self = sum(e.self_cpu_time_total for e in events)  # µs
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    rows = [
        [
            f"`{e.key}`",
            e.count,
            fmt(e.self_cpu_time_total / 1e3),
            f"{100 * e.self_cpu_time_total / total_self:.1f}%",
        ]
        for e in top
    ]
    by_key = {e.key: e.self_cpu_time_total for e in events}
    group_rows = []
    for name, keys in GROUPS.items():
        us = sum(by_key.get(k, 0) for k in keys)
        group_rows.append([name, fmt(us / 1e3), f"{100 * us / total_self:.1f}%"])
    lines = [
        "## 6. Profile of one tk epoch",
        "",
        f"`torch.profiler` (CPU) around `fit()` for one epoch of {sizes.profile_train:,} "
        f"FashionMNIST-shaped images: {fmt(wall)} s wall under the profiler, "
        f"{fmt(total_self / 1e6)} s inside aten operators (self time); the rest "
        f"({fmt(100 * (1 - total_self / 1e6 / wall))}%) is Python and the profiler's own "
        "per-op overhead. Top operators by self time:",
        "",
        *table(["operator", "calls", "self ms", "share"], rows),
        "",
        "Grouped (`aten::add_` is mostly SGD's update, plus the metric sums):",
        "",
        *table(["group", "self ms", "share"], group_rows),
        "",
    ]
    return {"wall": wall, "ops": total_self / 1e6}, lines


def goals(figures: dict[str, Any]) -> list:
    """No goal of its own."""
    return []
