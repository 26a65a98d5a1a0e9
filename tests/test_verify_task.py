"""The held-out check of `tk verify`: the file and the eager model over the run's whole test
split, their accuracy (or MAE), agreement, the worst rows, and `--min-agreement`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import quiet, tk_main
from fixtures.export_models import make_registry, train_run

from toolkit.export import export_run
from toolkit.formats import Runner
from toolkit.plugins import load_plugins
from toolkit.verify import HeldOut, check_heldout, verify_file

REGISTRY = load_plugins(warn=False).registry


@pytest.fixture(scope="module")
def circle(tmp_path_factory) -> dict[str, Path]:
    """A circle run, its float32 ONNX file and an int8 file calibrated on zeros (weak)."""
    root = tmp_path_factory.mktemp("task")
    run = train_run(REGISTRY, "circle", root / "runs", epochs=200)
    (fp32,) = export_run(run, "onnx", registry=REGISTRY, echo=quiet)
    (weak,) = export_run(
        run,
        "onnx",
        quantize="int8-static",
        calibration=np.zeros((32, 2), np.float32),
        min_agreement=0.0,  # written on purpose: the file the checks below must catch
        registry=REGISTRY,
        echo=quiet,
    )
    return {"run": run, "fp32": fp32.path, "weak": weak.path}


def test_verify_reports_the_whole_held_out_split(circle, capsys):
    assert tk_main("verify", str(circle["fp32"]), "--run", str(circle["run"]), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    (held,) = report["heldout"]
    assert held["split"] == "test" and held["rows"] == 200 and held["metric"] == "accuracy"
    assert held["agreement"] == 1.0 and held["min_agreement"] == 1.0 and held["passed"]
    assert held["eager"] == held["export"] > 0.95
    assert held["rule"] == "identical predicted labels"
    assert report["status"] == "pass" and report["quantization"] is None

    assert tk_main("verify", str(circle["fp32"])) == 0  # the table and the verdict line
    out = capsys.readouterr().out
    assert "held-out test split (200 rows, onnxruntime-cpu): label agreement 100%" in out


def test_min_agreement_decides_a_quantized_file(circle, capsys):
    weak = str(circle["weak"])
    report = verify_file(weak, registry=REGISTRY)
    held = report.heldout[0]
    assert report.quantization == "int8-static" and held.min_agreement == 0.99
    assert not report.passed and report.exit_code == 1 and held.agreement < 0.99
    assert all(c.passed for c in report.checks)  # numbers are shown, not judged
    assert "below the minimum 99%" in report.summary()
    # The worst rows first: the ones whose label changed, with eager and export side by side.
    worst = held.worst[0]
    assert not worst["agrees"] and worst["eager"] != worst["export"]
    assert set(worst) == {"index", "eager", "export", "target", "difference", "agrees"}

    assert tk_main("verify", weak) == 1
    out = capsys.readouterr().out
    assert "rows that differ most" in out and "not judged" in out
    lower = f"{held.agreement - 0.01:.4f}"
    assert tk_main("verify", weak, "--min-agreement", lower, "--json") == 0
    assert json.loads(capsys.readouterr().out)["heldout"][0]["passed"]
    assert tk_main("verify", weak, "--min-agreement", "1.5") == 2
    assert "must be in [0, 1]" in capsys.readouterr().err


def test_regression_agreement_is_rows_within_the_rule(tmp_path):
    reg = make_registry()
    run = train_run(reg, "plane", tmp_path / "runs", epochs=300)
    (r,) = export_run(run, "onnx", registry=reg, echo=quiet)
    held = r.verify.heldout[0]
    assert held.metric == "mae" and held.agreement == 1.0 and held.rows == 40
    assert held.eager == pytest.approx(held.export, abs=1e-5) and held.eager < 0.1
    assert "sd" in held.rule


def _runner(fn) -> Runner:
    return Runner("fake", lambda x: [fn(x)])


def test_check_heldout_counts_labels_and_ranks_the_worst_rows():
    x = np.linspace(-1, 1, 10, dtype=np.float32).reshape(10, 1)
    y = (x[:, 0] > 0).astype(np.int64)
    heldout = HeldOut(x, y)
    eager = x.astype(np.float64)
    # Flips rows 4 and 5 (the ones nearest 0) and nudges every other row a little.
    flipped = _runner(lambda a: np.where(np.abs(a) < 0.2, -a, a * 1.01))
    rep = check_heldout(flipped, eager, heldout, "binary", 0.8)
    assert rep.agreement == 0.8 and rep.passed and rep.eager == 1.0 and rep.export == 0.8
    assert {w["index"] for w in rep.worst[:2]} == {4, 5}
    assert [w["agrees"] for w in rep.worst[:3]] == [False, False, True]
    strict = check_heldout(flipped, eager, heldout, "binary", 1.0)
    assert not strict.passed
    broken = check_heldout(_runner(lambda a: 1 / 0), eager, heldout, "binary", 0.0)
    assert not broken.passed and broken.error.startswith("runtime error")


def test_static_batch_files_are_fed_their_own_batch(circle, tmp_path):
    (r,) = export_run(
        circle["run"],
        "onnx",
        out=tmp_path / "b8.onnx",
        static_batch=8,  # 200 rows: 25 batches of 8 (and no padding needed) ...
        registry=REGISTRY,
        echo=quiet,
    )
    assert r.verify.heldout[0].agreement == 1.0
    (r,) = export_run(
        circle["run"],
        "onnx",
        out=tmp_path / "b7.onnx",
        static_batch=7,  # ... and 29 batches of 7, the last one padded
        registry=REGISTRY,
        echo=quiet,
    )
    assert r.verify.heldout[0].agreement == 1.0 and r.verify.heldout[0].rows == 200
