"""Never lose work: atomic checkpoints, exact resume, interruption, bad numbers, safe loading.

Figures (trial counts, refusals) are printed and recorded in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, pythonpath, run_tk

from toolkit import checkpoint, integrity, runs
from toolkit.checkpoint import IntegrityError
from toolkit.config import TrainConfig
from toolkit.testing import popen_tk, wait_for_checkpoint
from toolkit.train import train


def _hash(run: Path) -> str:
    return runs.sha256_file(run / "model.safetensors")


# ------------------------------------------------------------- atomic writes
def test_kill9_during_checkpoint_writes_20_trials_0_unloadable(tmp_path):
    """A writer child is SIGKILLed at random moments while writing checkpoints."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(512, 512)  # ~1 MB per checkpoint, so kills land mid-write
    state = checkpoint.TrainState(model_state=model.state_dict(), optimizer_state={})
    checkpoint.capture_rng(state)
    payload = checkpoint.encode(state)
    rng = random.Random(1234)
    trials, unloadable, killed_mid_write = 20, 0, 0
    for trial in range(trials):
        run = tmp_path / f"run{trial}"
        run.mkdir()
        pid = os.fork()
        if pid == 0:  # child: write checkpoints forever (pure file I/O after fork)
            try:
                i = 0
                while True:
                    i += 1
                    checkpoint.write_encoded(run, f"epoch-{i:06d}.safetensors", payload, keep=2)
            finally:
                os._exit(0)
        deadline = time.time() + 30
        while not (run / integrity.MANIFEST).exists() and time.time() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.1))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        leftovers = [p for p in (run / "checkpoints").iterdir() if ".tmp-" in p.name]
        killed_mid_write += bool(leftovers)
        checkpoint.cleanup(run)
        listed = checkpoint.list_checkpoints(run)
        assert listed, "the child wrote nothing before being killed"
        for path in listed:
            try:
                loaded = checkpoint.load(path)
                assert torch.equal(loaded.model_state["weight"], model.weight)
            except Exception:
                unloadable += 1
        assert not [p for p in (run / "checkpoints").iterdir() if ".tmp-" in p.name]
    print(
        f"kill -9 trials: {trials}, unloadable checkpoints: {unloadable}, "
        f"killed mid-write (temp file left, cleaned): {killed_mid_write}"
    )
    assert unloadable == 0


# ---------------------------------------------------------- exact resume
@pytest.mark.slow
@pytest.mark.parametrize("batch", ["full", "64"])
def test_sigkill_at_random_epoch_then_resume_is_bitwise_equal(tmp_path, batch):
    common = [
        "train",
        "circle",
        "--epochs",
        "250",
        "--batch-size",
        batch,
        "--checkpoint-every",
        "1",
        "--keep-checkpoints",
        "2",
        "-q",
    ]
    ref = run_tk(*common, "--name", "ref", cwd=tmp_path)
    assert ref.code == 0, ref.err
    run = tmp_path / "runs/circle/cut"
    proc = popen_tk([*common, "--name", "cut"], tmp_path)
    assert wait_for_checkpoint(run, proc, count=2), f"no checkpoint in {run}: {proc.poll()}"
    time.sleep(random.Random(batch).uniform(0.0, 0.3))
    proc.kill()
    proc.wait()
    listed = checkpoint.list_checkpoints(run)
    done = checkpoint.load(listed[-1]).epoch
    assert 0 < done < 250, "the kill came too late to test anything"
    res = run_tk("train", "--resume", str(run), "-q", cwd=tmp_path)
    assert res.code == 0, res.err
    assert _hash(run) == _hash(tmp_path / "runs/circle/ref")
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == list(range(1, 251))
    print(f"batch={batch}: killed after epoch {done}, resumed, weights bitwise equal")


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_epoch_writes_checkpoint_and_resume_is_exact(tmp_path, sig, code):
    common = ["train", "circle", "--epochs", "150", "--batch-size", "16", "--seed", "3", "-q"]
    ref = run_tk(*common, "--name", "ref", cwd=tmp_path)
    assert ref.code == 0
    run = tmp_path / "runs/circle/cut"
    proc = popen_tk([*common, "--name", "cut", "--checkpoint-every", "1"], tmp_path)
    assert wait_for_checkpoint(run, proc), f"no checkpoint in {run}: {proc.poll()}"
    time.sleep(random.Random(int(sig)).uniform(0.0, 0.2))
    proc.send_signal(sig)
    time.sleep(0.01)
    proc.send_signal(sig)  # a second Ctrl-C must not corrupt anything
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "checkpoint saved:" in err and f"tk train --resume {Path('runs/circle/cut')}" in err
    newest = checkpoint.list_checkpoints(run)[-1]
    state = checkpoint.load(newest)  # valid, and matches the manifest
    # Mid-epoch it is an "interrupt" checkpoint; on an epoch boundary the periodic
    # checkpoint just written is the same state and is not written twice.
    assert state.reason in ("interrupt", "periodic")
    res = run_tk("train", "--resume", str(run), "-q", cwd=tmp_path)
    assert res.code == 0, res.err
    assert _hash(run) == _hash(tmp_path / "runs/circle/ref")
    print(f"signal {sig.name}: exit {code}, checkpoint {newest.name}, resume bitwise equal")


