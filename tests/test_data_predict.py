"""From a CSV-trained run to deployment: the reader, the eager model and ONNX agree.

The run's ``inputs`` record (columns, categories, fill values) is all the reader
needs; the standardization is inside the model, so an exported file given the raw
rows must predict what the eager model predicts: preprocessing is not lost
between train and deploy.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import sklearn
from conftest import tk_main
from tk_data.holdout import split_rows
from tk_data.tabular import load_csv

from toolkit.errors import UsageError
from toolkit.predict.tabular import read_for_model

SKLEARN_DATA = Path(sklearn.__file__).parent / "datasets" / "data"
COLORS = ["blue", "green", "red"]


def _rows(n: int, seed: int) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    size = rng.normal(10, 3, size=n).round(3)
    weight = rng.normal(50, 20, size=n).round(2)
    color = rng.choice(COLORS, size=n)
    kind = np.where(size / 10 + (color == "red") - weight / 80 > 0.6, "keep", "drop")
    return {"size": size.tolist(), "color": color.tolist(), "weight": weight.tolist(),
            "kind": kind.tolist()}  # fmt: skip


def _write(path: Path, cols: dict[str, list], order: list[str]) -> Path:
    lines = [",".join(str(cols[k][i]) for k in order) for i in range(len(cols[order[0]]))]
    path.write_text(",".join(order) + "\n" + "\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """mlp on a CSV with a text column and gaps (fillna=mean), exported to ONNX."""
    import os

    root = tmp_path_factory.mktemp("predict")
    cols = _rows(400, 0)
    cols["weight"][3] = ""  # a gap: filled with the training rows' mean
    path = _write(root / "train.csv", cols, ["size", "color", "weight", "kind"])
    old = Path.cwd()
    os.chdir(root)
    try:
        assert tk_main("train", "mlp", "--dataset", "csv", "--data-param", f"path={path}",
                       "--data-param", "target=kind", "--data-param", "fillna=mean",
                       "--epochs", "20", "--name", "mixed") == 0  # fmt: skip
        assert tk_main("export", "runs/mlp/mixed", "--format", "onnx") == 0
    finally:
        os.chdir(old)
    return root / "runs" / "mlp" / "mixed"


def _by_hand(cols: dict[str, list], fill: dict[str, float]) -> np.ndarray:
    """The raw feature rows as the model was trained on them, written out longhand."""
    rows = []
    for i in range(len(cols["size"])):
        weight = cols["weight"][i]
        weight = fill["weight"] if weight == "" else float(weight)
        hot = [1.0 if cols["color"][i] == c else 0.0 for c in COLORS]
        rows.append([float(cols["size"][i]), *hot, weight])
    return np.asarray(rows, dtype=np.float32)


def test_exported_onnx_on_raw_rows_predicts_like_the_eager_model(run, tmp_path):
    import onnxruntime as ort
    import torch

    from toolkit.models import rebuild_model
    from toolkit.runs import open_run
    from toolkit.trust import read_metadata

    config = json.loads((run / "config.json").read_text())
    assert config["feature_names"] == ["size", "color=blue", "color=green", "color=red", "weight"]
    cols = _rows(50, 1)
    cols["weight"][7] = ""
    # Columns in another order, and the target column too: matched by name, target ignored.
    path = _write(tmp_path / "new.csv", cols, ["kind", "weight", "color", "size"])
    x = read_for_model(path, config)
    np.testing.assert_array_equal(x, _by_hand(cols, config["inputs"]["fill"]))
    meta = read_metadata(run / "model.onnx")  # the exported file carries the same record
    np.testing.assert_array_equal(read_for_model(path, meta), x)
    session = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    exported = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        eager = rebuild_model(open_run(run)).eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(exported, eager, rtol=1e-4, atol=1e-5)
    assert ((exported > 0) == (eager > 0)).all()
    assert config["preprocess"]["features"]["std"][1:4] == [1.0, 1.0, 1.0]  # one-hot: raw


def test_tk_predict_on_the_csv_agrees_with_the_exported_file_on_raw_rows(run, tmp_path, capsys):
    """``tk predict RUN|model.onnx --input new.csv``: labels by column name, same as ORT on rows."""
    import onnxruntime as ort

    cols = _rows(30, 2)
    path = _write(tmp_path / "new.csv", cols, ["weight", "size", "color"])  # no target column
    config = json.loads((run / "config.json").read_text())
    x = _by_hand(cols, config["inputs"]["fill"])
    session = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x})[0].reshape(-1)
    names = config["class_names"]
    expected = [names[int(v > 0)] for v in logits]
    gz = tmp_path / "new.csv.gz"  # training reads compressed CSVs; so does predict
    gz.write_bytes(gzip.compress(path.read_bytes()))
    np.testing.assert_array_equal(read_for_model(gz, config), x)
    for target in (run, run / "model.onnx"):
        capsys.readouterr()
        assert tk_main("predict", str(target), "--input", str(path), "--json") == 0
        rows = json.loads(capsys.readouterr().out)["predictions"]
        assert [r["class"] for r in rows] == expected


def _meta() -> dict:
    return {
        "input": {"shape": ["batch", 5]},
        "inputs": {
            "kind": "table",
            "layout": "header",
            "target": "kind",
            "columns": [
                {"name": "size", "kind": "number"},
                {"name": "color", "kind": "category", "categories": COLORS},
                {"name": "weight", "kind": "number"},
            ],
        },
    }


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("size,color\n1,red\n", ["missing column weight"]),
        ("size,color,weight,extra\n1,red,2,3\n", ["unknown column extra"]),
        ("size,weight\n1,2\n", ["missing column color"]),
        ("size,color,weight\n1,red,2\n2,purple,3\n", ["row 2", "column 'color'", "'purple'"]),
        ("size,color,weight\n1,red,2\n2,blue,x\n", ["row 2", "column 'weight'", "'x'"]),
        ("size,color,weight\n1,red,2\n2,blue,\n", ["row 2", "column 'weight'", "missing"]),
        ("1,red,2\n", ["no header", "size, color, weight"]),
    ],
)
def test_reader_names_what_does_not_fit(tmp_path, text, names):
    path = tmp_path / "rows.csv"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        read_for_model(path, _meta())
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for name in names:
        assert name in message, (name, message)


def test_reader_takes_sklearn_files_as_shipped():
    path = SKLEARN_DATA / "wine_data.csv"
    loaded = load_csv(path=str(path), target="target")
    meta = {"input": {"shape": ["batch", 13]}, "inputs": loaded["info"].inputs.to_json()}
    x = read_for_model(path, meta)
    assert x.shape == (178, 13)
    labels = np.loadtxt(path, delimiter=",", skiprows=1)[:, -1]
    train, test = split_rows(178, 0.2, labels, 0)
    np.testing.assert_array_equal(x[train], loaded["train"][0])
    np.testing.assert_array_equal(x[test], loaded["test"][0])
