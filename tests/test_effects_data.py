"""Settings observed by their effect on files, splits, statistics and verify's verdict.

Each test here would fail if its setting were ignored, loosened or inverted; the
expected values come from an independent computation (numpy, a hard link to the old
inode, a hand-shifted output), never from a copied run output. docs/testing.md lists
the bug each one was checked against.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import sklearn

from toolkit import runs

SKLEARN_DATA = Path(sklearn.__file__).parent / "datasets" / "data"


# ---------------------------------------------------------------- atomic writes
def test_atomic_write_replaces_the_file_and_never_writes_into_the_old_one(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_bytes(b"old contents\n")
    # A hard link keeps the old inode reachable: a write in place would show up in it.
    old = tmp_path / "old-inode"
    os.link(target, old)
    inode = target.stat().st_ino
    runs.atomic_write_bytes(target, b"new contents\n")
    assert target.read_bytes() == b"new contents\n"
    assert old.read_bytes() == b"old contents\n"  # the old file was never touched
    assert target.stat().st_ino != inode  # a new file took its name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "old-inode"]


# ------------------------------------------------------------------ the manifest
def test_a_listed_file_is_checked_even_when_the_check_is_not_required(tmp_path):
    from toolkit.integrity import IntegrityError, check_file, record

    run = tmp_path / "run"
    run.mkdir()
    weights = run / "last.safetensors"
    weights.write_bytes(bytes(range(256)))
    record(run, weights)
    assert check_file(weights) is True  # listed, so checked (not skipped as optional)
    data = bytearray(weights.read_bytes())
    data[100] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="does not match its sha256"):
        check_file(weights)  # required=False: optional files are still checked
    with pytest.raises(IntegrityError, match="does not match its sha256"):
        check_file(weights, required=True)


# ------------------------------------------------------- verify at its boundary
def _shifted(runner, factor: float, atol: float, rtol: float):
    """``runner`` with every output moved by ``factor`` times verify's tolerance."""
    from toolkit.formats import Runner

    def run(x):
        return [(o + factor * (atol + rtol * np.abs(o))).astype(o.dtype) for o in runner.run(x)]

    return Runner(f"{runner.name}+{factor}tol", run)


@pytest.mark.parametrize("atol,rtol", [(1e-5, 1e-4), (1e-3, 0.0)])
def test_compare_fails_just_beyond_the_tolerance_and_passes_just_inside(atol, rtol):
    from toolkit.verify.compare import Check, compare

    ref = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    ref64 = ref.astype(np.float64)
    tol = atol + rtol * np.abs(ref64)
    for factor, outside in ((1.5, 1.0), (0.5, 0.0)):
        got = ref64 + factor * tol  # float64: the shift is exact to well below tol
        fields = compare(ref64, got, "regression", atol, rtol, decide=True)
        check = Check("shifted", "random", 16, "output_0", atol=atol, rtol=rtol, **fields)
        assert fields["outside"] == outside, factor
        assert check.passed is (outside == 0.0), factor
        assert fields["max_abs"] == pytest.approx(factor * tol.max(), rel=1e-9)


def test_verify_on_a_real_onnx_file_fails_at_1_5_tolerances_and_passes_at_0_5(tmp_path):
    import onnxruntime as ort
    import torch

    from toolkit.formats.runtime import eager_runner, onnx_runner
    from toolkit.verify.compare import DEFAULT_ATOL, DEFAULT_RTOL, run_checks
    from toolkit.verify.inputs import CASES

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    model.eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(
        model, (torch.randn(3, 4),), str(path), dynamo=False,
        input_names=["x"], dynamic_axes={"x": {0: "batch"}},
    )  # fmt: skip
    runner = onnx_runner(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))
    atol, rtol = DEFAULT_ATOL, DEFAULT_RTOL
    kw = {"input_shape": (4,), "task": "regression", "batch_sizes": [1, 5], "heldout": None}
    # Beyond: 1.5x the widest case's tolerance; inside: half the narrowest case's.
    widest, narrowest = max(CASES.values()), min(CASES.values())
    beyond = _shifted(runner, 1.5, atol * widest, rtol)
    inside = _shifted(runner, 0.5, atol * narrowest, rtol)
    checks = run_checks([runner, beyond, inside], eager_runner(model), atol=atol, rtol=rtol, **kw)
    by = {name: [c for c in checks if c.runtime == name] for name in {c.runtime for c in checks}}
    assert all(c.passed for c in by[runner.name])
    assert all(c.passed for c in by[inside.name])
    assert by[beyond.name] and not any(c.passed for c in by[beyond.name])
    assert all(c.outside == 1.0 for c in by[beyond.name])


# ---------------------------------------------------------------- stratification
def _imbalanced(n: int, seed: int):
    from toolkit.data import prepare
    from toolkit.registry import DatasetSpec

    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.7, 0.2, 0.1]).astype("int64")
    x = rng.normal(size=(n, 2)).astype("float32")
    spec = DatasetSpec(
        name="imbalanced", load=lambda: None, feature_shape=(2,), target="multiclass", num_classes=3
    )
    return prepare(spec, {"train": (x, y), "test": (x[:50], y[:50])}), y


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_validation_split_keeps_each_class_share_within_one_row(seed):
    from toolkit.splits import carve_validation

    data, y = _imbalanced(1000, seed)
    carved = carve_validation(data, 0.2, seed)
    val = carved.val.y.numpy()
    train = carved.train.y.numpy()
    assert len(val) == 200 and len(train) == 800
    whole = np.bincount(y, minlength=3) / len(y)  # the training rows before the carve
    for c in range(3):
        assert abs(np.sum(val == c) - whole[c] * len(val)) <= 1, (c, np.bincount(val))
        assert abs(np.sum(train == c) - whole[c] * len(train)) <= 1, (c, np.bincount(train))
    assert any("stratified by class" in note for note in carved.notes)


# ----------------------------------------------------------- standardization
def test_standardization_statistics_are_the_training_rows_own(tk):
    from toolkit.models import load_data
    from toolkit.plugins import get_registry
    from toolkit.splits import DEFAULT_FRACTION, carve_validation

    path = SKLEARN_DATA / "wine_data.csv"
    res = tk("train", "mlp", "--dataset", "csv", "--data-param", f"path={path}",
             "--data-param", "target=target", "--epochs", "1", "-q")  # fmt: skip
    assert res.code == 0, res.err
    config = json.loads((tk.cwd / "runs" / "latest" / "config.json").read_text())
    feats = config["preprocess"]["features"]
    # The rows the run trained on: the file's train split less the validation rows.
    spec = get_registry().dataset("csv")
    loaded = load_data(spec, spec.resolve_params({"path": str(path), "target": "target"}))
    data = carve_validation(loaded, DEFAULT_FRACTION, 42)
    train = data.train.x.numpy().astype(np.float64)
    test = data.test.x.numpy().astype(np.float64)
    assert len(train) + len(data.val) + len(test) == 178
    np.testing.assert_allclose(feats["mean"], train.mean(0), rtol=1e-9, atol=0)
    np.testing.assert_allclose(feats["std"], train.std(0), rtol=1e-9, atol=0)
    # ... and measurably not the statistics of training and test rows together.
    both = np.concatenate([train, test])
    assert np.abs(np.asarray(feats["mean"]) - both.mean(0)).max() > 1e-6 * np.abs(both).max()
