"""``--augment``: training batches only, per sample, seeded, recorded, and exact on resume.

The data are scikit-learn's digits written as PNGs (15 a class: a few-shot folder),
held in memory (augmented per batch on the device) or streamed (augmented per
sample by ``transforms.v2`` in the DataLoader workers).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, tk_main
from test_data_images import write_digits

from toolkit import augment
from toolkit.augment import AugmentedItems, BatchAugment, parse
from toolkit.models import load_data
from toolkit.plugins import get_registry
from toolkit.splits import carve_validation

FEW = ("--dataset", "imagefolder", "--data-param", "grayscale=true", "--batch-size", "16")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return write_digits(tmp_path_factory.mktemp("few") / "digits15", per_class=15)


def _rows(x: torch.Tensor) -> set[bytes]:
    return {bytes(r.contiguous().numpy().tobytes()) for r in x}


def test_presets_lists_and_refusals():
    assert parse(None) is None and parse("none") is None
    std = parse("standard")
    assert std is not None and not std.has("flip")  # presets never flip
    assert all(not parse(p).has("flip") for p in ("light", "standard"))
    both = parse("flip,standard,mixup")
    assert both.has("flip") and both.value("mixup") == 0.2 and both.value("crop") == 0.8
    # applied in one fixed order whatever was typed; values default or given
    assert [k for k, _ in parse("erase,crop=0.5").ops] == ["crop", "erase"]
    assert parse("crop=0.5").to_json() == {"spec": "crop=0.5", "ops": {"crop": 0.5}}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("blur", "unknown operation 'blur'"),
        ("crop=2", "crop=2 is out of range"),
        ("flip=1", "'flip' takes no value"),
        ("rotate=x", "rotate=x is out of range"),
    ],
)
def test_a_bad_augment_is_one_line_exit_2_and_no_run(digits, tmp_path, capsys, spec, words):
    code = tk_main("train", "cnn", *FEW, "--data-param", f"path={digits}", "--augment", spec,
                   "--runs-dir", str(tmp_path / "runs"))  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


def test_mixing_needs_classes_and_augment_needs_images(tmp_path, capsys):
    code = tk_main("train", "circle", "--augment", "crop", "--runs-dir", str(tmp_path))
    err = capsys.readouterr().err
    assert code == 2 and "applies to images" in err, err
    assert not any(tmp_path.iterdir())


def test_batch_ops_draw_per_sample_and_repeat_under_the_seed():
    x = torch.rand(1, 1, 16, 16).expand(8, 1, 16, 16).contiguous()  # one image, 8 times
    y = torch.arange(8) % 4
    aug = BatchAugment(parse("crop=0.5,rotate=30,color=0.3,erase=1.0"), 7, 4, clamp=True)
    a, ya = aug(x, y, epoch=1, index=0)
    b, _ = aug(x, y, epoch=1, index=0)
    c, _ = aug(x, y, epoch=1, index=1)
    assert a.shape == x.shape and torch.equal(ya, y)
    assert torch.equal(a, b) and not torch.equal(a, c)  # seeded by (seed, epoch, batch)
    # every sample drew its own crop, angle, colour and box: no two alike
    assert len(_rows(a)) == 8
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    _, soft = BatchAugment(parse("mixup=0.4"), 7, 4, clamp=True)(x, y, epoch=1, index=0)
    assert soft.shape == (8, 4) and torch.allclose(soft.sum(1), torch.ones(8))


def test_only_training_rows_are_augmented(digits, tmp_path, monkeypatch, capsys):
    """Instrumented: every row the augmenter sees is a training row, once per epoch."""
    seen: list[torch.Tensor] = []
    real = BatchAugment.__call__

    def spy(self, x, y, epoch, index, rank=0):
        seen.append(x.detach().cpu().clone())
        return real(self, x, y, epoch, index, rank)

    monkeypatch.setattr(BatchAugment, "__call__", spy)
    code = tk_main("train", "cnn", *FEW, "--data-param", f"path={digits}", "--epochs", "2",
                   "--augment", "standard", "--runs-dir", str(tmp_path), "--quiet")  # fmt: skip
    assert code == 0, capsys.readouterr().err
    spec = get_registry().dataset("imagefolder")
    params = spec.resolve_params({"path": str(digits), "grayscale": "true"})
    data = carve_validation(load_data(spec, params), 0.1, 42)
    scale = data.spec.feature_scale
    train = _rows(data.train.x.float() * scale)
    held = _rows(data.val.x.float() * scale) | _rows(data.test.x.float() * scale)
    augmented = torch.cat(seen)
    assert len(augmented) == 2 * len(data.train)  # each training row, each epoch
    assert _rows(augmented) <= train and not (_rows(augmented) & held)
    config = json.loads(next(tmp_path.glob("cnn/*/config.json")).read_text())
    assert config["augment"]["spec"] == "standard" and "crop" in config["augment"]["ops"]


def test_streamed_folders_augment_in_the_workers_per_sample(digits, tmp_path, monkeypatch):
    """A folder over max-memory-mb: transforms.v2 per training sample, seeded by position."""
    keys: list[tuple[int, int]] = []
    real = AugmentedItems.__getitem__

    def spy(self, key):
        keys.append(key)
        return real(self, key)

    monkeypatch.setattr(AugmentedItems, "__getitem__", spy)
    args = ("train", "cnn", *FEW, "--data-param", f"path={digits}", "--data-param",
            "max-memory-mb=0", "--epochs", "1", "--augment", "standard", "--quiet")  # fmt: skip
    assert tk_main(*args, "--runs-dir", str(tmp_path / "a")) == 0
    first = list(keys)
    assert len(first) == 108  # the 108 training rows (120 less 12 for validation), once
    assert len({s for _, s in first}) == len(first)  # every sample its own seed
    keys.clear()
    assert tk_main(*args, "--runs-dir", str(tmp_path / "b")) == 0
    assert keys == first  # the same order and the same draws: deterministic
    w = [next((tmp_path / r).glob("cnn/*/model.safetensors")).read_bytes() for r in "ab"]
    assert w[0] == w[1]


def _status(run: Path) -> str:
    try:
        return json.loads((run / "status.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return ""


@pytest.mark.slow
def test_augmented_training_resumes_bitwise_after_sigkill(digits, tmp_path):
    args = ["cnn", *FEW, "--data-param", f"path={digits}", "--epochs", "6", "--augment",
            "standard,trivial,mixup=0.2", "--checkpoint-every", "1", "--quiet"]  # fmt: skip
    whole = tmp_path / "whole"
    assert tk_main("train", *args, "--out", str(whole)) == 0
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "toolkit", "train", *args, "--out", str(killed)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(killed.glob("checkpoints/epoch-00000[2-5].safetensors")):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint came"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _status(killed) == "running"  # killed mid-run, nothing to say so
    assert tk_main("train", "--resume", str(killed), "--quiet") == 0
    for name in ("model.safetensors", "last.safetensors"):
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
    a, b = (json.loads((d / "metrics.jsonl").read_text().splitlines()[-1]) for d in (whole, killed))
    assert a == b


def test_seeds_differ_by_epoch_batch_and_rank():
    seeds = {augment.seed_for(42, e, i, r) for e in range(3) for i in range(50) for r in range(2)}
    assert len(seeds) == 300
