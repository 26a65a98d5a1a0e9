"""``tk runs``: listing, filters, show, compare, rm, and status after a real SIGKILL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit import runs
from toolkit.cli import app
from toolkit.errors import TkError
from toolkit.runlog.query import parse_since
from toolkit.runlog.scan import judge_status
from toolkit.testing import popen_tk, wait_for_checkpoint

HOST = socket.gethostname()
DEAD_PID = 2**22 + 12345  # above Linux's largest pid: never a live process


def fake_run(
    root: Path,
    model: str,
    name: str,
    *,
    status: str | None = "finished",
    started: str = "2026-12-01T10:00:00+0000",
    test_accuracy: float | None = 0.9,
    val_loss: float = 0.3,
    epochs: int = 10,
    summary: bool = True,
    checkpoints: int = 1,
    pid: int = DEAD_PID,
    lr: float = 0.01,
) -> Path:
    """A run directory with the files tk writes (config, status, summary, metrics)."""
    run = root / model / name
    (run / "checkpoints").mkdir(parents=True)
    config = {
        "model": model,
        "dataset": "circles",
        "task": "binary",
        "params": {"hidden": 10},
        "recipe": {"optimizer": "adam", "lr": lr, "epochs": epochs},
        "created": started,
    }
    runs.atomic_write_json(run / runs.CONFIG, config)
    rows = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": val_loss + 1 / e, "val_accuracy": 0.8}
        for e in range(1, epochs + 1)
    ]
    (run / runs.METRICS_JSONL).write_text("".join(json.dumps(r) + "\n" for r in rows))
    if status is not None:
        state = {"status": status, "pid": pid, "host": HOST, "started": started, "error": None}
        if status == "failed":
            state["error"] = "loss became nan at epoch 3"
        runs.atomic_write_json(run / runs.STATUS, state)
    if summary:
        body = {"model": model, "epochs": epochs, "final": rows[-1]}
        if test_accuracy is not None:
            body["test"] = {"loss": 0.2, "accuracy": test_accuracy, "rows": 200}
        body["selected"] = {"epoch": epochs, "monitor": "val_loss", "value": val_loss}
        runs.atomic_write_json(run / runs.SUMMARY, body)
        (run / runs.WEIGHTS).write_bytes(b"\0" * 1000)
    for i in range(checkpoints):
        (run / "checkpoints" / f"epoch-{i + 1:06d}.safetensors").write_bytes(b"\0" * 500)
    return run


@dataclass
class Ran:
    """A finished in-process ``tk`` call: exit code, stdout, and stdout + stderr."""

    exit_code: int
    stdout: str
    output: str


def tk_runs(*args: str, root: Path, input: str | None = None) -> Ran:
    """``tk runs ARGS --runs-dir ROOT`` in-process, tk errors turned into exit codes
    and one line as ``toolkit.cli.main`` does."""
    result = CliRunner().invoke(app, ["runs", *args, "--runs-dir", str(root)], input=input)
    if isinstance(result.exception, TkError):
        err = f"tk: error: {result.exception}\n"
        return Ran(result.exception.exit_code, result.stdout, result.output + err)
    return Ran(result.exit_code, result.stdout, result.output)


def listed(root: Path, *args: str) -> list[dict]:
    result = tk_runs(*args, "--json", root=root)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "runs"
    fake_run(r, "circle", "best", test_accuracy=0.99, val_loss=0.1)
    fake_run(
        r, "circle", "worst", test_accuracy=0.6, val_loss=0.9, started="2026-12-02T10:00:00+0000"
    )
    fake_run(r, "circle-v2", "killed", status="running", summary=False, checkpoints=2)
    fake_run(r, "xor-mlp", "broken", status="failed", summary=False, checkpoints=0)
    fake_run(r, "xor-mlp", "old-tk", status=None, started="2025-01-01T00:00:00+0000")
    runs.set_latest(r, r / "circle" / "worst")
    return r


def test_status_is_judged_from_status_json_and_the_process():
    alive = {"status": "running", "pid": os.getpid(), "host": HOST}
    assert judge_status(alive, False, 0) == "running"
    assert judge_status({**alive, "pid": DEAD_PID}, False, 3) == "interrupted"
    assert judge_status({**alive, "pid": DEAD_PID}, True, 3) == "finished"  # summary written
    assert judge_status({**alive, "pid": DEAD_PID, "host": "elsewhere"}, False, 0) == "running"
    assert judge_status({"status": "failed"}, False, 0) == "failed"
    # Runs of an older tk, without status.json:
    assert judge_status({}, True, 0) == "finished"
    assert judge_status({}, False, 2) == "interrupted"
    assert judge_status({}, False, 0) == "failed"


def test_listing_shows_every_run_oldest_first(root):
    rows = listed(root)
    assert [r["run"] for r in rows] == [
        "xor-mlp/old-tk",
        "circle-v2/killed",  # the same start as circle/best: by name
        "circle/best",
        "xor-mlp/broken",
        "circle/worst",
    ]
    by = {r["run"]: r for r in rows}
    assert by["circle-v2/killed"]["status"] == "interrupted"
    assert by["xor-mlp/broken"]["status"] == "failed"
    assert by["xor-mlp/broken"]["error"] == "loss became nan at epoch 3"
    assert by["xor-mlp/old-tk"]["status"] == "finished"
    assert by["circle/best"]["metrics"]["test_accuracy"] == 0.99
    assert "test_rows" not in by["circle/best"]["metrics"]
    assert by["circle-v2/killed"]["epochs"] == 10  # from the last line of metrics.jsonl
    assert by["circle-v2/killed"]["checkpoints"] == 2
    assert by["circle/best"]["size"] > 1500
    table = tk_runs(root=root)
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "RUN", "MODEL", "DATASET", "STARTED", "EPOCHS", "VAL", "TEST", "STATUS", "SIZE",
    ]  # fmt: skip
    best = next(line for line in lines if line.startswith("circle/best"))
    assert "80.00%" in best and "99.00%" in best and "finished" in best
    assert tk_runs("list", root=root).stdout == table.stdout


def test_filters_sort_and_limit(root):
    assert [r["run"] for r in listed(root, "--model", "circle")] == ["circle/best", "circle/worst"]
    assert len(listed(root, "--model", "circle*")) == 3
    assert [r["run"] for r in listed(root, "--status", "interrupted,failed")] == [
        "circle-v2/killed",
        "xor-mlp/broken",
    ]
    assert [r["run"] for r in listed(root, "--since", "2026-12-02")] == ["circle/worst"]
    assert len(listed(root, "--since", "3650d")) == 5
    best_first = [r["run"] for r in listed(root, "--sort", "test_accuracy")]
    assert best_first[:3] == ["circle/best", "xor-mlp/old-tk", "circle/worst"]
    assert [r["run"] for r in listed(root, "--sort", "-test_accuracy")][:2] == [
        "circle/worst",
        "xor-mlp/old-tk",
    ]
    assert [r["run"] for r in listed(root, "--sort", "val_loss", "-n", "1")] == ["circle/best"]
    assert [r["run"] for r in listed(root, "-n", "1")] == ["circle/worst"]  # the newest
    sorted_table = tk_runs("--sort", "val_loss", root=root).stdout
    assert sorted_table.splitlines()[0].split()[-1] == "VAL_LOSS"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sort", "accuracy"], "cannot sort by 'accuracy'; allowed: started, run,"),
        (["--status", "done"], "unknown status 'done'; allowed: running, finished,"),
        (["--since", "yesterday"], "--since expects a date (2026-12-01)"),
        (["show", "nope"], "no run 'nope' in"),
        (["show", "killd"], "did you mean 'circle-v2/killed'?"),
        (["compare", "best"], "compare needs at least two runs"),
    ],
)
def test_mistakes_are_one_line_exit_2(root, args, message):
    res = subprocess.run(
        [sys.executable, "-m", "toolkit", "runs", *args, "--runs-dir", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("tk: error: ")
    assert message in res.stderr


def test_since_accepts_dates_times_and_ages():
    now = 1_800_000_000.0
    assert parse_since("12h", now) == now - 12 * 3600
    assert parse_since("2w", now) == now - 14 * 86400
    assert parse_since("2026-12-01T10:00+00:00") == 1_796_119_200.0


def test_show_names_a_run_many_ways(root):
    for name in ("killed", "circle-v2/killed", str(root / "circle-v2" / "killed")):
        res = tk_runs("show", name, root=root)
        assert res.exit_code == 0, res.output
        assert "status: interrupted (status.json says running)" in res.stdout
        assert f"resume: tk train --resume {root / 'circle-v2' / 'killed'}" in res.stdout
    latest = json.loads(tk_runs("show", "latest", "--json", root=root).stdout)
    assert latest["run"] == "circle/worst" and latest["config"]["recipe"]["lr"] == 0.01
    fake_run(root, "xor-mlp", "best")
    ambiguous = tk_runs("show", "best", root=root)
    assert ambiguous.exit_code == 2
    assert "'best' names 2 runs: circle/best, xor-mlp/best" in ambiguous.output


def test_compare_shows_differences_and_plots_the_curves(root, tmp_path):
    fake_run(root, "circle", "fast", lr=0.1, test_accuracy=0.95)
    res = tk_runs("compare", "best", "fast", "--json", root=root)
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["runs"] == ["circle/best", "circle/fast"]
    assert result["config"] == {"recipe.lr": [0.01, 0.1]}
    assert result["metrics"]["test_accuracy"] == [0.99, 0.95]
    png = tmp_path / "cmp.png"
    table = tk_runs("compare", "best", "fast", "worst", "--plot", str(png), root=root)
    assert table.exit_code == 0, table.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "recipe.lr" in table.stdout and f"Plot: {png}" in table.stdout


def test_rm_asks_and_moves_latest(root):
    worst = root / "circle" / "worst"
    no = tk_runs("rm", "worst", root=root, input="n\n")
    assert no.exit_code == 1 and "nothing deleted" in no.output and worst.is_dir()
    yes = tk_runs("rm", "worst", root=root, input="y\n")
    assert yes.exit_code == 0, yes.output
    assert not worst.exists()
    # latest moved to the newest run left, whatever its status (as when a run starts):
    # best, killed and broken started at the same second; broken sorts last by name
    assert runs.resolve_run("latest", root).resolve() == (root / "xor-mlp" / "broken").resolve()
    assert (
        tk_runs("rm", "circle/best", "old-tk", "broken", "killed", "--yes", root=root).exit_code
        == 0
    )
    assert not (root / runs.LATEST).exists() and not (root / runs.LATEST).is_symlink()
    assert listed(root) == []
    assert (root / "circle").is_dir()  # only runs go, never the folders holding them


def test_rm_never_leaves_the_runs_root(root, tmp_path):
    outside = fake_run(tmp_path / "elsewhere", "circle", "precious")
    (root / "circle" / "link").symlink_to(outside)
    attempts = [
        str(outside),  # a run, but not under this root
        f"{root}/../elsewhere/circle/precious",  # .. escapes
        "circle/link",  # a symlink inside the root to a run outside
        str(root),  # the root itself
        "circle",  # a folder of runs, not a run
    ]
    for target in attempts:
        res = tk_runs("rm", target, "--yes", root=root)
        assert res.exit_code == 2, (target, res.output)
    assert (outside / runs.CONFIG).is_file() and (root / "circle" / "best").is_dir()
    live = fake_run(root, "circle", "live", status="running", summary=False, pid=os.getpid())
    res = tk_runs("rm", "live", "--yes", root=root)
    assert res.exit_code == 2 and "still running" in res.output and live.is_dir()


def test_scan_of_many_runs_reads_no_checkpoint_and_imports_no_torch(tmp_path):
    scripts = Path(__file__).resolve().parent.parent / "scripts"
    sys.path.insert(0, str(scripts))
    try:
        from bench_runs import make_fake_runs
    finally:
        sys.path.remove(str(scripts))
    root = tmp_path / "runs"
    make_fake_runs(root, 50, epochs=20)
    probe = (
        "import sys, json; from toolkit.runlog import scan_runs\n"
        f"found = scan_runs({str(root)!r})\n"
        "print(json.dumps([len(found), sorted({r.status for r in found}), 'torch' in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == [50, ["failed", "finished", "interrupted"], False]


@pytest.mark.slow
def test_runs_after_a_sigkill(tk, tmp_path):
    done = tk("train", "circle", "--epochs", "3", "--name", "done", "-q")
    assert done.code == 0, done.err
    proc = popen_tk(
        ["train", "circle", "--epochs", "100000", "--checkpoint-every", "5", "--name", "killed"],
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    run = tmp_path / "runs" / "circle" / "killed"
    try:
        assert wait_for_checkpoint(run, proc, epoch=10), proc.stderr.read() if proc.stderr else ""
        live = tk("runs", "--json")
        assert {r["run"]: r["status"] for r in json.loads(live.out)}["circle/killed"] == "running"
    finally:
        proc.kill()
        proc.communicate()
    time.sleep(0.1)
    res = tk("runs", "--json")
    assert res.code == 0, res.err
    status = {r["run"]: r for r in json.loads(res.out)}
    assert status["circle/done"]["status"] == "finished"
    assert status["circle/done"]["epochs"] == 3
    assert status["circle/killed"]["status"] == "interrupted"
    assert status["circle/killed"]["checkpoints"] >= 1
    assert json.loads((run / runs.STATUS).read_text())["status"] == "running"  # as SIGKILL left it
    shown = tk("runs", "show", "killed")
    assert "status: interrupted" in shown.out and "resume: tk train --resume" in shown.out
    table = tk("runs", "--status", "interrupted").out.splitlines()
    assert len(table) == 2 and table[1].startswith("circle/killed")
