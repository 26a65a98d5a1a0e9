"""Benchmark: ``tk runs --json`` over 1,000 run directories (the goal: <= 1 s, no torch).

Usage::

    .venv/bin/python scripts/bench_runs.py [--runs 1000] [--repeat 7] [--out FILE.md]

The run directories are fake but valid: each has the files a real run leaves
(``config.json``, ``status.json``, ``summary.json``, ``metrics.jsonl`` of 100
epochs, ``metrics.csv``, a 40 KB ``model.safetensors`` and two checkpoints), over
five models, with a tenth of them interrupted (a ``running`` status whose process
is gone) and some failed. ``tk runs --json`` runs as a subprocess, the way a user
runs it; the figure is the median wall time of ``--repeat`` calls, after one
warm-up call (which fills the page cache, as for a user's second look).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("circle", "digits-mlp", "digits-cnn", "linear-regression", "xor-mlp")


def _config(model: str, i: int) -> dict:
    task = "regression" if model == "linear-regression" else "binary"
    return {
        "model": model,
        "params": {"hidden": 8 + i % 4},
        "dataset": "data-" + model,
        "data_params": {"seed": i},
        "task": task,
        "input": {"name": "input", "shape": ["batch", 2], "dtype": "float32"},
        "outputs": 1,
        "recipe": {"optimizer": "adam", "lr": 0.01, "epochs": 100, "batch_size": "full"},
        "seed": i,
        "device": "cpu",
        "versions": {"tk": "0.1.0", "torch": "2.x", "python": platform.python_version()},
        "created": "2026-12-01T10:00:00+0000",
    }


def _row(model: str, epoch: int) -> dict:
    metric = "mae" if model == "linear-regression" else "accuracy"
    value = 1 / epoch
    return {
        "epoch": epoch,
        "train_loss": value,
        f"train_{metric}": 1 - value / 2,
        "val_loss": value * 1.1,
        f"val_{metric}": 1 - value / 1.5,
        "lr": 0.01,
    }


def make_fake_runs(root: Path, n: int, epochs: int = 100) -> list[Path]:
    """``n`` valid run directories under ``root/MODEL/NAME``; returns their paths."""
    out = []
    for i in range(n):
        model = MODELS[i % len(MODELS)]
        run = root / model / f"20261201-{i:06d}"
        (run / "checkpoints").mkdir(parents=True)
        rows = [_row(model, e) for e in range(1, epochs + 1)]
        started = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(1_795_000_000 + 60 * i))
        state = "interrupted" if i % 10 == 3 else "failed" if i % 25 == 7 else "finished"
        files = {
            "config.json": json.dumps(_config(model, i), indent=2),
            "metrics.jsonl": "".join(json.dumps(r) + "\n" for r in rows),
            "metrics.csv": "\n".join(",".join(map(str, r.values())) for r in rows),
            "status.json": json.dumps(
                {
                    # An interrupted run is one killed mid-way: "running", its pid gone.
                    "status": "running" if state == "interrupted" else state,
                    "pid": 2**22 + i,
                    "host": "bench-host" if state != "interrupted" else platform.node(),
                    "started": started,
                    "ended": None if state == "interrupted" else started,
                    "error": "loss became nan at epoch 3" if state == "failed" else None,
                }
            ),
        }
        if state == "finished":
            summary = {"model": model, "epochs": epochs, "seconds": 1.0, "final": rows[-1]}
            summary["test"] = {"loss": 0.1, "accuracy": 0.9 + (i % 7) / 100, "rows": 200}
            summary["selected"] = {"epoch": epochs, "monitor": "val_loss", "value": 0.1}
            files["summary.json"] = json.dumps(summary, indent=2)
            (run / "model.safetensors").write_bytes(b"\0" * 40_000)
        for name, text in files.items():
            (run / name).write_text(text)
        for epoch in (epochs // 2, epochs):
            (run / "checkpoints" / f"epoch-{epoch:06d}.safetensors").write_bytes(b"\0" * 80_000)
        out.append(run)
    return out


def time_command(args: list[str], repeat: int) -> list[float]:
    """Wall times of ``tk ARGS`` as a subprocess (after one warm-up call)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("TK_RUNS_DIR", None)
    argv = [sys.executable, "-m", "toolkit", *args]
    subprocess.run(argv, capture_output=True, check=True, env=env)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True, env=env)
        times.append(time.perf_counter() - start)
    return times


