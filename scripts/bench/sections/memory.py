"""Section 5: each variant's epoch in a fresh child process, peak memory measured there."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..baselines import fashion_mlp, hand_epoch, param_bytes
from ..report import MB, Goal, fmt, table
from ..timing import child_env
from ..workloads import fashion_data, fashion_recipe, fashion_tensors

PACKAGE = Path(__file__).resolve().parents[1]  # scripts/bench: runs as a script
LABELS = {"tk": "tk fit()", "hand": "hand-written in-memory loop"}


def _status_kib(key: str) -> int:
    """A ``/proc/self/status`` figure in KiB (VmRSS, VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def epoch_fn(variant: str) -> Callable[[dict[str, torch.Tensor]], None]:
    """One epoch of ``variant`` ("tk" or "hand") on a set of tensors."""
    if variant == "hand":
        return lambda t: hand_epoch(t, fashion_mlp())
    from toolkit.train import fit

    recipe = fashion_recipe()

    def epoch(t: dict[str, torch.Tensor]) -> None:
        fit(fashion_mlp(), fashion_data(t), recipe, task="multiclass", seed=0)

    return epoch


def reset_high_water_mark() -> bool:
    """Reset VmHWM ("5" to clear_refs); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def child(variant: str, n_train: int, threads: int) -> None:
    """Child process: peak RSS of one epoch above the RSS right after ``import torch``.

    Prints one JSON line with the steps in between, so the page can say what is the
    loop's own and what is torch's fixed cost. ``torch`` is already imported (this
    module imports it first).
    """
    torch.set_num_threads(threads)
    epoch = epoch_fn(variant)
    rss = {"import torch": _status_kib("VmRSS")}
    # torch.optim imports torch._dynamo the first time an optimizer is built (its
    # add_param_group is wrapped by torch._compile._disable_dynamo): a fixed cost of
    # any loop using torch.optim, measured apart by importing it first.
    importlib.import_module("torch._dynamo")
    rss["torch._dynamo"] = _status_kib("VmRSS")
    # A tiny epoch first: lazy imports, kernel and allocator first use (fixed costs).
    epoch(fashion_tensors(640, 64))
    rss["warm-up"] = _status_kib("VmRSS")
    t = fashion_tensors(n_train, max(1, n_train // 6))
    rss["data"] = _status_kib("VmRSS")
    # The dataset is resident, so it is inside the peak, as the goal counts it.
    reset = reset_high_water_mark()
    epoch(t)
    rss["peak"] = _status_kib("VmHWM")
    record = {
        "rss_bytes": {k: v * 1024 for k, v in rss.items()},
        "dataset_bytes": t["x_train"].numel(),
        "test_bytes": t["x_test"].numel(),
        "param_bytes": param_bytes(fashion_mlp()),
        "hwm_reset": reset,
    }
    print(json.dumps(record))


def run_child(variant: str, sizes: Any, threads: int, tmp: Path) -> dict[str, Any]:
    """One variant in a fresh process; its record with each step's increase in MB."""
    cmd = [sys.executable, str(PACKAGE), "--child-memory", variant]
    cmd += ["--n-train", str(sizes.memory_train), "--threads", str(threads)]
    env = child_env(threads)
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {variant} failed: {proc.stderr[-800:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    b = r["rss_bytes"]
    # Each step's increase, in MB; "epoch" is the peak above the loaded data.
    r["steps"] = {
        "torch._dynamo": (b["torch._dynamo"] - b["import torch"]) / MB,
        "warm-up": (b["warm-up"] - b["torch._dynamo"]) / MB,
        "data": (b["data"] - b["warm-up"]) / MB,
        "epoch": (b["peak"] - b["data"]) / MB,
        "total": (b["peak"] - b["import torch"]) / MB,
    }
    return r


def measure(sizes: Any, threads: int, tmp: Path) -> tuple[dict[str, Any], list[str]]:
    """Every variant's child; the limit from the first one's dataset and parameters."""
    results = {v: run_child(v, sizes, threads, tmp) for v in sizes.memory_variants}
    first = results[sizes.memory_variants[0]]
    budget = (2 * first["dataset_bytes"] + 4 * first["param_bytes"]) / MB
    figures = {"results": results, "budget": budget, "n_train": sizes.memory_train}
    return figures, lines(figures, first)


def goals(figures: dict[str, Any]) -> list[Goal]:
    """tk's peak above `import torch` against 2 x data + 4 x parameters."""
    tk, budget = figures["results"]["tk"]["steps"], figures["budget"]
    own = tk["data"] + tk["epoch"]
    return [
        Goal(
            "memory",
            f"peak memory of one epoch above `import torch` ({figures['n_train']:,} images)",
            tk["total"],
            budget,
            "MB",
            higher_is_better=False,
            detail=f"torch._dynamo {fmt(tk['torch._dynamo'])} MB + warm-up "
            f"{fmt(tk['warm-up'])} MB; data + epoch alone: {fmt(own)} MB "
            f"= {fmt(own / budget)} x the limit",
        )
    ]


def lines(figures: dict[str, Any], first: dict[str, Any]) -> list[str]:
    """The table of each variant's steps and how they were measured."""
    budget = figures["budget"]
    rows = []
    for variant, r in figures["results"].items():
        st = r["steps"]
        rows.append(
            [
                LABELS[variant],
                *(fmt(st[k]) for k in ("torch._dynamo", "warm-up", "data", "epoch", "total")),
                fmt(st["total"] / budget),
                fmt((st["data"] + st["epoch"]) / budget),
            ]
        )
    header = ["variant", "torch._dynamo", "warm-up", "data", "epoch", "total above base"]
    out = [
        "## 5. Peak memory of one epoch",
        "",
        "Each variant in a fresh child process, RSS measured after each step (MB = 10^6 "
        "bytes): `import torch` (the base); `import torch._dynamo` (torch.optim imports "
        "it the first time any optimizer is built, so every variant pays it; importing it "
        "first measures it apart); a warm-up epoch on 640 images (lazy imports, first use "
        "of kernels and allocator); the data "
        f"({figures['n_train']:,} training and {first['test_bytes'] // 784:,} test "
        "images, uint8); then the high-water mark is reset and one epoch runs; *epoch* is "
        "its peak (VmHWM) above the loaded data. The goal counts everything above the "
        "base. Limit: 2 x the training set's uint8 size "
        f"({fmt(first['dataset_bytes'] / MB)} MB) + 4 x the parameters "
        f"({fmt(first['param_bytes'] / MB)} MB) = **{fmt(budget)} MB**.",
        "",
        *table([*header, "x limit", "data + epoch, x limit"], rows),
        "",
    ]
    if not first["hwm_reset"]:
        out += ["(The high-water mark could not be reset: the peak includes data setup.)", ""]
    return out
