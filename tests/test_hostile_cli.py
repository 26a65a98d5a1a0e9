"""Hostile arguments and what a new user hits (issue 19): every bad option, TOML value
or option pair is one ``tk: error:`` line with exit 2 and nothing written; several
inputs are all predicted; an export that finds some files skips them, names them and
writes the rest; a slow or missing plugin is named on stderr.

Every case runs tk in this process (``tk_main``) except the slow plugin, whose
import has to block a real ``tk`` process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
from conftest import build_wheel, pip_install_target
from hostile import assert_one_line, assert_unchanged, run, snapshot

from toolkit import plugins


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty working directory, no TK_* settings from the developer."""
    for key in [k for k in os.environ if k.startswith("TK_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(capsys, root: Path, *args: str, needles: tuple[str, ...] = (), code: int = 2) -> str:
    """``tk ARGS`` is one error line (exit ``code``) and ``root`` is left as it was."""
    before = snapshot(root)
    line = assert_one_line(run(capsys, *args), code, *needles)
    assert_unchanged(before, snapshot(root))
    return line


# --------------------------------------------------------------- every numeric train option
@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--nproc", "0", "--nproc must be at least 1, got 0"),
        ("--max-restarts", "-1", "--max-restarts must not be negative"),
        ("--keep-checkpoints", "-1", "--keep-checkpoints must not be negative, got -1"),
        ("--grad-clip", "-1", "--grad-clip must be positive, got -1"),
        ("--grad-clip", "0", "--grad-clip must be positive, got 0"),
        ("--min-delta", "nan", "--min-delta must be a finite number, got nan"),
        ("--min-delta", "-0.5", "--min-delta must not be negative"),
        ("--lr", "inf", "--lr must be a finite number, got inf"),
        ("--lr", "0", "--lr must be positive"),
        ("--epochs", "0", "--epochs must be at least 1, got 0"),
        ("--batch-size", "0", "--batch-size must be at least 1"),
        ("--batch-size", "-3", "--batch-size must be a whole number or 'full', got '-3'"),
        ("--val-fraction", "0.9", "--val-fraction must be in (0, 0.5], got 0.9"),
        ("--val-fraction", "nan", "--val-fraction must be a finite number"),
        ("--weight-decay", "-0.1", "--weight-decay must not be negative"),
        ("--momentum", "nan", "--momentum must be a finite number"),
        ("--warmup-epochs", "-1", "--warmup-epochs must not be negative"),
        ("--early-stop", "0", "--early-stop must be at least 1"),
        ("--log-every", "0", "--log-every must be at least 1"),
        ("--checkpoint-every", "-1", "--checkpoint-every must not be negative"),
        ("--workers", "-2", "--workers must not be negative"),
        ("--seed", "-1", "--seed must be in [0, 4294967295], got -1"),
    ],
)
def test_bad_train_number_is_one_line_and_writes_nothing(project, capsys, option, value, needle):
    refused(capsys, project, "train", "circle", option, value, needles=(needle,))
    assert not (project / "runs").exists()


# ---------------------------------------------------------------------------- --config TOML
@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ('epochs = "three"\n', "exp.toml: epochs must be a whole number, got 'three'"),
        ("epochs = 2.5\n", "exp.toml: epochs must be a whole number, got 2.5"),
        ("epochs = true\n", "exp.toml: epochs must be a whole number, got True"),
        ("epochs = 0\n", "exp.toml: epochs must be at least 1, got 0"),
        ("lr = nan\n", "exp.toml: lr must be a finite number, got nan"),
        ("grad_clip = -1\n", "exp.toml: grad_clip must be positive"),
        ("epoch = 3\n", "exp.toml: unknown key(s) epoch"),
        ("params = 3\n", "exp.toml: params must be a table"),
        ("trackers = 5\n", "exp.toml: trackers must be a list of names, got 5"),
        ("quiet = 1\n", "exp.toml: quiet must be true or false, got 1"),
        ("epochs = = 3\n", "exp.toml is not valid TOML"),
    ],
)
def test_bad_toml_value_names_file_and_key(project, capsys, toml, needle):
    (project / "exp.toml").write_text(toml)
    refused(capsys, project, "train", "circle", "--config", "exp.toml", needles=(needle,))
    assert not (project / "runs").exists()


def test_binary_config_file_is_one_line(project, capsys):
    (project / "exp.toml").write_bytes(b"\xff\xfe\x00garbage\x80")
    refused(capsys, project, "train", "circle", "-c", "exp.toml", needles=("not valid TOML",))


