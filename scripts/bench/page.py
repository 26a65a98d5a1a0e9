"""The markdown page: header, goals (and why the missed ones missed), sections."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .report import Goal, Report, fmt, table
from .sections import circle, fashion, inference
from .timing import REPO, median, paired_ratio

DEFAULT_OUT = REPO / "docs" / "benchmarks.md"

# What the earlier pages proposed for the training loop; all of it is in the loop now.
ADOPTED = (
    "fused Adam/AdamW",
    "`index_select` for the batch gather",
    "evaluation batches bounded in elements",
    "fewer tiny ops per epoch (row counts stay Python ints until the log point, the "
    "first evaluation batch is the evaluation's accumulator)",
)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else the platform's processor string."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


# ===================================================================== why missed
def _why_circle_loop(goal: Goal, data: dict[str, Any]) -> str:
    c = data["circle"]
    per = (median(c["times"][circle.TK]) - median(c["times"][circle.PLAIN])) / c["epochs"]
    same_optimizer = paired_ratio(c["times"], circle.TK, circle.FUSED)
    return (
        f"tk spends {fmt(per * 1e6)} µs more per epoch than the plain loop (medians). "
        "A full-batch epoch is one step, so every per-epoch tensor op and Python call "
        "counts against a sub-millisecond epoch. Against a plain loop with fused Adam "
        f"(the optimizer tk builds) tk is {fmt(same_optimizer)}x: the rest is Python "
        "structure (the batch generator, the evaluate call, the metric helper, the "
        "precision context, the stop check), tens of µs per epoch."
    )


def _why_circle_process(goal: Goal, data: dict[str, Any]) -> str:
    p = data["circle"]["process"]
    cpu, wall = median(p["cpu"]), median(p["wall"])
    if abs(cpu - wall) < 0.15:
        lead = f"the CPU-time difference ({fmt(cpu)} s) matches the wall one: it is work"
    else:
        lead = (
            f"the CPU-time difference is {fmt(cpu)} s against {fmt(wall)} s of wall time, "
            "so part of the gap is contention; the work"
        )
    return (
        f"{lead}: tk imports typer, pluggy and its modules (~0.1 s, see "
        "`tk --help` in section 3), discovers its plugins, runs the loop of the row "
        "above, and writes the run directory; and more imported modules make the "
        "interpreter's final garbage collections longer (the console script freezes the "
        f"heap at exit; through a wrapper that does the same: {fmt(median(p['freeze']))} s)."
    )


def _why_fashion(goal: Goal, data: dict[str, Any]) -> str:
    c = data["fashion"]["costs"]
    text = (
        "tk keeps the images as uint8 and gathers each batch with index_select before "
        f"converting it: {fmt(c[fashion.GATHER_TK] * 1e6)} µs/step against "
        f"{fmt(c[fashion.GATHER_HAND] * 1e6)} µs for the hand loop's float32 gather "
        f"(advanced indexing of the uint8 rows: {fmt(c[fashion.GATHER_INDEXING] * 1e6)} µs)"
    )
    return text + (f"; {goal.detail}." if goal.detail else ".")


def _why_predict(goal: Goal, data: dict[str, Any]) -> str:
    parts = []
    for name, p in data["predict"].get("pieces", {}).items():
        output = sum(p.get(k, 0.0) for k in inference.OUTPUT_PIECES)
        parts.append(
            f"{name}: {fmt(output * 1e3)} ms of output against "
            f"{fmt(p['runner.run'] * 1e3)} ms of onnxruntime run"
        )
    split = "; ".join(parts)
    return (
        "the model run is the same; the difference is Python per row: `tk predict` turns "
        "the outputs into one dict per row (with every class probability as a Python "
        "list) and formats an aligned table from them, while the raw script formats "
        "numpy arrays directly" + (f" ({split})" if split else "") + f". Per model: {goal.detail}."
    )


def _why_memory(goal: Goal, data: dict[str, Any]) -> str:
    m = data["memory"]
    tk = m["results"]["tk"]["steps"]
    own = tk["data"] + tk["epoch"]
    return (
        f"{fmt(tk['torch._dynamo'])} MB of it is `torch._dynamo`, which torch.optim "
        "imports when the first optimizer is built (any loop using torch.optim pays "
        f"it, the hand-written one included), and {fmt(tk['warm-up'])} MB is first-use "
        f"warm-up; the data and the epoch itself take {fmt(own)} MB "
        f"({fmt(own / m['budget'])} x the limit)."
    )


def _why_selection(goal: Goal, data: dict[str, Any]) -> str:
    return (
        "per epoch, tk copies the validation metrics to the host, steps the scheduler and "
        f"compares with the best; {goal.detail}."
    )


def _why_tutorial(goal: Goal, data: dict[str, Any]) -> str:
    return "the tutorial path is unusually fast on this run (its PIL+ToTensor cost)."


def _why_startup(goal: Goal, data: dict[str, Any]) -> str:
    return f"the command's imports ({goal.detail}) and Python start-up on a loaded CPU."


# goal key -> (the section whose figures it needs, or "", the reason it was missed)
WHY: dict[str, tuple[str, Callable[[Goal, dict[str, Any]], str]]] = {
    "circle-loop": ("circle", _why_circle_loop),
    "circle-process": ("circle", _why_circle_process),
    "circle-selection": ("", _why_selection),
    "fm-tutorial": ("", _why_tutorial),
    "fm-hand": ("fashion", _why_fashion),
    "fm-bound": ("fashion", _why_fashion),
    "startup-help": ("", _why_startup),
    "startup-list": ("", _why_startup),
    "predict": ("predict", _why_predict),
    "memory": ("memory", _why_memory),
}


def why(goal: Goal, data: dict[str, Any]) -> str:
    """The reason a goal was missed, from what the sections measured."""
    if math.isnan(goal.measured):
        return goal.detail or "not measured"
    section, reason = WHY.get(goal.key, ("", None))
    if reason is None or (section and section not in data):
        return goal.shortfall()
    return reason(goal, data)


# =========================================================================== page
def header(args: Any, seconds: float, load: list[float]) -> list[str]:
    """Title, the command that produced the page, the machine, the method."""
    import numpy as np
    import onnxruntime
    import torch
    import torchvision

    full = not args.quick and Path(args.out) == DEFAULT_OUT
    cmd = "make bench" if full else "python scripts/bench " + " ".join(args.argv)
    return [
        "# Benchmarks: the shared loop against hand-written loops",
        "",
        "Produced by:",
        "",
        f"    {cmd}    # .venv/bin/python scripts/bench{' --quick' if args.quick else ''}",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, numpy {np.__version__}, onnxruntime "
        f"{onnxruntime.__version__}. torch runs {args.threads} intra-op thread(s) here and in "
        f"every child process (OMP_NUM_THREADS={args.threads}). "
        f"Date {time.strftime('%Y-%m-%d %H:%M')}; the whole run took {seconds:.0f} s.",
        "",
        f"Load average (1 min) at start {load[0]:.2f}, at end {load[1]:.2f}: other "
        "processes shared the CPU. Absolute times move from run to run; every comparison "
        "is timed interleaved in this one run (one call of each variant per round, the "
        "order rotated), and ratios are medians of per-round ratios.",
        "",
    ]


def goal_lines(report: Report) -> list[str]:
    """The goals table, then each missed goal with its shortfall and reason."""
    rows = []
    for g in report.goals:
        sign = ">=" if g.higher_is_better else "<="
        measured = f"{fmt(g.measured)} {g.unit}"
        if g.unit == "x":
            measured = f"ratio: {measured}"
        met = "met" if g.met else "**missed**"
        rows.append([g.text, f"{sign} {fmt(g.limit)} {g.unit}", measured, met, g.detail])
    header_row = ["goal", "limit", "measured", "", "note"]
    lines = ["## Goals", "", *table(header_row, rows, left=len(header_row)), ""]
    missed = [g for g in report.goals if not g.met]
    if missed:
        lines += ["Missed goals, by how much and why:", ""]
        lines += [f"- **{g.text}**: {g.shortfall()}; {why(g, report.data)}" for g in missed]
        lines.append("")
    return lines


def time_budget(report: Report) -> list[str]:
    """Where one tk FashionMNIST-shaped epoch's time goes, from the measured pieces."""
    fm = report.data.get("fashion")
    if not fm:
        return []
    tk_s = median(fm["times"][fashion.TK])
    steps, costs = fm["steps"], fm["costs"]
    pieces = [
        ("forward+backward+step (compute bound, train)", fm["bound_steps"]),
        ("test-set forward (compute bound, eval)", fm["bound_eval"]),
        ("batch gather (index_select) + uint8->float", costs[fashion.GATHER_TK] * steps),
        ("metrics on the device", costs[fashion.METRICS] * steps),
        ("per-step loss.item()", costs[fashion.ITEM] * steps),
    ]
    rest = tk_s - sum(s for _, s in pieces)
    pieces.append(("the rest: Python loop, generators, allocator, cache effects", rest))
    rows = [[k, fmt(s), f"{100 * s / tk_s:.1f}%"] for k, s in pieces]
    return [
        "### Where the time of one tk epoch goes",
        "",
        f"The median tk epoch ({fmt(tk_s)} s, section 2) split into the measured pieces "
        "(compute from the fixed-batch bound, the rest from the per-step micro-timings "
        "x steps); *the rest* is the difference and carries the run's noise.",
        "",
        *table(["piece", "seconds", "share"], rows),
        "",
    ]


