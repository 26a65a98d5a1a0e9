"""Smoke test of the benchmarks: `scripts/bench --quick` writes a complete page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SECTIONS = (
    "## Goals",
    "## 1. circle",
    "### The whole process",
    "## 1b. circle with model selection",
    "## 2. FashionMNIST-shaped epoch",
    "## 3. Startup",
    "## 4. Inference",
    "## 5. Peak memory of one epoch",
    "## 6. Profile of one tk epoch",
    "### Where the time of one tk epoch goes",
    "## The suggested patch",
)

# One row of the goals table per goal of the issue, each with its measured figure.
GOALS = (
    r"cosine \+ validation: tk loop / plain loop doing the same \| <= 1\.05 x \| ratio: [0-9.]+ x",
    r"tk loop / plain loop \| <= 1\.1 x \| ratio: [0-9.]+ x",
    r"`tk train circle` process - plain script process .*\| <= 0\.5 s \| -?[0-9.]+ s",
    r"tk samples/s / tutorial path samples/s \| >= 2 x \| ratio: [0-9.]+ x",
    r"tk samples/s / hand-written in-memory loop \| >= 0\.95 x \| ratio: [0-9.]+ x",
    r"tk samples/s / compute bound \| >= 0\.7 x \| ratio: [0-9.]+ x",
    r"`tk --help` wall time \(median\) \| <= 0\.25 s \| [0-9.]+ s",
    r"`tk list models` wall time \(median\) \| <= 0\.5 s \| [0-9.]+ s",
    r"`tk predict` / raw onnxruntime at batch 1024 .*\| <= 1\.1 x \| ratio: ([0-9.]+|n/a) x",
    r"peak memory of one epoch above `import torch` .*\| <= [0-9.]+ MB \| [0-9.]+ MB",
)


@pytest.mark.slow
def test_bench_quick_writes_every_section_and_goal(tmp_path):
    out = tmp_path / "bench.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TK_")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench"), "--quick", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = out.read_text()
    for heading in SECTIONS:
        assert heading in page, f"missing section {heading!r}"
    assert "failed:" not in page
    for pattern in GOALS:
        assert re.search(pattern, page), f"no goal line matching {pattern!r}"
    # n/a is only allowed where the inference section says why it was skipped.
    if "ratio: n/a x" in page:
        assert "skipped: tk predict not available" in page
    rows = goal_rows(page)
    assert len(rows) == len(GOALS)
    for goal, op, limit, measured, verdict in rows:
        if measured is None or measured == limit:  # n/a, or rounded onto the limit
            continue
        # Every figure is a real measurement, and its verdict is the comparison's.
        assert measured == measured and abs(measured) < 1e6, goal
        if "ratio" in goal or "/" in goal:
            assert measured > 0, goal
        met = measured <= limit if op == "<=" else measured >= limit
        assert verdict == ("met" if met else "**missed**"), (goal, measured, op, limit, verdict)
        if not met:
            assert f"- **{goal}**: missed by" in page, goal


def goal_rows(page: str) -> list[tuple[str, str, float, float | None, str]]:
    """(goal, <= or >=, limit, measured or None for n/a, verdict) of the goals table."""
    table = page.split("## Goals", 1)[1].split("\n\n", 2)[1]
    rows = []
    for line in table.splitlines()[2:]:
        goal, limit, measured, verdict = (c.strip() for c in line.strip("|").split("|")[:4])
        op, value = re.fullmatch(r"(<=|>=) (-?[0-9.]+) \S+", limit).groups()
        number = re.search(r"(-?[0-9.]+|n/a) (x|s|MB)$", measured)
        assert number, (goal, measured)
        got = None if number.group(1) == "n/a" else float(number.group(1))
        rows.append((goal, op, float(value), got, verdict))
    return rows