# ---------------------------------------------------------- Typer's own usage errors, as tk's
@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("train", "circle", "--epochs", "ten"), ("--epochs expects a whole number, got 'ten'",)),
        (("train", "circle", "--lr=abc"), ("--lr expects a number, got 'abc'",)),
        (("train", "circle", "--epoch", "3"), ("no such option: --epoch", "tk train --help")),
        (("predict",), ("missing argument 'target'", "(try: tk predict --help)")),
        (("trian",), ("no such command 'trian'", "did you mean 'train'", "(try: tk --help)")),
        (("export", "--weights"), ("'--weights' requires an argument", "tk export --help")),
        (("runs", "--limit", "x"), ("--limit/-n expects a whole number", "tk runs --help")),
    ],
)
def test_usage_errors_are_tk_lines_not_boxes(project, capsys, args, needles):
    line = refused(capsys, project, *args, needles=needles)
    assert "Usage:" not in line and "│" not in line


def test_name_beside_out_is_refused(project, capsys):
    refused(
        capsys,
        project,
        "train",
        "circle",
        "--name",
        "a",
        "--out",
        "b",
        needles=("--name a and --out b both say where the run goes",),
    )


def test_out_naming_an_existing_file_is_refused_and_the_file_kept(project, capsys):
    (project / "notes.txt").write_text("my notes")
    refused(capsys, project, "train", "circle", "--out", "notes.txt", needles=("is a file",))
    refused(capsys, project, "train", "circle", "--out", "notes.txt", "--overwrite")
    refused(capsys, project, "train", "circle", "--out", "notes.txt/run", needles=("is a file",))
    assert (project / "notes.txt").read_text() == "my notes"


def _read_only_dir(project: Path) -> Path:
    """A folder nobody can write into: chmod 555, or /sys where root ignores the bits."""
    folder = project / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder if not os.access(folder, os.W_OK) else Path("/sys")


@pytest.mark.parametrize("option", ["--out", "--runs-dir"])
def test_read_only_out_or_runs_root_is_one_line(project, capsys, option):
    target = _read_only_dir(project) / "tk-run"
    try:
        refused(capsys, project, "train", "circle", option, str(target), needles=("not writable",))
    finally:
        (project / "ro").chmod(0o755)
    assert not target.exists()


# ------------------------------------------------- every numeric option of the other commands
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("verify", "m.onnx", "--atol", "nan"), "--atol must be a finite number"),
        (("verify", "m.onnx", "--rtol", "-1"), "--rtol must not be negative"),
        (("verify", "m.onnx", "--min-agreement", "2"), "--min-agreement must be in [0, 1]"),
        (("export", "--calibration-rows", "-5"), "--calibration-rows must not be negative"),
        (("export", "--min-agreement", "nan"), "--min-agreement must be a finite number"),
        (("export", "--static-batch", "0"), "--static-batch must be at least 1"),
        (("bench", "m.onnx", "--rounds", "0"), "--rounds must be at least 1"),
        (("bench", "m.onnx", "--threads", "0"), "--threads must be at least 1"),
        (("bench", "m.onnx", "--batch-sizes", "0"), "--batch-sizes: 0 is not a positive"),
        (("runs", "--limit", "-1"), "--limit must not be negative"),
        (("plugins", "check", "tk-torch", "--epochs", "0"), "--epochs must be at least 1"),
    ],
)
def test_bad_number_of_other_commands_is_one_line(project, capsys, args, needle):
    refused(capsys, project, *args, needles=(needle,))


# ------------------------------------------------------------------------------ plugins
def test_unknown_tk_load_plugins_name_is_a_warning(project, capsys, monkeypatch):
    monkeypatch.setenv("TK_LOAD_PLUGINS", "tk-torch,tk-nosuch")
    plugins.reset()
    try:
        out = run(capsys, "list", "datasets")
    finally:
        plugins.reset()
    assert out.code == 0 and "circles" in out.out
    installed = sorted({ep.dist.name for ep in entry_points(group="tk")})
    assert out.err.splitlines() == [
        "tk: warning: TK_LOAD_PLUGINS names 'tk-nosuch', which no installed plugin has "
        f"(installed: {', '.join(installed)})"
    ]


SLOW = "import time\ntime.sleep(1.5)  # an import that blocks (a network mount, a lock)\n"
PROBE = (
    "import json, sys\nfrom toolkit.cli import main\nmain(['list', 'models'])\n"
    "print('PROBE', json.dumps('torch' in sys.modules))\n"
)


def test_a_blocking_plugin_import_is_named_after_a_second(tmp_path):
    wheel = build_wheel(tmp_path / "w", "tk-test-slow", "0.1", {"tk_test_slow.py": SLOW}, {})
    site = pip_install_target(wheel, tmp_path / "site")
    (site / "tk_test_slow-0.1.dist-info" / "entry_points.txt").write_text(
        "[tk]\nslow = tk_test_slow\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TK_")}
    env["PYTHONPATH"] = str(site)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert time.perf_counter() - start >= 1.5
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "tk: warning: still importing plugin 'slow' from tk-test-slow 0.1 (tk_test_slow) "
        "after 1 s; TK_LOAD_PLUGINS=... skips it"
    ]
    assert "circle" in proc.stdout and "PROBE false" in proc.stdout  # no torch for a listing