# ------------------------------------------------------------- bad numbers
def test_nan_at_step_k_stops_there_and_checkpoint_is_finite(tmp_path, plugin_site):
    import torch

    env = pythonpath(plugin_site["good"])
    res = run_tk(
        "train",
        "nan-bomb",
        "--param",
        "k=20",
        "--checkpoint-every",
        "1",
        "--name",
        "bomb",
        cwd=tmp_path,
        env=env,
    )
    assert res.code == 1
    line = res.err.strip().splitlines()[-1]
    # 800 rows / batch 100 = 8 steps per epoch: step 20 is in epoch 3.
    assert line.startswith("tk: error: loss became nan at epoch 3 step 20;"), line
    assert "last good checkpoint: runs/circle" not in line
    assert re.search(r"last good checkpoint: \S+epoch-000002\.safetensors", line), line
    run = tmp_path / "runs/nan-bomb/bomb"
    state = checkpoint.load(checkpoint.list_checkpoints(run)[-1])
    assert state.epoch == 2
    assert all(bool(torch.isfinite(v).all()) for v in state.model_state.values())
    assert not (run / "model.safetensors").exists()


def test_grad_clip_is_recorded_and_trains(tmp_path):
    res = run_tk("train", "circle", "--epochs", "40", "--grad-clip", "0.5", "-q", cwd=tmp_path)
    assert res.code == 0, res.err
    config = json.loads((tmp_path / "runs/latest/config.json").read_text())
    assert config["grad_clip"] == 0.5


# ----------------------------------------------------------------- guards
def test_resume_guards(tmp_path):
    first = run_tk(
        "train",
        "circle",
        "--epochs",
        "20",
        "--checkpoint-every",
        "5",
        "--name",
        "g",
        "-q",
        cwd=tmp_path,
    )
    assert first.code == 0
    changed = run_tk("train", "--resume", "latest", "--lr", "0.5", "--epochs", "30", cwd=tmp_path)
    assert changed.code == 2
    assert changed.err.strip() == (
        "tk: error: resuming runs/circle/g with a changed config: lr 0.01 -> 0.5 "
        "(try: drop those options, or --allow-config-change)"
    )
    lower = run_tk("train", "--resume", "latest", "--epochs", "10", cwd=tmp_path)
    assert lower.code == 2 and "--epochs 10 is lower than the 20 epochs already done" in lower.err
    stale = tmp_path / "runs/circle/g/checkpoints/.epoch-000099.safetensors.tmp-abc"
    stale.write_bytes(b"half a checkpoint")
    ok = run_tk(
        "train",
        "--resume",
        "latest",
        "--lr",
        "0.5",
        "--epochs",
        "25",
        "--allow-config-change",
        "-q",
        cwd=tmp_path,
    )
    assert ok.code == 0, ok.err
    assert not stale.exists()
    assert json.loads((tmp_path / "runs/circle/g/summary.json").read_text())["epochs"] == 25


