"""`tk predict`: exported files and runs give the eager model's labels on user data;
malformed input is exit 2 naming the row and column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import quiet
from fixtures.export_models import make_registry, train_run

from toolkit.errors import UsageError
from toolkit.export import export_run
from toolkit.models import load_data, rebuild_model
from toolkit.plugins import load_plugins
from toolkit.predict import predict, read_input
from toolkit.runs import open_run

REGISTRY = load_plugins(warn=False).registry


@pytest.fixture(scope="module")
def circle(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict")
    run_dir = train_run(REGISTRY, "circle", root / "runs", epochs=300, name="p")
    (onnx_result,) = export_run(run_dir, "onnx", registry=REGISTRY, echo=quiet)
    # The test split, as a user would hand it over: a CSV with a header row.
    spec = REGISTRY.dataset("circles")
    test = load_data(spec, spec.resolve_params({})).test
    csv = root / "points.csv"
    rows = [",".join(f"{v:.9g}" for v in r) for r in test.x.tolist()]
    csv.write_text("x,y\n" + "\n".join(rows) + "\n")
    with torch.no_grad():
        logits = rebuild_model(open_run(run_dir), REGISTRY)(test.x)
    eager = (logits.reshape(-1) > 0).long().tolist()
    np.save(root / "points.npy", test.x.numpy())
    (root / "points.json").write_text(json.dumps(test.x.tolist()))
    return {
        "root": root,
        "run": run_dir,
        "onnx": onnx_result.path,
        "csv": csv,
        "eager": eager,
        "y": test.y.long().tolist(),
    }


def test_tk_predict_on_circle_export_matches_eager_labels(circle, tk):
    res = tk("predict", str(circle["onnx"]), "--input", str(circle["csv"]), "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["runtime"] == "onnxruntime-cpu" and out["task"] == "binary"
    labels = [p["label"] for p in out["predictions"]]
    assert labels == circle["eager"]
    assert len(labels) == 200
    assert np.mean(np.array(labels) == np.array(circle["y"])) > 0.95  # it learned circles
    names = {p["class"] for p in out["predictions"]}
    assert names == {"outer", "inner"}
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-9 for p in out["predictions"])
    assert all(p["probability"] >= 0.5 for p in out["predictions"])

    bad = circle["root"] / "bad.csv"
    bad.write_text("x,y\n0.1,0.2\n0.3,oops\n")
    res = tk("predict", str(circle["onnx"]), "--input", str(bad))
    assert res.code == 2
    assert "row 3, column 2: 'oops' is not a number" in res.err


def test_every_input_format_and_the_run_itself_agree(circle):
    want = circle["eager"]
    for name in ("points.csv", "points.npy", "points.json"):
        got = predict(circle["onnx"], circle["root"] / name, registry=REGISTRY)
        assert [r["label"] for r in got.rows] == want, name
    eager = predict(circle["run"], circle["csv"], registry=REGISTRY)
    assert eager.runtime == "eager" and [r["label"] for r in eager.rows] == want
    text = eager.lines()
    assert text[0].split() == ["row", "class", "label", "probability"] and len(text) == 201


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("1,2,3\n", ".csv", "row 1: 3 values, the model takes 2"),
        ("1,2\n\n4\n", ".csv", "row 3: 1 value, the model takes 2"),
        ("1,2\n3,nan\n", ".csv", "row 2, column 2: 'nan' is not a finite number"),
        ("", ".csv", "has no data rows"),
        ("x,y\n", ".csv", "has no data rows"),
        ('[[1, 2], [3, "a"]]', ".json", "row 2, column 2: 'a' is not a number"),
        ("[[1, 2], [true, 2]]", ".json", "row 2, column 1: True is not a number"),
        ("[]", ".json", "has no samples"),
        ('{"rows": 1}', ".json", "expected a list of samples"),
        ("1 2", ".json", "not valid JSON"),
        ("1,2", ".parquet", "unknown input type"),
    ],
)
def test_malformed_input_names_row_and_column(tmp_path, content, suffix, message):
    path = tmp_path / f"input{suffix}"
    path.write_text(content)
    with pytest.raises(UsageError) as info:
        read_input(path, [2], None)
    assert message in str(info.value) and info.value.exit_code == 2


def test_npy_shapes_and_integer_scaling(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(UsageError, match=r"shape \(4, 3\)"):
        read_input(tmp_path / "bad.npy", [2], None)
    np.save(tmp_path / "one.npy", np.array([1.0, 2.0], np.float32))
    assert read_input(tmp_path / "one.npy", [2], None).shape == (1, 2)
    np.save(tmp_path / "img.npy", np.full((3, 1, 2, 2), 255, np.uint8))
    x = read_input(tmp_path / "img.npy", [1, 2, 2], 1 / 255)
    assert x.dtype == np.float32 and x.shape == (3, 1, 2, 2) and np.allclose(x, 1.0)
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    with pytest.raises(UsageError, match="numbers are needed"):
        read_input(tmp_path / "text.npy", [2], None)


def test_multiclass_predictions_use_class_names_and_softmax(tmp_path):
    reg = make_registry()
    run_dir = train_run(reg, "blob-classes", tmp_path / "runs", epochs=20)
    (r,) = export_run(run_dir, "pt2", registry=reg, echo=quiet)
    pts = tmp_path / "pts.json"
    pts.write_text(json.dumps({"inputs": [[0, 3], [-3, -2], [3, -2]]}))
    got = predict(r.path, pts, registry=reg)
    assert [row["class"] for row in got.rows] == ["top", "left", "right"]
    for row in got.rows:
        assert len(row["probabilities"]) == 3 and abs(sum(row["probabilities"]) - 1) < 1e-6
        assert row["probability"] == max(row["probabilities"])


def test_static_batch_export_predicts_any_number_of_rows(circle, tmp_path):
    (r,) = export_run(
        circle["run"],
        "onnx",
        out=tmp_path / "b4.onnx",
        static_batch=4,
        registry=REGISTRY,
        echo=quiet,
    )
    got = predict(r.path, circle["csv"], registry=REGISTRY)
    assert [row["label"] for row in got.rows] == circle["eager"]  # 200 rows in chunks of 4


def test_regression_predictions_are_values(tmp_path):
    reg = make_registry()
    run_dir = train_run(reg, "plane", tmp_path / "runs", epochs=300)
    results = export_run(run_dir, "all", registry=reg, echo=quiet, echo_err=quiet)
    assert all(r.verify.passed and r.verify.task == "regression" for r in results)
    pts = tmp_path / "ab.csv"
    pts.write_text("1,0\n0,1\n")
    for r in results:
        got = predict(r.path, pts, registry=reg)
        assert got.task == "regression" and "label" not in got.rows[0]
        np.testing.assert_allclose(
            [row["values"] for row in got.rows], [[2.5, 1.0], [-0.5, 1.0]], atol=0.05
        )
