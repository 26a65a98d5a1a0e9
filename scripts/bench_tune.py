"""Benchmark: ``tk tune`` against tk's default recipe, ``--jobs 1`` vs ``--jobs 2``,
the share of trials pruned, and ``tk lr-find`` against the lr a study found.

Usage::

    .venv/bin/python scripts/bench_tune.py [--trials 20] [--seeds 0,1,2] [--out FILE.md]

For wine (scikit-learn's own ``wine_data.csv`` through the ``csv`` dataset, the ``mlp``
model) and ``digits-cnn``: one study of ``--trials`` trials per seed (the sampler's
seed and every trial's training seed; TPE, median pruning, the recipe's epochs),
and ``tk train`` with the default recipe and the same seed. The best trial is chosen
by validation loss; the figure is its test accuracy, read once, as the default run's
is. Then ``tk lr-find``'s suggestion against the lr of each study's best trial, and
the wall time of ``--trials`` wine trials with ``--jobs 1`` and ``--jobs 2`` (random
sampler, no pruning, a space whose trials all cost the same), in one run.

Every command is a real ``tk`` process in a scratch directory. The studies run
with ``OMP_NUM_THREADS=1``: on a 2-core machine shared with other work, two intra-op
threads per process made a digits-cnn epoch 15x slower (threads spin-waiting for a
core). The ``--jobs`` comparison runs as a user would, without it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sklearn

WINE = Path(sklearn.__file__).parent / "datasets" / "data" / "wine_data.csv"
TASKS = {
    "wine": {
        "model": ["mlp", "--dataset", "csv", "--data-param", f"path={WINE}",
                  "--data-param", "target=target"],
        "space": ["lr=log(1e-4,3e-2)", "weight-decay=log(1e-6,1e-2)",
                  "param.hidden=choice(32,128,'64,64','128,128')", "param.dropout=float(0,0.5)",
                  "batch-size=choice(16,32,64)"],
    },
    "digits-cnn": {
        "model": ["digits-cnn"],
        "space": ["lr=log(1e-4,1e-2)", "weight-decay=log(1e-6,1e-3)",
                  "param.channels=choice(8,16,32)", "batch-size=choice(32,64,128)"],
    },
}  # fmt: skip
# --jobs: a space whose trials cost the same (no batch size or width in it)
JOBS_SPACE = ["lr=log(1e-4,3e-2)", "weight-decay=log(1e-6,1e-2)", "param.dropout=float(0,0.5)"]


def tk(*args: str, cwd: Path, threads: int | None = 1) -> tuple[str, float]:
    """``tk ARGS`` as a process; its output and wall time. ``threads`` None: as a user runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TK_")}
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"tk {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout, took


def study(task: str, seed: int, trials: int, work: Path) -> dict:
    """One study: its best trial's test accuracy, lr and value, the pruned share, the wall."""
    spec, name = TASKS[task], f"{task}-s{seed}"
    space = [w for entry in spec["space"] for w in ("--space", entry)]
    _, took = tk("tune", *spec["model"], *space, "--trials", str(trials), "--seed", str(seed),
                 "--sampler-seed", str(seed), "--study", name, "--quiet", cwd=work)  # fmt: skip
    out, _ = tk("tune", "show", name, "--json", cwd=work)
    data = json.loads(out)
    rows = data["trials"]
    best = data["best"]
    epochs = [r["epochs"] or 0 for r in rows]
    return {
        "seed": seed,
        "test_accuracy": best["test"]["accuracy"],
        "value": best["value"],
        "lr": best["params"]["lr"],
        "params": best["params"],
        "pruned": sum(r["state"] == "pruned" for r in rows),
        "trials": len(rows),
        "epochs_run": sum(epochs),
        "seconds": took,
    }


def default(task: str, seed: int, work: Path) -> dict:
    """``tk train`` with the model's default recipe and ``seed``."""
    name = f"default-{task}-s{seed}"
    _, took = tk(
        "train", *TASKS[task]["model"], "--seed", str(seed), "--name", name, "-q", cwd=work
    )
    model = TASKS[task]["model"][0]
    summary = json.loads((work / "runs" / model / name / "summary.json").read_text())
    config = json.loads((work / "runs" / model / name / "config.json").read_text())
    return {
        "test_accuracy": summary["test"]["accuracy"],
        "lr": config["recipe"]["lr"],
        "epochs": config["recipe"]["epochs"],
        "seconds": took,
    }


def lr_find(task: str, work: Path) -> dict:
    """``tk lr-find``'s suggestions for the task's model and data."""
    out, took = tk("lr-find", *TASKS[task]["model"], "--json", "--plot", f"lr-find-{task}.png",
                   cwd=work)  # fmt: skip
    data = json.loads(out)
    return {"valley": data["valley"], "steepest": data["steepest"], "seconds": took,
            "stopped": data["stopped"]}  # fmt: skip


def jobs(trials: int, work: Path) -> dict:
    """Wall time of the same-size wine study with --jobs 1 and --jobs 2."""
    space = [w for entry in JOBS_SPACE for w in ("--space", entry)]
    out = {}
    for label, n, threads in (("jobs1", 1, None), ("jobs1-omp1", 1, 1), ("jobs2", 2, None)):
        _, took = tk("tune", *TASKS["wine"]["model"], *space, "--trials", str(trials),
                     "--sampler", "random", "--pruner", "none", "--sampler-seed", "0",
                     "--study", f"timing-{label}", "--jobs", str(n), "--quiet",
                     cwd=work, threads=threads)  # fmt: skip
        out[label] = took
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs)


def _geo(xs: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(x) for x in xs))