def patch_lines(report: Report) -> list[str]:
    """What is left of the patch the earlier pages proposed: nothing."""
    lines = [
        "## The suggested patch",
        "",
        "Nothing is left to patch. Every change the earlier pages proposed for the "
        "training loop is adopted in the loop itself: " + "; ".join(ADOPTED) + ". The "
        "*tk fit()* rows above include all of them. The `gc.freeze()` at exit proposed for "
        "`cli.main` is adopted too (section 1's process table).",
    ]
    if report.data.get("toolkit_changed"):
        lines += [
            "",
            "**toolkit/ changed while this ran** (another edit in the tree: "
            + ", ".join(report.data["toolkit_changed"][:5])
            + "): sections may have measured different versions; run `make bench` again.",
        ]
    return [*lines, ""]


OTHER_PAGES = [
    "## Other benchmark pages",
    "",
    "Measured by their own scripts (each page names its command and machine):",
    "",
    "- [benchmarks-data.md](benchmarks-data.md) (`scripts/bench_data.py`): the `csv` loader on "
    "1,000,000 rows x 20 columns vs `pyarrow.csv.read_csv` alone (goal < 3x), and `imagefolder` "
    "epochs on 10,000 32x32 PNGs vs torchvision's ImageFolder + DataLoader (goal >= 1.0x).",
    "- [benchmarks-export.md](benchmarks-export.md) (`scripts/bench_export.py`): fp32, int8 and "
    "fp16 ONNX, TorchScript, pt2 and eager per model and batch size: latency, size, agreement.",
    "- [benchmarks-runs.md](benchmarks-runs.md) (`scripts/bench_runs.py`): `tk runs` over "
    "1,000 run directories (goal <= 1 s).",
    "",
]


def render(report: Report, args: Any, seconds: float, load: list[float]) -> str:
    """The markdown page."""
    lines = header(args, seconds, load)
    if args.quick:
        lines += [
            "**--quick**: reduced sizes (fewer epochs, images and rounds) for a smoke "
            "test; the goals' conditions are those of the full run.",
            "",
        ]
    lines += goal_lines(report)
    lines += report.sections
    lines += time_budget(report)
    lines += patch_lines(report)
    lines += OTHER_PAGES + data_tables()
    return "\n".join(lines)


def data_tables() -> list[str]:
    """The data-loading goals' tables, as benchmarks-data.md last measured them."""
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-data.md"
    if not page.is_file():
        return []
    out = ["### Data loading, from benchmarks-data.md", ""]
    for line in page.read_text().splitlines():
        if line.startswith("## "):
            out += ["", f"**{line[3:]}**", ""]
        elif line.startswith("|"):
            out.append(line)
    return [*out, ""]
