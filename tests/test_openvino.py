"""The tk-openvino plugin (plugins/tk-openvino): a format registered by a distribution of
its own. ``--format openvino`` converts the verified ONNX graph to IR (.xml + .bin),
carries tk's metadata, and is verified, predicted and benchmarked in the real OpenVINO
runtime through the same gate as every format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import quiet, tk_main
from fixtures.export_models import train_run

pytest.importorskip("tk_openvino", reason="plugins/tk-openvino is not installed (make installs it)")

from toolkit.errors import IntegrityError, UsageError
from toolkit.export import export_run
from toolkit.plugins import load_plugins
from toolkit.predict import predict
from toolkit.trust import read_metadata
from toolkit.verify import verify_file

REGISTRY = load_plugins(warn=False).registry


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("openvino")
    run = train_run(REGISTRY, "circle", root / "runs", epochs=40)
    (result,) = export_run(run, "openvino", registry=REGISTRY, echo=quiet, echo_err=quiet)
    return {"run": run, "xml": result.path, "result": result}


def test_export_writes_verified_ir_with_metadata_and_manifest(exported):
    r, run = exported["result"], exported["run"]
    assert r.written and r.path == run / "model.xml" and r.companions == [run / "model.bin"]
    assert r.verify is not None and r.verify.passed
    assert r.verify.runtimes == ["openvino-cpu"]
    assert "OpenVINO" in r.exporter and "torch.onnx.export" in r.exporter
    assert not (run / "model.onnx").exists()  # converted from an in-memory verified ONNX
    meta = read_metadata(r.path)
    assert meta["format"] == "openvino" and meta["run"] == str(run.resolve())
    assert meta["class_names"] == ["outer", "inner"] and meta["input"]["shape"] == ["batch", 2]
    manifest = json.loads((run / "manifest.json").read_text())["files"]
    assert {"model.xml", "model.bin"} <= set(manifest)


def test_verify_and_predict_run_the_ir_in_openvino(exported, capsys):
    report = verify_file(exported["xml"], registry=REGISTRY)
    assert report.passed and report.format == "openvino"
    assert report.runtimes == ["openvino-cpu"]
    assert tk_main("verify", str(exported["xml"])) == 0
    rows = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    np.save(exported["run"].parent / "x.npy", rows)
    by_ir = predict(exported["xml"], exported["run"].parent / "x.npy", registry=REGISTRY)
    eager = predict(exported["run"], exported["run"].parent / "x.npy", registry=REGISTRY)
    assert by_ir.runtime == "openvino-cpu"
    assert by_ir.labels.tolist() == eager.labels.tolist()
    np.testing.assert_allclose(by_ir.probabilities, eager.probabilities, atol=1e-5)


def test_the_weights_file_passes_the_gate_too(exported, tmp_path):
    xml = exported["xml"]
    copy = tmp_path / "run"
    copy.mkdir()
    for f in ("model.xml", "model.bin", "manifest.json", "config.json"):
        (copy / f).write_bytes((exported["run"] / f).read_bytes())
    bin_ = copy / "model.bin"
    data = bytearray(bin_.read_bytes())
    data[-1] ^= 0xFF
    bin_.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"model\.bin does not match its sha256"):
        verify_file(copy / xml.name, run=exported["run"], registry=REGISTRY)
    bin_.unlink()
    with pytest.raises(UsageError, match=r"needs model\.bin beside it"):
        verify_file(copy / xml.name, run=exported["run"], registry=REGISTRY)


def test_list_formats_names_the_plugin(capsys):
    assert tk_main("list", "formats", "--json") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["openvino"]["plugin"] == "tk-openvino"
    assert rows["openvino"]["file"] == "model.xml + .bin" and rows["openvino"]["runs_code"] == "no"


def test_plugins_check_exports_and_verifies_a_format_plugin(tmp_path):
    from toolkit.testing import check_plugin

    report = check_plugin("tk-openvino", epochs=1, workdir=tmp_path)
    assert report.ok, report.format()
    steps = [(c.kind, c.name, c.step) for c in report.checks]
    assert steps == [
        ("plugin", "tk-openvino", "load"),
        ("model", "circle", "train"),
        ("model", "circle", "export openvino"),
        ("model", "circle", "verify openvino"),
    ]
    assert "1 format(s)" in report.checks[0].detail
