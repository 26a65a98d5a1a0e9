"""`tk verify`: a correct file passes, a doctored one fails (exit 1), a broken one is
unloadable (exit 3); the sweep, the tolerances and the comparison itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import quiet
from fixtures.export_models import train_run
from onnx import numpy_helper

from toolkit.errors import ExportError, UsageError
from toolkit.export import export_run
from toolkit.plugins import load_plugins
from toolkit.trust import read_metadata
from toolkit.verify import compare, parse_batch_sizes, verify_file

REGISTRY = load_plugins(warn=False).registry


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """A trained circle run (under <tmp>/runs, runs/latest set) and its three exports."""
    root = tmp_path_factory.mktemp("verify")
    run_dir = train_run(REGISTRY, "circle", root / "runs", epochs=200, name="base")
    results = export_run(run_dir, "all", registry=REGISTRY, echo=quiet, echo_err=quiet)
    return {"root": root, "run": run_dir, **{r.format: r.path for r in results}}


def doctor_onnx(src: Path, dst: Path, delta: float = 0.5) -> Path:
    """A copy of an ONNX export with one bias shifted: valid, loadable, and wrong."""
    proto = onnx.load(str(src))
    init = next(t for t in proto.graph.initializer if t.name.endswith("bias"))
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + delta, init.name))
    onnx.save(proto, str(dst))
    return dst


def test_tk_verify_exit_codes_pass_mismatch_unloadable(exported, tk):
    cwd = exported["root"]
    res = tk("verify", str(exported["onnx"]), "--json", cwd=cwd)
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert report["status"] == "pass" and report["batch_sizes"] == [1, 7, 64]
    assert {c["inputs"] for c in report["checks"]} == {
        "held-out",
        "random",
        "ood-large",
        "ood-negative",
    }

    bad = doctor_onnx(exported["onnx"], cwd / "doctored.onnx")
    res = tk("verify", str(bad), cwd=cwd)
    assert res.code == 1, res.err
    assert "FAIL" in res.out and "MISMATCH" in res.out and "outside tolerance" in res.out

    junk = cwd / "junk.onnx"
    junk.write_bytes(b"\x08\x07 this is not a protobuf model \xff\xfe")
    res = tk("verify", str(junk), "--json", cwd=cwd)
    assert res.code == 3, res.err
    assert json.loads(res.out)["status"] == "error"
    assert res.err.startswith("tk: error: cannot read") and "Traceback" not in res.err


def _shift_output(src: Path, dst: Path, delta: float) -> Path:
    """A copy of the circle ONNX export whose output bias (the one logit's, shape (1,))
    is moved by ``delta``: every output moves by exactly ``delta``."""
    proto = onnx.load(str(src))
    (init,) = [t for t in proto.graph.initializer if t.name.endswith("bias") and t.dims == [1]]
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + delta, init.name))
    onnx.save(proto, str(dst))
    return dst


@pytest.mark.parametrize("factor,code", [(1.5, 1), (0.5, 0)])
def test_verify_fails_just_beyond_atol_and_passes_just_inside(exported, tmp_path, capsys,
                                                              factor, code):  # fmt: skip
    from conftest import tk_main

    delta = 1e-3
    bad = _shift_output(exported["onnx"], tmp_path / "shifted.onnx", delta)
    atol = delta / factor  # the output is off by 1.5x (fails) or 0.5x (passes) this atol
    capsys.readouterr()
    assert tk_main("verify", str(bad), "--atol", f"{atol!r}", "--rtol", "0", "--json") == code
    report = json.loads(capsys.readouterr().out)
    assert report["atol"] == atol and report["rtol"] == 0.0
    # On in-distribution inputs the output is off by the shift (and onnxruntime's own
    # error); on ood-large ones float32's spacing at |output| ~ 1e3 adds its rounding.
    plain = [c["max_abs"] for c in report["checks"] if c["inputs"] in ("held-out", "random")]
    assert max(plain) == pytest.approx(delta, rel=0.01)
    failed = {c["inputs"] for c in report["checks"] if not c["passed"]}
    # Beyond: the unscaled cases fail (held-out, random: tolerance atol); the wide
    # out-of-distribution cases (10x, 100x atol) hold. Inside: nothing fails.
    assert failed == ({"held-out", "random"} if code else set())


def test_truncated_archives_cannot_be_loaded(exported, tmp_path):
    for fmt in ("torchscript", "pt2"):
        data = exported[fmt].read_bytes()
        broken = tmp_path / exported[fmt].name
        broken.write_bytes(data[: len(data) // 2])
        with pytest.raises(ExportError) as info:
            verify_file(broken, run=exported["run"], registry=REGISTRY)
        assert info.value.exit_code == 3


def test_every_format_passes_and_sweeps_batch_sizes(exported):
    for fmt, runtime in (
        ("onnx", "onnxruntime-cpu"),
        ("torchscript", "torch.jit"),
        ("pt2", "torch.export"),
    ):
        report = verify_file(exported[fmt], batch_sizes=[1, 7, 33], registry=REGISTRY)
        assert report.passed, report.summary()
        assert runtime in report.runtimes
        assert sorted({c.batch for c in report.checks}) == [1, 7, 33]
        assert all(c.shape == [c.batch, 1] for c in report.checks)
        assert all(c.agreement == 1.0 and c.outside == 0.0 for c in report.checks)


def test_tolerances_are_overridable(exported):
    # onnxruntime is not bit-identical to eager: with zero tolerance it must fail,
    strict = verify_file(exported["onnx"], atol=0.0, rtol=0.0, registry=REGISTRY)
    assert not strict.passed and strict.atol == 0.0
    # and the defaults come from the model spec (1e-5 / 1e-4 for float32).
    default = verify_file(exported["onnx"], registry=REGISTRY)
    assert (default.atol, default.rtol) == (1e-5, 1e-4)


def test_run_is_found_from_metadata_and_checked_by_weights(exported, tmp_path):
    moved = Path(shutil.copy(exported["pt2"], tmp_path / "model.pt2"))
    assert verify_file(moved, registry=REGISTRY).run == str(exported["run"])
    # a run with other weights is not the reference of this file
    other = train_run(REGISTRY, "circle", tmp_path / "runs", epochs=5, name="other")
    with pytest.raises(UsageError, match="different weights"):
        verify_file(moved, run=other, registry=REGISTRY)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_file_without_tk_metadata_is_a_usage_error(tmp_path):
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Linear(2, 1), (torch.randn(2, 2),), str(plain), dynamo=False)
    assert read_metadata(plain) == {}
    with pytest.raises(UsageError, match="no tk metadata"):
        verify_file(plain, registry=REGISTRY)


def test_compare_counts_tolerance_and_decisions():
    ref = np.array([[2.0], [-3.0], [1e-7], [5.0]], dtype=np.float32)
    same = compare(ref, ref.copy(), "binary", 1e-5, 1e-4, decide=True)
    assert same["outside"] == 0.0 and same["agreement"] == 1.0 and same["max_abs"] == 0.0
    # a logit of 1e-7 flipping sign is within tolerance: not a decision that counts
    flip = ref.copy()
    flip[2] = -1e-7
    assert compare(ref, flip, "binary", 1e-5, 1e-4, decide=True)["agreement"] == 1.0
    wrong = ref.copy()
    wrong[1] = 3.0
    out = compare(ref, wrong, "binary", 1e-5, 1e-4, decide=True)
    assert out["outside"] == 0.25 and out["agreement"] == pytest.approx(2 / 3)
    nan = ref.copy()
    nan[0] = np.nan
    assert compare(ref, nan, "binary", 1e-5, 1e-4, decide=True)["outside"] == 0.25
    assert compare(nan, nan, "binary", 1e-5, 1e-4, decide=True)["outside"] == 0.0
    shape = compare(ref, ref[:2], "binary", 1e-5, 1e-4, decide=True)
    assert shape["shape"] == [2, 1] and "outside" not in shape
    logits = np.array([[3.0, 1.0, 0.0], [0.0, 0.0, 9.0]], dtype=np.float32)
    swapped = logits[:, ::-1].copy()
    assert compare(logits, swapped, "multiclass", 1e-5, 1e-4, decide=True)["agreement"] == 0.0


def test_batch_size_parsing():
    assert parse_batch_sizes("1, 7,64") == [1, 7, 64]
    assert parse_batch_sizes(None) is None
    for bad in ("1,x", "0", ""):
        with pytest.raises(UsageError):
            parse_batch_sizes(bad)
