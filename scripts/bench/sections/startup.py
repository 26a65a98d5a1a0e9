"""Section 3: wall time of listing commands vs importing typer and torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from ..report import Goal, fmt, table
from ..timing import child_env, interleave, median, run_process, tk_command

# Prints which heavy modules a tk command imported (the startup promise).
IMPORT_PROBE = """
import sys
from toolkit.cli import main
try:
    main({args!r})
except SystemExit:
    pass
heavy = [m for m in ("torch", "onnx", "onnxruntime", "torchvision") if m in sys.modules]
print("PROBE", ",".join(heavy) or "-", file=sys.stderr)
"""

PROBES = {
    "tk --help": ["--help"],
    "tk list models": ["list", "models"],
    "tk plugins": ["plugins"],
}


def heavy_imports(env: dict[str, str], tmp: Path) -> dict[str, str]:
    """Which of torch, onnx, onnxruntime and torchvision each tk command imported."""
    imported = {}
    for name, args in PROBES.items():
        proc = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE.format(args=args)],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        probe = [ln for ln in proc.stderr.splitlines() if ln.startswith("PROBE")]
        imported[name] = probe[-1].split(" ", 1)[1] if probe else "probe failed"
    return imported


def measure(sizes: Any, threads: int, tmp: Path) -> tuple[dict[str, Any], list[str]]:
    """Each command as a fresh process, interleaved rounds after a warm-up round."""
    env = child_env(threads)
    tk, py = tk_command(), sys.executable
    commands = {name: [*tk, *args] for name, args in PROBES.items()}
    commands |= {
        'python -c "pass"': [py, "-c", "pass"],
        'python -c "import typer"': [py, "-c", "import typer"],
        'python -c "import torch"': [py, "-c", "import torch"],
    }
    variants = {k: (lambda c=c: run_process(c, env, tmp)) for k, c in commands.items()}
    interleave(variants, 1)  # warm-up: the OS file cache
    times, _ = interleave(variants, sizes.startup_rounds)
    imported = heavy_imports(env, tmp)
    rows = [
        [k, fmt(median(v)), fmt(min(v)), fmt(max(v)), imported.get(k, "")] for k, v in times.items()
    ]
    lines = [
        "## 3. Startup",
        "",
        f"Wall time of each command as a fresh process, {sizes.startup_rounds} interleaved "
        "rounds after a warm-up round. *heavy imports* lists which of torch, onnx, "
        "onnxruntime and torchvision the command imported (`-`: none).",
        "",
        *table(["command", "median s", "min s", "max s", "heavy imports"], rows),
        "",
    ]
    return {"times": times, "imported": imported}, lines


def goals(figures: dict[str, Any]) -> list[Goal]:
    """`tk --help` and `tk list models` wall times."""
    times, imported = figures["times"], figures["imported"]
    return [
        Goal(
            "startup-help",
            "`tk --help` wall time (median)",
            median(times["tk --help"]),
            0.25,
            "s",
            higher_is_better=False,
            detail=f"imports: {imported['tk --help']}",
        ),
        Goal(
            "startup-list",
            "`tk list models` wall time (median)",
            median(times["tk list models"]),
            0.5,
            "s",
            higher_is_better=False,
            detail=f"imports: {imported['tk list models']}",
        ),
    ]
