"""Reliability trials with real processes; prints the figures for docs/reliability.md.

    .venv/bin/python scripts/reliability.py [--trials 5]

1. torchrun restart: `tk train circle --nproc 2 --max-restarts 1`, SIGKILL one rank
   mid-run; the job must complete with weights equal to an uninterrupted job's.
2. SIGKILL of a single-process run at a random moment, then `--resume`: weights equal
   to an uninterrupted run's, full batch and mini-batch.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from conftest import run_tk  # noqa: E402
from test_distributed import _worker_pids  # noqa: E402

from toolkit import checkpoint, runs  # noqa: E402
from toolkit.testing import popen_tk, wait_for_checkpoint  # noqa: E402


def restart_trials(work: Path, trials: int, rng: random.Random) -> int:
    """Kill one rank of a 2-process job; count trials whose final weights match."""
    common = [
        "train",
        "circle",
        "--nproc",
        "2",
        "--epochs",
        "40",
        "--batch-size",
        "100",
        "--checkpoint-every",
        "1",
        "-q",
    ]
    assert run_tk(*common, "--name", "ref", cwd=work).code == 0
    want = runs.sha256_file(work / "runs/circle/ref/model.safetensors")
    ok = 0
    for t in range(trials):
        name = f"cut{t}"
        proc = popen_tk([*common, "--name", name, "--max-restarts", "1"], work)
        run = work / "runs/circle" / name
        wait_for_checkpoint(run, epoch=rng.randint(2, 30))
        killed_at = len(checkpoint.load(checkpoint.list_checkpoints(run)[-1]).history)
        pids = _worker_pids(proc)
        victim = rng.choice(sorted(pids))
        os.kill(pids[victim], signal.SIGKILL)
        _out, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            print("    " + "\n    ".join(err.strip().splitlines()[-25:]))
            Path(os.environ.get("TK_RELIABILITY_LOG", "/dev/null")).write_text(err)
        same = proc.returncode == 0 and runs.sha256_file(run / "model.safetensors") == want
        print(
            f"  restart trial {t + 1}: killed rank {victim} after epoch {killed_at}, "
            f"exit {proc.returncode}, weights equal: {same}"
        )
        ok += same
    return ok


def sigkill_resume_trials(work: Path, trials: int, batch: str, rng: random.Random) -> int:
    """SIGKILL a run at a random moment and resume; count bitwise-equal results."""
    common = [
        "train",
        "circle",
        "--epochs",
        "250",
        "--batch-size",
        batch,
        "--checkpoint-every",
        "1",
        "-q",
    ]
    assert run_tk(*common, "--name", f"ref-{batch}", cwd=work).code == 0
    want = runs.sha256_file(work / f"runs/circle/ref-{batch}/model.safetensors")
    ok = 0
    for t in range(trials):
        name = f"kill-{batch}-{t}"
        run = work / "runs/circle" / name
        proc = popen_tk([*common, "--name", name], work)
        wait_for_checkpoint(run, epoch=rng.randint(1, 200))
        proc.kill()
        proc.wait()
        epoch = checkpoint.load(checkpoint.list_checkpoints(run)[-1]).epoch
        res = run_tk("train", "--resume", str(run), "-q", cwd=work)
        same = res.code == 0 and runs.sha256_file(run / "model.safetensors") == want
        print(
            f"  batch={batch} trial {t + 1}: killed after epoch {epoch}, resumed, "
            f"bitwise equal: {same}"
        )
        ok += same
    return ok


def main() -> None:
    """Run the trials and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--only", choices=["restart", "resume"], default=None)
    args = parser.parse_args()
    rng = random.Random(2026)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("torchrun restart (2 gloo workers, --max-restarts 1, one rank SIGKILLed):")
        n = args.trials
        r = restart_trials(work, n, rng) if args.only != "resume" else n
        full = mini = n
        if args.only != "restart":
            print("SIGKILL then --resume:")
            full = sigkill_resume_trials(work, n, "full", rng)
            mini = sigkill_resume_trials(work, n, "64", rng)
    n = args.trials
    print(f"\nrestart trials: {r}/{n} completed with identical weights")
    print(f"SIGKILL+resume, full batch: {full}/{n} bitwise equal")
    print(f"SIGKILL+resume, batch 64: {mini}/{n} bitwise equal")
    sys.exit(0 if r == full == mini == n else 1)


if __name__ == "__main__":
    main()