def count_listed(root: Path) -> int:
    """How many runs ``tk runs --json`` lists."""
    argv = [sys.executable, "-m", "toolkit", "runs", "--json", "--runs-dir", str(root)]
    return len(json.loads(subprocess.run(argv, capture_output=True, check=True).stdout))


def _no_torch(root: Path) -> bool:
    probe = (
        "import sys; from toolkit.cli import main\n"
        f"try: main(['runs', '--json', '--runs-dir', {str(root)!r}])\n"
        "except SystemExit: pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return proc.stderr.strip().endswith("NO-TORCH")


def page(n: int, listed: int, figures: dict[str, list[float]], no_torch: bool, took: float) -> str:
    """The markdown page with the figures and how they were made."""
    med = {k: statistics.median(v) for k, v in figures.items()}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = [
        (f"`tk runs --json` over {n:,} runs, wall time (median)", "<= 1 s", med["json"]),
        (f"`tk runs` (the table) over {n:,} runs, wall time (median)", "<= 1 s", med["table"]),
        ("`tk --help`, for scale: the interpreter and the command line", "-", med["help"]),
    ]
    lines = [
        f"| {what} | {limit} | {value:.3f} s | {'-' if limit == '-' else _verdict(value)} |"
        for what, limit, value in rows
    ]
    calls = ", ".join(f"{t:.3f}" for t in figures["json"])
    return f"""# Runs listing benchmark

Produced by:

    .venv/bin/python scripts/bench_runs.py --runs {n}

Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()};
Python {platform.python_version()}. Date {time.strftime("%Y-%m-%d %H:%M")}; load average
(1 min) {load:.2f}; the whole run took {took:.0f} s.

## Runs listing

`tk runs` as a subprocess, the way a user runs it, over {n:,} fake but valid run
directories (five models; each with config, status, summary, 100 epochs of
metrics, weights and two checkpoints; a tenth killed mid-run, some failed); the
median of {len(figures["json"])} calls after one warm-up call.

| goal | limit | measured |  |
| :--- | :--- | :--- | :--- |
{chr(10).join(lines)}

`tk runs --json` calls: {calls} s; runs listed: {listed:,}; torch imported:
{"no" if no_torch else "**yes**"}. Above `tk --help`, about 0.1 s goes to parsing the
options (typer's converters, paid by any command with options: `tk runs` over an
empty root takes about 0.2 s) and the rest to the runs: per run, three small JSON
files, one `os.scandir` of the run directory and of each folder in it (no
checkpoint is opened), and for a run without `summary.json` the last 8 KB of
`metrics.jsonl`.
"""


def _verdict(seconds: float) -> str:
    return "met" if seconds <= 1.0 else "**missed**"


def main(argv: list[str] | None = None) -> int:
    """Make the runs, time the listing, write the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", default="docs/benchmarks-runs.md")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        make_fake_runs(root, args.runs)
        listed = count_listed(root)
        figures = {
            "json": time_command(["runs", "--json", "--runs-dir", str(root)], args.repeat),
            "table": time_command(["runs", "--runs-dir", str(root)], args.repeat),
            "help": time_command(["--help"], args.repeat),
        }
        no_torch = _no_torch(root)
    text = page(args.runs, listed, figures, no_torch, time.perf_counter() - start)
    Path(args.out).write_text(text)
    print(text)
    return 0 if listed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
