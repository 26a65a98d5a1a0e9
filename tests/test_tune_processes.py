"""``tk tune`` across processes: two commands sharing a study on a real PostgreSQL
server, ``--jobs 2`` on SQLite, and a worker killed with SIGKILL mid-trial.

The PostgreSQL server is started here from the machine's binaries (``pg_config
--bindir``): initdb and pg_ctl in a temporary directory, on a free port of
127.0.0.1, as the ``postgres`` user when the tests run as root (postgres refuses
root), and stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from conftest import REPO, tk_main

from toolkit.tune.study import open_storage

pytestmark = pytest.mark.slow


def _pg_bindir() -> Path | None:
    if shutil.which("pg_config") is None:
        return None
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
    bindir = Path(out.stdout.strip())
    return bindir if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of its own: the URL of its ``postgres`` database."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries on this machine (pg_config --bindir has no initdb)")
    base = Path(tempfile.mkdtemp(prefix="tk-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres will not run as root: its own user runs it
        shutil.chown(base, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", _free_port()
    ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data)]

    def run(*argv: str) -> None:
        subprocess.run([*as_user, *argv], check=True, capture_output=True, timeout=120)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-N")
        options = f"-p {port} -h 127.0.0.1 -k {base} -F"
        run(*ctl[len(as_user) :], "-o", options, "-l", str(base / "log"), "-w", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def tk_process(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``tk ARGS`` as its own process (``python -m toolkit``), output captured."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TK_")}
    full_env.update({"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **(env or {})})
    full_env["TK_HOME"] = os.environ.get("TK_HOME", "")
    return subprocess.Popen(
        [sys.executable, "-m", "toolkit", *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finished(proc: subprocess.Popen, timeout: float = 240) -> str:
    """Wait for ``proc`` to exit 0; its output."""
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def test_two_tk_tune_processes_share_one_study_on_postgresql(postgres, tmp_path):
    args = ["tune", "circle", "--space", "lr=log(1e-3,0.3)", "--epochs", "300", "--trials", "8",
            "--pruner", "none", "--study", "shared", "--storage", postgres]  # fmt: skip
    first, second = tk_process(*args, cwd=tmp_path), tk_process(*args, cwd=tmp_path)
    outputs = [finished(first), finished(second)]
    study = optuna.load_study(study_name="shared", storage=open_storage(postgres, create=False))
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(8))  # disjoint numbers, 8 in all
    assert all(t.state.name == "COMPLETE" for t in trials)
    by_pid = {t.user_attrs["pid"] for t in trials}
    assert by_pid == {first.pid, second.pid}  # each process ran some of them
    for out, proc in zip(outputs, (first, second), strict=True):
        mine = [t.number for t in trials if t.user_attrs["pid"] == proc.pid]
        assert [int(line.split()[1]) for line in out.splitlines() if " finished: " in line] == mine
    runs = sorted(p.name for p in (tmp_path / "runs" / "circle" / "shared").iterdir())
    assert runs == [f"trial-{n:04d}" for n in range(8)]
    assert "study shared: 8 trials (8 finished)" in outputs[0] + outputs[1]


def test_jobs_2_runs_two_worker_processes_that_divide_the_cores(tmp_path):
    proc = tk_process("tune", "circle", "--space", "lr=log(1e-3,0.3)", "--epochs", "300",
                      "--trials", "4", "--pruner", "none", "--jobs", "2", cwd=tmp_path,
                      env={"OMP_NUM_THREADS": "4"})  # fmt: skip
    out = finished(proc)
    study = optuna.load_study(
        study_name="circle-tune", storage=f"sqlite:///{tmp_path / 'runs' / 'tune.db'}"
    )
    trials = study.get_trials()
    assert [(t.number, t.state.name) for t in trials] == [(n, "COMPLETE") for n in range(4)]
    workers = {t.user_attrs["pid"] for t in trials}
    assert len(workers) == 2 and proc.pid not in workers  # two children ran the trials
    cores = len(os.sched_getaffinity(0))
    for t in trials:
        summary = json.loads((Path(t.user_attrs["run_dir"]) / "summary.json").read_text())
        assert summary["torch_threads"] == max(1, cores // 2)  # not the 4 it was given
    assert "study circle-tune: 4 trials (4 finished)" in out


def test_sigkilled_worker_leaves_a_usable_study_that_continues_to_its_count(tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["tune", "circle", "--space", "lr=log(1e-3,0.3)", "--epochs", "300", "--trials", "3",
            "--pruner", "none", "--checkpoint-every", "50"]  # fmt: skip
    proc = tk_process(*args, cwd=tmp_path)
    ckpts = runs / "circle" / "circle-tune" / "trial-0000" / "checkpoints"
    deadline = time.time() + 180
    manifest = ckpts.parent / "manifest.json"
    while not (manifest.is_file() and "checkpoints/" in manifest.read_text()):  # trial 0 runs
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0]
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    status = json.loads((ckpts.parent / "status.json").read_text())
    assert status["status"] == "running" and status["pid"] == proc.pid  # as SIGKILL left it
    storage = f"sqlite:///{runs / 'tune.db'}"
    killed = optuna.load_study(study_name="circle-tune", storage=storage).get_trials()
    assert [t.state.name for t in killed] == ["RUNNING"]

    capsys.readouterr()
    assert tk_main("tune", "--study", "circle-tune", "--runs-dir", str(runs)) == 0
    out = capsys.readouterr().out
    assert "trial 0: its process is gone (killed); failed" in out
    trials = optuna.load_study(study_name="circle-tune", storage=storage).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert trials[1].user_attrs["run_dir"] == str(ckpts.parent)  # continued from a checkpoint
    assert trials[1].params == trials[0].params
    summary = json.loads((ckpts.parent / "summary.json").read_text())
    assert summary["epochs"] == 300
    assert json.loads((ckpts.parent / "status.json").read_text())["status"] == "finished"
    assert "study circle-tune: 4 trials (1 killed, 3 finished)" in out
