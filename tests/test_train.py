"""`tk train`: the shared loop end to end, the run directory, and every user error."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from conftest import pythonpath

from toolkit.runs import sha256_file

LINE = re.compile(
    r"^Epoch: (\d+) \| Loss: \d+\.\d{5}, Accuracy: \d+\.\d{2}% \| "
    r"Val loss: \d+\.\d{5}, Val acc: \d+\.\d{2}%$"
)


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.mark.slow
def test_train_circle_default_reaches_99_percent(tk):
    res = tk("train", "circle")
    assert res.code == 0, res.err
    lines = [x for x in res.out.splitlines() if x.startswith("Epoch:")]
    assert [int(LINE.match(x).group(1)) for x in lines] == list(range(100, 1001, 100))
    run = (tk.cwd / "runs" / "latest").resolve()
    assert run.parent.name == "circle"
    summary = _summary(run)
    assert summary["test"]["accuracy"] >= 0.99  # of the epoch validation selected
    assert 1 <= summary["selected"]["epoch"] <= 1000
    assert summary["selected"]["monitor"] == "val_loss"
    assert summary["epochs"] == 1000
    assert res.out.splitlines()[-1].startswith("Done: 1000 epochs")
    assert "validation: 80 of 800 training rows held out (stratified by class, seed 42)" in res.out

    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "circle" and config["dataset"] == "circles"
    assert config["params"] == {"hidden": 10}
    assert config["recipe"]["optimizer"] == "adam" and config["recipe"]["lr"] == 0.01
    assert config["versions"]["model_plugin"]["distribution"] == "tk-torch"
    assert config["seed"] == 42 and config["device"] == "cpu"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 1001))
    with open(run / "metrics.csv") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert len(csv_rows) == 1000
    assert float(csv_rows[-1]["val_accuracy"]) == pytest.approx(rows[-1]["val_accuracy"])
    assert summary["weights_sha256"] == sha256_file(run / "model.safetensors")
    assert summary["last_weights_sha256"] == sha256_file(run / "last.safetensors")


@pytest.mark.slow
def test_linear_circle_model_stays_near_chance(tk):
    res = tk("train", "circle-v0", "--quiet")
    assert res.code == 0 and res.out == ""
    acc = _summary(tk.cwd / "runs" / "latest")["test"]["accuracy"]
    assert 0.35 <= acc <= 0.65


def test_same_seed_gives_identical_weights(tk):
    hashes = []
    for name in ("a", "b", "c"):
        seed = "7" if name != "c" else "8"
        res = tk("train", "circle", "--epochs", "60", "--seed", seed, "--name", name, "-q")
        assert res.code == 0, res.err
        hashes.append(sha256_file(tk.cwd / "runs" / "circle" / name / "model.safetensors"))
    assert hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]


def test_seed_recipe_is_one_flag_away(tk):
    res = tk(
        "train",
        "circle",
        "--optimizer",
        "sgd",
        "--lr",
        "0.1",
        "--epochs",
        "20",
        "--batch-size",
        "64",
        "--momentum",
        "0.9",
        "--log-every",
        "5",
    )
    assert res.code == 0, res.err
    assert len([x for x in res.out.splitlines() if LINE.match(x)]) == 4
    config = json.loads((tk.cwd / "runs" / "latest" / "config.json").read_text())
    assert config["recipe"] == {
        "optimizer": "sgd",
        "lr": 0.1,
        "epochs": 20,
        "batch_size": 64,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "scheduler": "none",
        "warmup_epochs": 0,
    }


def test_config_file_and_cli_override(tk):
    cfg = tk.cwd / "exp.toml"
    cfg.write_text('epochs = 30\nlr = 0.05\nname = "fromfile"\n[params]\nhidden = 6\n')
    res = tk("train", "circle", "--config", str(cfg), "--epochs", "12", "-q")
    assert res.code == 0, res.err
    config = json.loads((tk.cwd / "runs/circle/fromfile/config.json").read_text())
    assert config["recipe"]["epochs"] == 12 and config["recipe"]["lr"] == 0.05
    assert config["params"] == {"hidden": 6}


def _assert_one_line_error(res, code: int, message: str, cwd: Path) -> None:
    assert res.code == code, (res.out, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    assert lines[0].startswith("tk: error: ")
    assert message in lines[0], lines[0]
    assert "Traceback" not in res.err
    assert not (cwd / "runs").exists(), "a failed command left a run directory behind"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["circel"], "unknown model 'circel'; did you mean 'circle'? (try: tk list models)"),
        (["circle", "--param", "width=3"], "circle: unknown parameter 'width'; allowed: hidden"),
        (["circle", "--param", "hidden=wide"], "parameter 'hidden' expects int, got 'wide'"),
        (["circle", "--param", "hidden"], "--param expects key=value, got 'hidden'"),
        (["circle", "--dataset", "circels"], "unknown dataset 'circels'; did you mean 'circles'?"),
        (["circle", "--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'"),
        (["circle", "--epochs", "0"], "--epochs must be at least 1"),
        (["circle", "--batch-size", "lots"], "--batch-size must be a whole number or 'full'"),
        (
            ["circle", "--device", "cuda"],
            "CUDA is not available on this machine (try: --device cpu)",
        ),
        (["circle", "--data-param", "noise=loud"], "parameter 'noise' expects float"),
    ],
)
def test_usage_errors_exit_2_and_leave_nothing(tk, args, message):
    _assert_one_line_error(tk("train", *args), 2, message, tk.cwd)


def test_shape_and_task_mismatches(tk, plugin_site):
    env = pythonpath(plugin_site["good"])
    _assert_one_line_error(
        tk("train", "circle", "--dataset", "wide", env=env),
        2,
        "model 'circle' takes input of shape (2,) but dataset 'wide' has features of shape (3,)",
        tk.cwd,
    )
    _assert_one_line_error(
        tk("train", "five-way", env=env),
        2,
        "model 'five-way' outputs shape (5,) per sample but dataset 'ten-classes' needs "
        "10 logits (10 classes) per sample",
        tk.cwd,
    )
    _assert_one_line_error(
        tk("train", "circle", "--dataset", "ten-classes", env=env),
        2,
        "model 'circle' is a binary model but dataset 'ten-classes' has multiclass targets",
        tk.cwd,
    )
    ok = tk("train", "wide-linear", "-q", env=env)
    assert ok.code == 0, ok.err


def test_existing_run_directory_is_refused_without_overwrite(tk):
    assert tk("train", "circle", "--epochs", "3", "--name", "keep", "-q").code == 0
    weights = tk.cwd / "runs/circle/keep/model.safetensors"
    before = sha256_file(weights)
    res = tk("train", "circle", "--epochs", "5", "--seed", "1", "--name", "keep")
    assert res.code == 2
    assert res.err.strip() == (
        "tk: error: run directory runs/circle/keep already exists "
        "(try: a new --name, or --overwrite to replace it)"
    )
    assert sha256_file(weights) == before
    out_dir = tk.cwd / "elsewhere"
    out_dir.mkdir()
    res = tk("train", "circle", "--epochs", "3", "--out", str(out_dir))
    assert res.code == 2 and "already exists" in res.err and "--out" in res.err
    res = tk("train", "circle", "--epochs", "5", "--seed", "1", "--name", "keep", "--overwrite")
    assert res.code == 0
    assert sha256_file(weights) != before
    assert (tk.cwd / "runs/latest").resolve() == (tk.cwd / "runs/circle/keep").resolve()


def test_debug_env_shows_traceback(tk):
    res = tk("train", "nope", env={"TK_DEBUG": "1"})
    assert res.code != 0 and "Traceback" in res.err and "UsageError" in res.err