# --------------------------------------------------------- corrupt files
def test_single_byte_flips_are_refused(tmp_path):
    cfg = TrainConfig(
        model="circle",
        epochs=18,
        checkpoint_every=1,
        keep_checkpoints=0,
        runs_dir=str(tmp_path / "runs"),
        name="flip",
        quiet=True,
    )
    result = train(cfg)
    run = result.run_dir
    from toolkit.export import export_run
    from toolkit.verify import verify_file

    export_run(run, "onnx", echo=lambda *_: None, echo_err=lambda *_: None)
    from toolkit.models import rebuild_model
    from toolkit.runs import open_run

    targets = [*checkpoint.list_checkpoints(run), run / "model.safetensors", run / "model.onnx"]
    assert len(targets) == 20
    rng = random.Random(7)
    refused = 0
    for path in targets[:20]:
        original = path.read_bytes()
        pos = rng.randrange(len(original))
        flipped = bytearray(original)
        flipped[pos] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(flipped))
        try:
            if path.name == "model.safetensors":
                rebuild_model(open_run(run))
            elif path.suffix == ".onnx":
                verify_file(path)
            else:
                checkpoint.load(path)
        except IntegrityError as exc:
            refused += 1
            assert "does not match its sha256" in str(exc) or "not a readable" in str(exc)
        finally:
            path.write_bytes(original)
    print(f"single-byte flips: {refused} of 20 refused")
    assert refused == 20


def test_corrupt_newest_checkpoint_names_the_newest_valid_one(tmp_path):
    cfg = TrainConfig(
        model="circle",
        epochs=6,
        checkpoint_every=2,
        keep_checkpoints=0,
        runs_dir=str(tmp_path / "runs"),
        name="c",
        quiet=True,
    )
    run = train(cfg).run_dir
    newest = checkpoint.list_checkpoints(run)[-1]
    data = bytearray(newest.read_bytes())
    data[-1] ^= 0xFF
    newest.write_bytes(bytes(data))
    # The run finished: continuing it means extending it (more --epochs).
    res = run_tk("train", "--resume", str(run), "--epochs", "8", cwd=tmp_path)
    assert res.code == 3
    assert "does not match its sha256" in res.err
    assert "the newest valid checkpoint is" in res.err and "epoch-000004" in res.err


EVIL = """
import os, torch
class Evil:
    def __reduce__(self):
        return (os.system, ("touch {marker}",))
torch.save({{"weight": Evil()}}, {path!r})
"""


@pytest.mark.parametrize("force_unsafe", [False, True])
def test_pickle_payload_is_refused_and_never_runs(tmp_path, force_unsafe):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    subprocess.run([sys.executable, "-c", EVIL.format(marker=marker, path=str(evil))], check=True)
    assert evil.exists() and not marker.exists()
    env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"} if force_unsafe else {}
    res = run_tk(
        "train", "circle", "--epochs", "2", "--init-weights", str(evil), cwd=tmp_path, env=env
    )
    assert res.code == 3
    assert res.err.strip().splitlines()[-1].startswith(f"tk: error: refusing {evil}:")
    assert not marker.exists(), "the pickle payload ran"
    assert not (tmp_path / "runs").exists()
    # The same payload handed to --resume is refused without being opened as a pickle.
    fake_run = tmp_path / "runs_fake/circle/x"
    (fake_run / "checkpoints").mkdir(parents=True)
    (fake_run / "config.json").write_text("{}")
    (fake_run / "checkpoints" / "epoch-000001.pt").write_bytes(evil.read_bytes())
    res = run_tk(
        "train", "--resume", str(fake_run / "checkpoints/epoch-000001.pt"), cwd=tmp_path, env=env
    )
    assert res.code in (2, 3) and "Traceback" not in res.err
    assert not marker.exists(), "the pickle payload ran"