def test_version_is_one_line_without_torch(project, capsys):
    from importlib import metadata

    out = run(capsys, "--version")
    assert out.code == 0 and out.out == f"tk {metadata.version('tk-torch')}\n" and not out.err


# ------------------------------------------------------------ predict: every input is predicted
@pytest.fixture(scope="module")
def circle_run(tmp_path_factory) -> Path:
    """A circle run (5 epochs), trained once for this file, and two input files."""
    from conftest import tk_main

    root = tmp_path_factory.mktemp("circle")
    assert tk_main("train", "circle", "--epochs", "5", "--out", str(root / "run"), "-q") == 0
    np.save(root / "a.npy", np.array([[0.0, 0.0], [1.0, 1.0]], dtype=np.float32))
    np.save(root / "b.npy", np.array([[0.2, -0.9]], dtype=np.float32))
    return root


def _rows(capsys, *args: str) -> list[dict]:
    out = run(capsys, "predict", *args, "--json")
    assert out.code == 0 and not out.err, out.err
    return json.loads(out.out)["predictions"]


def test_every_input_is_predicted_in_the_order_given(circle_run, capsys, monkeypatch):
    monkeypatch.chdir(circle_run)
    one = {name: _rows(capsys, "run", "--input", name) for name in ("a.npy", "b.npy")}
    probs = [r["probability"] for r in one["a.npy"] + one["b.npy"]]
    repeated = _rows(capsys, "run", "--input", "a.npy", "--input", "b.npy")
    globbed = _rows(capsys, "run", "--input", "a.npy", "b.npy")  # `--input *.npy`, expanded
    positional = _rows(capsys, "run", "b.npy", "a.npy")
    assert [r["probability"] for r in repeated] == probs
    assert [r["probability"] for r in globbed] == probs
    assert [r["probability"] for r in positional] == probs[2:] + probs[:2]
    assert [r["row"] for r in repeated] == [1, 2, 3]


def test_predict_without_input_or_with_one_missing_is_one_line(circle_run, capsys, monkeypatch):
    monkeypatch.chdir(circle_run)
    refused(capsys, circle_run, "predict", "run", needles=("no input given",))
    refused(capsys, circle_run, "predict", "run", "-i", "a.npy", "gone.npy", needles=("gone.npy",))


# ---------------------------------------------- export: what exists is skipped, the rest written
def test_export_writes_the_missing_formats_and_names_the_skipped(circle_run, capsys):
    run_dir = circle_run / "run"
    # An earlier `tk export RUN` left model.onnx; its bytes stand in (tk skips, never reads it).
    (run_dir / "model.onnx").write_bytes(b"an earlier export")
    out = run(capsys, "export", str(run_dir), "--format", "all")
    assert out.code == 0, out.err
    assert out.out.splitlines()[0] == (
        f"onnx: skipped {run_dir / 'model.onnx'}: it already exists (--overwrite to replace it)"
    )
    assert (run_dir / "model.onnx").read_bytes() == b"an earlier export"
    assert (run_dir / "model.torchscript.pt").is_file() and (run_dir / "model.pt2").is_file()
    # Everything there now: nothing to do is one line, and nothing changes.
    refused(
        capsys,
        circle_run,
        "export",
        str(run_dir),
        "--format",
        "all",
        needles=("model.onnx", "model.pt2", "already exist", "--overwrite to replace them"),
    )


# ------------------------------------------------------------------------- tk runs display
def _fake_run(root: Path, name: str, mean: list[float]) -> None:
    """A finished run whose selected epoch (2) is not its last (3)."""
    run_dir = root / "mlp" / name
    run_dir.mkdir(parents=True)
    config = {"model": "mlp", "dataset": "csv", "recipe": {"epochs": 3}}
    config["preprocess"] = {"features": {"mean": mean}}
    summary = {
        "epochs": 3,
        "final": {"epoch": 3, "val_loss": 0.9, "val_accuracy": 0.5},
        "selected": {
            "epoch": 2,
            "monitor": "val_loss",
            "value": 0.2,
            "metrics": {"val_loss": 0.2, "val_accuracy": 0.875},
        },
        "test": {"accuracy": 0.8},
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "status.json").write_text(json.dumps({"status": "finished"}))


def test_runs_shows_the_selected_epoch_and_summarises_long_values(project, capsys):
    rng = np.random.default_rng(0)
    _fake_run(project / "runs", "a", rng.normal(size=13).tolist())
    _fake_run(project / "runs", "b", rng.normal(size=13).tolist())
    listing = run(capsys, "runs")
    row = next(line for line in listing.out.splitlines() if line.startswith("mlp/a"))
    assert "87.50%" in row.split() and "50.00%" not in row.split()  # selected, not last
    compare = run(capsys, "runs", "compare", "mlp/a", "mlp/b")
    assert compare.code == 0, compare.err
    mean_row = next(x for x in compare.out.splitlines() if x.startswith("preprocess.features"))
    cells = mean_row.split("  ")
    assert max(len(c) for c in cells) <= 60, mean_row
    assert "[13 floats, sha " in mean_row
