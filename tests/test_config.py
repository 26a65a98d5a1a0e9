"""Configuration precedence through the real CLI: defaults <- recipe <- TOML <- command
line <- (on resume) the run's recorded values unless the command line gives them."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from toolkit.errors import EXIT_USAGE


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_no_compile_beats_toml_compile_true_also_in_a_torchrun_worker(tk):
    # An on/off flag given as "off" is given: it must beat the file's "on".
    cfg = tk.cwd / "exp.toml"
    cfg.write_text("compile = true\nmin_delta = 0.5\nepochs = 2\n[params]\nhidden = 6\n")
    args = ["circle", "--config", str(cfg), "--no-compile", "--min-delta", "0", "-q"]
    res = tk("train", *args, "--name", "one")
    assert res.code == 0, res.err
    config = _read(tk.cwd / "runs/circle/one/config.json")
    assert config["compile"] is False
    assert config["selection"]["min_delta"] == 0.0  # 0 given beats the file's 0.5
    assert config["params"] == {"hidden": 6}  # the file still counts where not overridden
    # The effect: an eager run says nothing about torch.compile (which, asked for on a
    # machine that cannot compile, warns that it trains eagerly).
    assert "compile" not in res.err
    # torchrun's workers parse the same command line: rank 0 records the same config
    # (only the start time and the world size differ).
    res = tk("train", *args, "--name", "ddp", "--nproc", "2")
    assert res.code == 0, res.err
    ddp = _read(tk.cwd / "runs/circle/ddp/config.json")
    assert ddp["world_size"] == 2 and config["world_size"] == 1
    volatile = ("created", "world_size")
    assert {k: v for k, v in ddp.items() if k not in volatile} == {
        k: v for k, v in config.items() if k not in volatile
    }


def test_explicit_min_delta_zero_survives_resume(tk):
    # The first leg would stop early at epoch 4 with min_delta 100 (no val_loss change
    # of the tiny circle model is that large: epochs 2, 3 and 4 never "improve").
    first = tk("train", "circle", "--name", "r", "--epochs", "2", "--min-delta", "100",
               "--early-stop", "3", "--checkpoint-every", "1", "--precision", "bf16",
               "-q")  # fmt: skip
    assert first.code == 0, first.err
    run = tk.cwd / "runs/circle/r"
    assert _read(run / "config.json")["selection"]["min_delta"] == 100.0
    res = tk("train", "--resume", str(run), "--epochs", "6", "--min-delta", "0",
             "--allow-config-change", "-q")  # fmt: skip
    assert res.code == 0, res.err
    resumed = _read(run / "config.json")
    assert resumed["selection"]["min_delta"] == 0.0
    assert resumed["precision"] == "bf16"  # not given again: the run's own value holds
    # The effect: with min_delta 0 every falling val_loss counts, so no early stop at 4.
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [row["val_loss"] for row in history if "val_loss" in row]
    assert all(b < a for a, b in itertools.pairwise(losses)), losses
    assert _read(run / "summary.json")["epochs"] == 6


@pytest.mark.parametrize(
    ("toml", "key"),
    [('epochs = "ten"\n', "epochs"), ("lr = true\n", "lr"), ("colour = 3\n", "colour")],
)
def test_bad_toml_key_is_one_line_naming_file_and_key(tk, toml, key):
    cfg = tk.cwd / "bad.toml"
    cfg.write_text(toml)
    res = tk("train", "circle", "--config", str(cfg), "-q")
    assert res.code == EXIT_USAGE, (res.out, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    assert lines[0].startswith("tk: error: ")
    assert str(cfg) in lines[0] and key in lines[0], lines[0]
    assert not (tk.cwd / "runs").exists()


def test_tracker_param_beats_a_toml_tracker_table(tk):
    # A [trackers.NAME] table selects the tracker with its options; --tracker-param
    # NAME.KEY=VALUE beats the table's value. The effect: tensorboard writes its event
    # file where the winning log_dir says, and nowhere else.
    cfg = tk.cwd / "exp.toml"
    cfg.write_text('name = "tb"\nepochs = 2\n[trackers.tensorboard]\nlog_dir = "tb-file"\n')
    res = tk("train", "circle", "--config", str(cfg), "-q",
             "--tracker-param", "tensorboard.log_dir=tb-cli")  # fmt: skip
    assert res.code == 0, res.err
    assert len(list((tk.cwd / "tb-cli").glob("events.out.tfevents.*"))) == 1
    assert not (tk.cwd / "tb-file").exists()
    assert not (tk.cwd / "runs/circle/tb/tensorboard").exists()  # not the default place


@pytest.mark.parametrize(
    ("args", "toml", "message"),
    [
        (["--tracker", "tensorboard", "--tracker-param", "tensorboard.colour=red"], None,
         "tracker option 'tensorboard.colour' is not an option"),
        (["--tracker-param", "tensorboard.log_dir=x"], None,
         "tracker option 'tensorboard.log_dir' is not an option of the selected trackers"),
        ([], "[trackers.nosuch]\nx = 1\n", "unknown tracker 'nosuch'"),
        ([], "[trackers]\ntensorboard = 3\n", "trackers.tensorboard must be a table"),
    ],
)  # fmt: skip
def test_unknown_tracker_or_option_is_one_line(tk, args, toml, message):
    if toml is not None:
        (tk.cwd / "t.toml").write_text(toml)
        args = [*args, "--config", str(tk.cwd / "t.toml")]
    res = tk("train", "circle", "-q", *args)
    assert res.code == EXIT_USAGE, (res.out, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tk: error: "), res.err
    assert message in lines[0], lines[0]
    assert not (tk.cwd / "runs").exists()
