"""torchrun/DDP on the CPU with gloo, restarts, mixed precision and torch.compile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_tk

from toolkit import checkpoint, runs


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "model.safetensors"))


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    res = run_tk("train", "circle", "--nproc", "2", "--epochs", "50", "--name", "ddp", cwd=tmp_path)
    assert res.code == 0, res.err
    assert sorted(p.name for p in (tmp_path / "runs/circle").iterdir()) == ["ddp"]
    ddp = tmp_path / "runs/circle/ddp"
    summary = _summary(ddp)
    assert summary["world_size"] == 2
    hashes = summary["rank_weights_sha256"]
    assert len(hashes) == 2 and hashes[0] == hashes[1] == runs.sha256_file(
        ddp / "model.safetensors"
    )
    assert res.out.count("Done: 50 epochs") == 1  # only rank 0 prints

    single = run_tk("train", "circle", "--epochs", "50", "--name", "one", "-q", cwd=tmp_path)
    assert single.code == 0, single.err
    one = tmp_path / "runs/circle/one"
    a, b = _weights(ddp), _weights(one)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"2-process vs 1-process full batch, 50 epochs: max weight diff {diff:.2e}")
    assert diff < 1e-5
    acc_ddp = summary["test"]["accuracy"]
    acc_one = _summary(one)["test"]["accuracy"]
    assert abs(acc_ddp - acc_one) <= 0.01


def _worker_pids(launcher: subprocess.Popen) -> dict[int, int]:
    """{rank: pid} of the torchrun workers under a `tk train --nproc` process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        env = dict(e.split(b"=", 1) for e in environ if b"=" in e)
        if b"toolkit" in cmdline and b"RANK" in env and b"TORCHELASTIC_RUN_ID" in env:
            ppid_line = next(
                x for x in (entry / "status").read_text().splitlines() if x.startswith("PPid")
            )
            agent = int(ppid_line.split()[1])
            agent_status = Path(f"/proc/{agent}/status").read_text()
            if f"PPid:\t{launcher.pid}" in agent_status:
                found[int(env[b"RANK"])] = int(entry.name)
    return found


@pytest.mark.slow
def test_killed_rank_restarts_and_resumes_to_the_same_weights(tmp_path):
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
    ref = run_tk(*common, "--name", "ref", cwd=tmp_path)
    assert ref.code == 0, ref.err
    env = {k: v for k, v in os.environ.items() if not k.startswith("TK_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "toolkit", *common, "--name", "cut", "--max-restarts", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = tmp_path / "runs/circle/cut"
    deadline = time.time() + 120
    while time.time() < deadline and len(checkpoint.list_checkpoints(run)) < 3:
        time.sleep(0.05)
    pids = _worker_pids(proc)
    assert 1 in pids, pids
    os.kill(pids[1], signal.SIGKILL)
    _out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert runs.sha256_file(run / "model.safetensors") == runs.sha256_file(
        tmp_path / "runs/circle/ref/model.safetensors"
    )
    config = json.loads((run / "config.json").read_text())
    assert config.get("resumed_from", "").startswith("checkpoints/epoch-")


def test_bf16_and_fp16_autocast_train_on_cpu(tmp_path):
    res = run_tk("train", "circle", "--precision", "bf16", "--epochs", "300", "-q", cwd=tmp_path)
    assert res.code == 0, res.err
    assert _summary(tmp_path / "runs/latest")["test"]["accuracy"] >= 0.99
    assert json.loads((tmp_path / "runs/latest/config.json").read_text())["precision"] == "bf16"
    # fp16 has a GradScaler on the CPU too (tests/test_effects_options.py checks it works).
    res = run_tk("train", "circle", "--precision", "fp16", "--name", "x", "--epochs", "300",
                 "-q", cwd=tmp_path)  # fmt: skip
    assert res.code == 0, res.err
    assert _summary(tmp_path / "runs/circle/x")["test"]["accuracy"] >= 0.99
    assert json.loads((tmp_path / "runs/circle/x/config.json").read_text())["precision"] == "fp16"


@pytest.mark.slow
def test_compile_on_cpu_trains_circle(tmp_path):
    res = run_tk("train", "circle", "--compile", "--epochs", "300", "-q", cwd=tmp_path)
    assert res.code == 0, res.err
    summary = _summary(tmp_path / "runs/latest")
    assert summary["test"]["accuracy"] >= 0.99
    # dynamo's own counters: the forward really went through torch.compile
    assert summary["compile"]["graphs"] >= 1
    assert summary["compile"]["graph_breaks"] == 0


@pytest.mark.cuda
def test_cuda_bf16_and_compile(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    for extra in (["--precision", "bf16"], ["--precision", "fp16"], ["--compile"]):
        res = run_tk(
            "train", "circle", "--device", "cuda", "--epochs", "300", "-q", *extra, cwd=tmp_path
        )
        assert res.code == 0, res.err
        assert _summary(tmp_path / "runs/latest")["test"]["accuracy"] >= 0.99