def render(results: dict, command: str, meta: dict) -> str:
    """The markdown page."""
    lines = [
        "# Hyperparameter search benchmark",
        "",
        "Produced by:",
        "",
        f"    {command}",
        "",
        f"Machine: {meta['machine']}; Python {meta['python']}. Date {meta['date']}; load average "
        f"(1 min) {meta['load_start']:.2f} at the start, {meta['load_end']:.2f} at the end; the "
        f"whole run took {meta['seconds'] / 60:.0f} min. **The machine's 2 cores were shared with "
        "other engineers' builds and tests while this ran**: wall times are indicative, and the "
        "`--jobs` row is the most affected.",
        "",
        "## Best of the study against the default recipe",
        "",
        f"Each study: {meta['trials']} trials, TPE, median pruning, the recipe's epochs, sampler "
        "seed = training seed = the study seed; the best trial is chosen by validation loss "
        "(the objective), and its test accuracy is read once, as the default run's is. Mean "
        f"over the seeds {', '.join(map(str, meta['seeds']))}.",
        "",
        "| data, model | default recipe: test acc | best of the study: test acc "
        "| per seed (default / tuned) | trials pruned | epochs run / trials x epochs "
        "| study wall (mean) |",
        "| :--- | ---: | ---: | :--- | ---: | ---: | ---: |",
    ]  # fmt: skip
    for task, r in results["tasks"].items():
        d, s = r["default"], r["studies"]
        per = ", ".join(
            f"{_pct(a['test_accuracy'])} / {_pct(b['test_accuracy'])}"
            for a, b in zip(d, s, strict=True)
        )
        pruned = sum(x["pruned"] for x in s) / sum(x["trials"] for x in s)
        budget = sum(x["trials"] for x in s) * d[0]["epochs"]
        lines.append(
            f"| {task} | {_pct(_mean([x['test_accuracy'] for x in d]))} | "
            f"{_pct(_mean([x['test_accuracy'] for x in s]))} | {per} | {_pct(pruned)} | "
            f"{sum(x['epochs_run'] for x in s):,} / {budget:,} | "
            f"{_mean([x['seconds'] for x in s]):.0f} s |"
        )
    lines += _lr_table(results) + _jobs_table(results, meta) + _spaces()
    return "\n".join(lines) + "\n"


def _lr_table(results: dict) -> list[str]:
    lines = [
        "",
        "## lr-find against the lr the study found",
        "",
        "The range test (200 steps from 1e-7 to 10 on a fresh model, stopped when the "
        "smoothed loss diverges) against the lr of each study's best trial and the recipe's.",
        "",
        "| data, model | lr-find: valley | lr-find: steepest | best trials' lr (per seed) "
        "| their geometric mean | the recipe's lr |",
        "| :--- | ---: | ---: | :--- | ---: | ---: |",
    ]  # fmt: skip
    for task, r in results["tasks"].items():
        f, lrs = r["lr_find"], [x["lr"] for x in r["studies"]]
        lines.append(
            f"| {task} | {f['valley']:.3g} | {f['steepest']:.3g} | "
            f"{', '.join(f'{x:.3g}' for x in lrs)} | {_geo(lrs):.3g} | {r['default'][0]['lr']:g} |"
        )
    return lines


def _jobs_table(results: dict, meta: dict) -> list[str]:
    j = results["jobs"]
    return [
        "",
        "## --jobs 1 against --jobs 2",
        "",
        f"{meta['trials']} wine trials (random sampler, seed 0, no pruning; lr, weight decay "
        "and dropout searched, so every trial costs the same), the whole tk tune command's "
        "wall time, on this 2-core machine. `--jobs 2` starts two worker processes with one "
        "torch thread each.",
        "",
        "| run | wall | trials/min | vs --jobs 1 |",
        "| :--- | ---: | ---: | ---: |",
        *(
            f"| {label} | {j[key]:.1f} s | {60 * meta['trials'] / j[key]:.1f} | "
            f"{j['jobs1'] / j[key]:.2f}x |"
            for key, label in (
                ("jobs1", "--jobs 1 (torch's default threads: 2)"),
                ("jobs1-omp1", "--jobs 1 with OMP_NUM_THREADS=1"),
                ("jobs2", "--jobs 2 (1 thread each)"),
            )
        ),
    ]


def _spaces() -> list[str]:
    lines = ["", "## The search spaces", ""]
    for task, spec in TASKS.items():
        lines.append(f"- {task}: " + " ".join(f"`--space {e}`" for e in spec["space"]))
    lines.append("- --jobs timing (wine): " + " ".join(f"`--space {e}`" for e in JOBS_SPACE))
    return lines


def main() -> None:
    """Run every measurement, write the page."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--tasks", default="wine,digits-cnn")
    ap.add_argument("--out", default=None, help="write the markdown here (default: print it)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    start, load_start = time.time(), os.getloadavg()[0]
    results: dict = {"tasks": {}}
    with tempfile.TemporaryDirectory(prefix="tk-bench-tune-") as tmp:
        work = Path(tmp)
        for task in args.tasks.split(","):
            r = results["tasks"][task] = {"default": [], "studies": []}
            for seed in seeds:
                r["default"].append(default(task, seed, work))
                r["studies"].append(study(task, seed, args.trials, work))
                print(task, seed, r["default"][-1], r["studies"][-1], file=sys.stderr, flush=True)
            r["lr_find"] = lr_find(task, work)
        results["jobs"] = jobs(args.trials, work)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
        "seconds": time.time() - start,
        "trials": args.trials,
        "seeds": seeds,
    }
    command = " ".join([".venv/bin/python scripts/bench_tune.py", *sys.argv[1:]])
    page = render(results, command, meta)
    print(json.dumps(results, indent=1, default=str), file=sys.stderr)
    if args.out:
        Path(args.out).write_text(page)
    else:
        print(page)


if __name__ == "__main__":
    main()
