"""The ``csv`` dataset and ``mlp``: real tables read as files, inferred, trained, refused.

scikit-learn's wine and breast cancer CSVs are read as shipped (their odd first
line included), never through sklearn's loaders; a linear ``mlp`` is held to
LinearRegression's R^2 on the diabetes data; Parquet and ``.npz`` give the same
rows as the CSV; every bad input is exit 2, one line naming the file and the row
or column, and no run directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sklearn
from conftest import tk_main
from tk_data.tabular import load_csv

from toolkit.errors import UsageError

SKLEARN_DATA = Path(sklearn.__file__).parent / "datasets" / "data"


def _summary(cwd: Path) -> dict:
    return json.loads((cwd / "runs" / "latest" / "summary.json").read_text())


def write_diabetes(path: Path) -> Path:
    """scikit-learn's raw diabetes files (space-separated, gzipped) as one CSV with a header."""
    x = np.loadtxt(SKLEARN_DATA / "diabetes_data_raw.csv.gz")
    y = np.loadtxt(SKLEARN_DATA / "diabetes_target.csv.gz")
    names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", "progression"]
    rows = [",".join(f"{v:g}" for v in [*r, t]) for r, t in zip(x, y, strict=True)]
    path.write_text(",".join(names) + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("name", ["wine_data", "breast_cancer"])
def test_sklearn_csv_files_as_shipped_reach_95_percent(tk, name):
    path = SKLEARN_DATA / f"{name}.csv"
    res = tk("train", "mlp", "--dataset", "csv", "--data-param", f"path={path}",
             "--data-param", "target=target")  # fmt: skip
    assert res.code == 0, res.err
    assert "scikit-learn's layout" in res.out
    summary = _summary(tk.cwd)
    print(f"{name}: test accuracy {summary['test']['accuracy']:.4f}")
    assert summary["test"]["accuracy"] >= 0.95
    config = json.loads((tk.cwd / "runs" / "latest" / "config.json").read_text())
    expected = ["class_0", "class_1", "class_2"] if name == "wine_data" else ["malignant", "benign"]
    assert config["class_names"] == expected  # from the file's first line
    # One statistic per feature column, none of them the identity; that they are the
    # training rows' own is test_effects_data.py's standardization test.
    feats = config["preprocess"]["features"]
    width = 13 if name == "wine_data" else 30
    assert len(feats["mean"]) == len(feats["std"]) == width
    assert all(m != 0.0 for m in feats["mean"]) and all(s != 1.0 for s in feats["std"])


def test_linear_mlp_matches_sklearn_linear_regression(tk, tmp_path):
    from sklearn.linear_model import LinearRegression

    path = write_diabetes(tmp_path / "diabetes.csv")
    res = tk("train", "mlp", "--dataset", "csv", "--data-param", f"path={path}",
             "--data-param", "target=progression", "--param", "hidden=")  # fmt: skip
    assert res.code == 0, res.err
    test = _summary(tk.cwd)["test"]
    splits = load_csv(path=str(path), target="progression")  # the rows tk trained on
    (xt, yt), (xs, ys) = splits["train"], splits["test"]
    baseline = LinearRegression().fit(xt, yt).score(xs, ys)
    print(f"diabetes: tk R2 {test['r2']:.4f}, sklearn LinearRegression R2 {baseline:.4f}")
    assert abs(test["r2"] - baseline) <= 0.05 * baseline


def _mixed_rows(n: int = 240, seed: int = 0) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rng.integers(0, 100, size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    label = np.where(a + (color == "red") * 1.5 > 0.5, "yes", "no")
    return {"a": a.tolist(), "b": b.tolist(), "color": color.tolist(), "label": label.tolist()}


def _write_csv(path: Path, cols: dict[str, list]) -> Path:
    names = list(cols)
    lines = [",".join(str(cols[k][i]) for k in names) for i in range(len(cols[names[0]]))]
    path.write_text(",".join(names) + "\n" + "\n".join(lines) + "\n")
    return path


def test_csv_parquet_and_npz_columns_read_alike(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = _mixed_rows()
    csv = _write_csv(tmp_path / "mixed.csv", cols)
    pq.write_table(pa.table(cols), tmp_path / "mixed.parquet")
    np.savez(tmp_path / "mixed.npz", **{k: np.asarray(v) for k, v in cols.items()})
    got = [load_csv(path=str(p), target="label") for p in
           (csv, tmp_path / "mixed.parquet", tmp_path / "mixed.npz")]  # fmt: skip
    for other in got[1:]:
        np.testing.assert_allclose(other["train"][0], got[0]["train"][0], rtol=1e-6)
        np.testing.assert_array_equal(other["test"][1], got[0]["test"][1])
    info = got[0]["info"]
    assert info.target == "binary" and list(info.class_names) == ["no", "yes"]
    assert list(info.feature_names) == ["a", "b", "color=blue", "color=green", "color=red"]
    assert info.standardize == [0, 1]  # the numbers; one-hot columns stay 0/1
    assert info.inputs.to_json()["columns"][2] == {
        "name": "color", "kind": "category", "categories": ["blue", "green", "red"]
    }  # fmt: skip


def test_npz_of_x_and_y_arrays(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2, 3)).astype(np.float32)
    y = rng.integers(0, 4, size=300)
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    out = load_csv(path=str(tmp_path / "xy.npz"))
    assert out["info"].feature_shape == (2, 3) and out["info"].target == "multiclass"
    assert out["info"].num_classes == 4 and out["info"].inputs is None
    assert len(out["train"][0]) + len(out["test"][0]) == 300


@pytest.mark.parametrize("suffix", ["parquet", "npz"])
def test_parquet_and_npz_train_through_the_cli(tmp_path, monkeypatch, suffix):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = _mixed_rows()
    path = tmp_path / f"mixed.{suffix}"
    if suffix == "parquet":
        pq.write_table(pa.table(cols), path)
    else:
        np.savez(path, **{k: np.asarray(v) for k, v in cols.items()})
    monkeypatch.chdir(tmp_path)
    assert tk_main("train", "mlp", "--dataset", "csv", "--data-param", f"path={path}",
                   "--data-param", "target=label", "--epochs", "30") == 0  # fmt: skip
    assert _summary(tmp_path)["test"]["accuracy"] >= 0.9


def test_inference_of_the_task_and_classes(tmp_path):
    rng = np.random.default_rng(2)
    n = 200
    x = rng.normal(size=n)
    cases = {
        "grade": (rng.integers(3, 8, size=n), "multiclass", ["3", "4", "5", "6", "7"]),
        "score": (rng.integers(0, 1000, size=n), "regression", None),  # many values: a number
        "value": (x * 2.5, "regression", None),
        "flag": (np.where(x > 0, "on", "off"), "binary", ["off", "on"]),
    }
    for name, (target, task, classes) in cases.items():
        path = _write_csv(tmp_path / f"{name}.csv", {"x": x.tolist(), name: target.tolist()})
        info = load_csv(path=str(path), target=name)["info"]
        assert (info.target, info.class_names and list(info.class_names)) == (task, classes), name
    forced = load_csv(path=str(tmp_path / "flag.csv"), target="flag", task="multiclass")["info"]
    assert forced.target == "multiclass" and forced.num_classes == 2
    with pytest.raises(UsageError, match="task=binary but target 'grade' has 5 values"):
        load_csv(path=str(tmp_path / "grade.csv"), target="grade", task="binary")


def test_fillna_mean_fills_with_training_row_means(tmp_path):
    cols = _mixed_rows(100)
    cols["a"][5] = ""
    cols["a"][17] = ""
    path = _write_csv(tmp_path / "gaps.csv", cols)
    out = load_csv(path=str(path), target="label", fillna="mean")
    fill = out["info"].inputs.fill["a"]
    train_x = out["train"][0][:, 0]
    assert np.isfinite(train_x).all() and np.isfinite(out["test"][0]).all()
    assert "filled 2 missing values" in " ".join(out["info"].notes)
    # The mean of the training rows' given values (the filled ones equal it).
    given = train_x[train_x != np.float32(fill)]
    assert abs(given.mean() - fill) < 1e-3


BAD_CASES = (
    "missing file",
    "missing target",
    "missing value",
    "not a number",
    "text column",
    "one class",
    "short row",
    "missing target value",
    "unknown feature",
)


def _bad_tables(tmp: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (--data-param values, what the one error line must name)."""
    (tmp / "gap.csv").write_text("a,b,y\n1,2,0\n3,,1\n5,6,0\n")
    (tmp / "typo.csv").write_text("a,b,y\n1,2,0\n3,4.5x,1\n5,6,0\n7,8,1\n")
    ids = "".join(f"{i},id{i},{i % 2}\n" for i in range(80))
    (tmp / "ids.csv").write_text("a,name,y\n" + ids)
    (tmp / "one.csv").write_text("a,y\n1,0\n2,0\n3,0\n")
    (tmp / "short.csv").write_text("a,b,y\n1,2,0\n3,4\n")
    (tmp / "gaptarget.csv").write_text("a,y\n1,0\n2,\n3,1\n")
    return {
        "missing file": (["path=nope.csv", "target=y"], ["nope.csv", "not found"]),
        "missing target": (["path=gap.csv", "target=label"], ["gap.csv", "'label'", "a, b, y"]),
        "missing value": (["path=gap.csv", "target=y"], ["gap.csv", "row 2", "column 'b'"]),
        "not a number": (["path=typo.csv", "target=y"], ["typo.csv", "row 2", "'4.5x'"]),
        "text column": (["path=ids.csv", "target=y"], ["ids.csv", "column 'name'", "80 distinct"]),
        "one class": (["path=one.csv", "target=y"], ["one.csv", "target 'y' has one value"]),
        "short row": (["path=short.csv", "target=y"], ["short.csv", "line 3", "2 values"]),
        "missing target value": (["path=gaptarget.csv", "target=y"], ["row 2", "(the target)"]),
        "unknown feature": (["path=gap.csv", "target=y", "features=a,q"], ["gap.csv", "'q'"]),
    }


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_tables_are_one_line_exit_2_and_no_run(tmp_path, monkeypatch, capsys, case):
    params, names = _bad_tables(tmp_path)[case]
    monkeypatch.chdir(tmp_path)
    args = [a for p in params for a in ("--data-param", p)]
    assert tk_main("train", "mlp", "--dataset", "csv", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tk: error: csv: "), err
    for name in names:
        assert name in err[0], (name, err[0])
    assert not (tmp_path / "runs").exists()