def test_init_weights_from_a_plain_pt_state_dict(tmp_path):
    import torch

    first = train(
        TrainConfig(
            model="circle", epochs=30, runs_dir=str(tmp_path / "runs"), name="a", quiet=True
        )
    )
    pt = tmp_path / "weights.pt"
    torch.save(first.model.state_dict(), pt)
    res = run_tk(
        "train",
        "circle",
        "--epochs",
        "1",
        "--lr",
        "1e-9",
        "--init-weights",
        str(pt),
        "--name",
        "b",
        "-q",
        cwd=tmp_path,
    )
    assert res.code == 0, res.err
    summary = json.loads((tmp_path / "runs/circle/b/summary.json").read_text())
    assert summary["test"]["accuracy"] >= first.summary["test"]["accuracy"] - 0.01


def test_no_torch_load_without_weights_only_true():
    """Lint: every torch.load( call in the code base passes weights_only=True."""
    offenders = []
    for path in [
        *REPO.glob("toolkit/**/*.py"),
        *REPO.glob("plugins/**/*.py"),
        *REPO.glob("scripts/**/*.py"),
    ]:
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start() : text.find(")", m.start()) + 1]
            if "weights_only=True" not in call:
                line = text[: m.start()].count("\n") + 1
                offenders.append(f"{path.relative_to(REPO)}:{line}")
    assert offenders == []


# ------------------------------------------------------ files that run code
def _exported_run(tmp_path: Path, fmt: str) -> Path:
    from toolkit.export import export_run

    cfg = TrainConfig(
        model="circle", epochs=20, runs_dir=str(tmp_path / "runs"), name="x", quiet=True
    )
    run = train(cfg).run_dir
    export_run(run, fmt, echo=lambda *_: None, echo_err=lambda *_: None)
    return run


def test_torchscript_from_unknown_origin_needs_trust(tmp_path):
    import torch

    run = _exported_run(tmp_path, "torchscript")
    points = tmp_path / "points.csv"
    points.write_text("0.1,0.2\n0.9,-0.3\n")
    ours = run / "model.torchscript.pt"
    copy = tmp_path / "copy.torchscript.pt"
    copy.write_bytes(ours.read_bytes())  # the bytes tk wrote: its manifest vouches for them
    ok = run_tk("predict", str(copy), "--input", str(points), cwd=tmp_path)
    assert ok.code == 0, ok.err

    # A file built elsewhere that carries a copy of tk's metadata (forged provenance).
    extra = {"tk_metadata.json": ""}
    torch.jit.load(str(ours), _extra_files=extra)
    forged = tmp_path / "forged.torchscript.pt"
    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(2, 1)))
    torch.jit.save(scripted, str(forged), _extra_files=extra)
    for cmd in (["verify", str(forged)], ["predict", str(forged), "--input", str(points)]):
        res = run_tk(*cmd, cwd=tmp_path)
        assert res.code == 2, res.err
        assert res.err.strip().startswith(
            f"tk: error: refusing to load TorchScript file {forged}: loading it runs code"
        )
        assert "(try: --trust if you trust where it came from)" in res.err
    trusted = run_tk("predict", str(forged), "--input", str(points), "--trust", cwd=tmp_path)
    assert trusted.code == 0, trusted.err


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "link.bin"])
def test_onnx_external_data_outside_its_directory_is_refused(tmp_path, location):
    import onnx

    run = _exported_run(tmp_path, "onnx")
    proto = onnx.load(str(run / "model.onnx"))
    init = proto.graph.initializer[0]
    init.ClearField("raw_data")
    del init.float_data[:]
    init.data_location = onnx.TensorProto.EXTERNAL
    entry = init.external_data.add()
    entry.key, entry.value = "location", location
    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    if location == "link.bin":
        (evil_dir / "link.bin").symlink_to(tmp_path / "secret.bin")
    evil = evil_dir / "model.onnx"
    evil.write_bytes(proto.SerializeToString())
    res = run_tk("verify", str(evil), "--run", str(run), cwd=tmp_path)
    assert res.code == 3, res.err
    assert f"reads external data from {location!r}, outside the model's directory" in res.err
