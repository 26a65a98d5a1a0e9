"""`tk export`: every registered model exports to all three formats and verifies; the
models exporters get wrong are refused or caught, never passed silently."""

from __future__ import annotations

import gzip
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import quiet
from fixtures.export_models import make_registry, train_run
from fixtures.images import noise_folder

from toolkit.errors import ExportError, UsageError
from toolkit.export import FILE_NAMES, export_run
from toolkit.models import rebuild_model
from toolkit.plugins import load_plugins
from toolkit.runs import open_run, sha256_file
from toolkit.trust import read_metadata
from toolkit.verify import verify_file

REGISTRY = load_plugins(warn=False).registry
FIXTURES = make_registry()


def _hashes(run_dir: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(run_dir.iterdir()) if p.is_file()}


# ------------------------------------------------------------ local-file datasets
def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (the MNIST format): magic, big-endian dims, uint8 data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(data)
    with gzip.open(path.with_name(path.name + ".gz"), "wb") as fh:
        fh.write(data)


def idx_data_dir(root: Path, shape: tuple[int, ...], classes: int) -> Path:
    """Tiny MNIST-format files in the layouts loaders look for (flat and torchvision's)."""
    rng = np.random.default_rng(0)
    splits = {"train": 96, "t10k": 32}
    for sub in ("", "raw", "FashionMNIST/raw", "MNIST/raw"):
        d = root / sub
        d.mkdir(parents=True, exist_ok=True)
        for prefix, n in splits.items():
            images = rng.integers(0, 256, size=(n, *shape[-2:]))
            labels = np.arange(n) % classes
            _write_idx(d / f"{prefix}-images-idx3-ubyte", images)
            _write_idx(d / f"{prefix}-labels-idx1-ubyte", labels)
    return root


# --------------------------------------------------------------- the contract test
# Models that size themselves from the data (mlp, cnn, the torchvision zoo) default
# to datasets of the user's own files: the contract trains them on a built-in
# table and on a tiny image folder written here instead.
ZOO: set[str] = set()  # resnet18 trains, exports and verifies in test_data_images.py
# tk-timm registers timm's 1,300-odd models: a handful of small ones run the contract.
TIMM = ["timm/resnet10t", "timm/mobilenetv3_small_050"]
ADAPTIVE = sorted(n for n in REGISTRY.models if REGISTRY.model(n).input is None)
CONTRACT = [
    pytest.param(n, marks=pytest.mark.heavy) if n in ADAPTIVE and n not in ZOO | {"mlp", "cnn"}
    else n
    for n in sorted(REGISTRY.models) if not n.startswith("timm/")
] + TIMM  # fmt: skip


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """Three classes of 12 random 32x32 RGB PNGs: enough for two epochs of any zoo model."""
    root = tmp_path_factory.mktemp("images") / "folder"
    return noise_folder(root, ("ant", "bee", "cat"), 12, (32, 32, 3), seed=0)


def _contract_data(spec, tmp_path: Path, image_folder: Path) -> dict:
    """The dataset (and its params) the contract trains ``spec`` on."""
    if spec.input is None:
        if spec.name == "mlp":
            return {"dataset": "circles"}
        return {"dataset": "imagefolder", "data_params": {"path": str(image_folder)}}
    dspec = REGISTRY.dataset(spec.default_dataset)
    if any(p.name == "data_dir" for p in dspec.params):
        root = idx_data_dir(tmp_path / "data", dspec.feature_shape, dspec.num_classes or 2)
        return {"data_params": {"data_dir": str(root)}}
    return {}


@pytest.mark.parametrize("name", CONTRACT)
def test_every_registered_model_exports_all_formats_and_verifies(name, tmp_path, image_folder):
    spec = REGISTRY.model(name)
    data = _contract_data(spec, tmp_path, image_folder)
    run_dir = train_run(REGISTRY, name, tmp_path / "runs", epochs=2, batch_size=16, **data)
    config = json.loads((run_dir / "config.json").read_text())
    before = _hashes(run_dir)

    results = export_run(run_dir, "all", registry=REGISTRY, echo=quiet, echo_err=quiet)

    assert [r.format for r in results] == ["onnx", "torchscript", "pt2"]
    for r in results:
        assert r.written and r.path == run_dir / FILE_NAMES[r.format]
        assert r.verify is not None and r.verify.passed, r.verify.summary()
        assert r.verify.batch_sizes == [1, 7, 64]
        assert r.seconds > 0
        meta = read_metadata(r.path)
        assert meta["model"]["name"] == name
        assert meta["plugin"]["distribution"] == REGISTRY.source("model", name).distribution
        assert meta["input"]["shape"] == config["input"]["shape"]
        assert meta["weights_sha256"] == before["model.safetensors"]
        assert meta["task"] == config["task"] and meta["exporter"]
        # and the file on disk verifies on its own, as `tk verify` would run it
        assert verify_file(r.path, registry=REGISTRY).passed
    assert read_metadata(results[0].path)["opset"] >= 17
    # Export never touches what training wrote.
    after = _hashes(run_dir)
    # ... except the manifest, which now also vouches for the exported files.
    assert {k: after[k] for k in before if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }
    assert set(after) - set(before) == set(FILE_NAMES.values())
    manifest = json.loads((run_dir / "manifest.json").read_text())["files"]
    assert {f: manifest[f] for f in FILE_NAMES.values()} == {
        f: after[f] for f in FILE_NAMES.values()
    }
    assert not list(run_dir.glob("*.onnx.data")) and not list(run_dir.glob(".*tmp*"))


# ---------------------------------------------------------------------- ONNX files
@pytest.fixture(scope="module")
def circle_run(tmp_path_factory) -> Path:
    return train_run(REGISTRY, "circle", tmp_path_factory.mktemp("runs"), epochs=200)


def test_onnx_is_one_file_that_runs_after_being_copied_alone(circle_run, tmp_path):
    out = tmp_path / "exports" / "circle.onnx"
    (result,) = export_run(circle_run, "onnx", out=out, registry=REGISTRY, echo=quiet)
    assert result.exporter == "torch.onnx.export(dynamo=True)"
    assert sorted(p.name for p in out.parent.iterdir()) == ["circle.onnx"]

    alone = tmp_path / "elsewhere"
    alone.mkdir()
    copied = Path(shutil.copy(out, alone / "model.onnx"))
    proto = onnx.load(str(copied))
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    onnx.checker.check_model(str(copied), full_check=True)
    session = ort.InferenceSession(str(copied), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "points"
    assert session.get_inputs()[0].shape[0] == "batch"  # dynamic batch dimension
    x = np.random.default_rng(0).normal(size=(7, 2)).astype("float32")
    eager = rebuild_model(open_run(circle_run), REGISTRY)
    with torch.no_grad():
        want = eager(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"points": x})[0], want, rtol=1e-4, atol=1e-5)
    # the copy still finds its run (recorded in its metadata) and verifies
    assert verify_file(copied, registry=REGISTRY).passed


def test_metadata_carries_the_provenance(circle_run, tmp_path):
    (r,) = export_run(circle_run, "onnx", out=tmp_path / "m.onnx", registry=REGISTRY, echo=quiet)
    props = {p.key: p.value for p in onnx.load(str(r.path)).metadata_props}
    assert json.loads(props["tk.class_names"]) == ["outer", "inner"]
    meta = read_metadata(r.path)
    summary = json.loads((circle_run / "summary.json").read_text())
    assert meta["tk_version"] and meta["torch_version"] == torch.__version__
    assert meta["model"] == {"name": "circle", "params": {"hidden": 10}}
    assert meta["plugin"]["distribution"] == "tk-torch" and meta["plugin"]["version"]
    assert meta["input"] == {"name": "points", "shape": ["batch", 2], "dtype": "float32"}
    assert meta["output"]["meaning"] == "logits" and meta["output"]["activation"] == "sigmoid"
    assert meta["metrics"] == summary["final"]
    assert meta["weights_sha256"] == sha256_file(circle_run / "model.safetensors")
    assert meta["opset"] == onnx.load(str(r.path)).opset_import[0].version
    assert meta["exporter"].startswith("torch.onnx.export")


def test_existing_file_is_refused_without_overwrite(circle_run, tmp_path):
    out = tmp_path / "m.pt2"
    out.write_bytes(b"precious")
    with pytest.raises(UsageError, match="already exists"):
        export_run(circle_run, "pt2", out=out, registry=REGISTRY, echo=quiet)
    # --overwrite replaces only a file tk exported, never someone's own file
    with pytest.raises(UsageError, match="not a file tk exported"):
        export_run(circle_run, "pt2", out=out, overwrite=True, verify=False, registry=REGISTRY)
    assert out.read_bytes() == b"precious"
    out.unlink()
    export_run(circle_run, "torchscript", out=out, verify=False, registry=REGISTRY, echo=quiet)
    (r,) = export_run(
        circle_run, "pt2", out=out, overwrite=True, verify=False, registry=REGISTRY, echo=quiet
    )
    assert r.written and r.verify is None and read_metadata(out)["format"] == "pt2"


def test_unknown_format_and_bad_static_batch_are_usage_errors(circle_run):
    with pytest.raises(UsageError, match="unknown export format 'tflite'"):
        export_run(circle_run, "tflite", registry=REGISTRY)
    with pytest.raises(UsageError, match="static-batch"):
        export_run(circle_run, "onnx", static_batch=0, registry=REGISTRY)


def test_static_batch_exports_a_fixed_batch(circle_run, tmp_path):
    (r,) = export_run(
        circle_run, "onnx", out=tmp_path / "s.onnx", static_batch=4, registry=REGISTRY, echo=quiet
    )
    assert read_metadata(r.path)["input"]["shape"] == [4, 2]
    assert r.verify.batch_sizes == [4] and r.verify.passed
    assert ort.InferenceSession(str(r.path)).get_inputs()[0].shape == [4, 2]


# ------------------------------------------------------------- negative fixtures
@pytest.fixture(scope="module")
def fixture_runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fixture-runs")
    names = ["hard-batch", "data-branch", "data-branch-varargs", "bn-dropout", "digamma"]
    return {n: train_run(FIXTURES, n, root, name=n) for n in names}


def _export(run_dir: Path, fmt: str, out: Path, notes: list[str] | None = None):
    """(result or None, ExportError or None); never both."""
    try:
        (r,) = export_run(
            run_dir,
            fmt,
            out=out / FILE_NAMES[fmt],
            registry=FIXTURES,
            echo=quiet,
            echo_err=(notes.append if notes is not None else quiet),
        )
        return r, None
    except ExportError as exc:
        return None, exc


def test_hard_coded_batch_is_refused_or_caught_never_passed(fixture_runs, tmp_path):
    run_dir = fixture_runs["hard-batch"]
    notes: list[str] = []
    # ONNX: the dynamo exporter fixes the batch at 2 (silently, in torch); tk
    # notices, retries with the TorchScript-based exporter, whose trace bakes
    # int(x.shape[0]) in as a constant: refused, exit 3, nothing written.
    r, err = _export(run_dir, "onnx", tmp_path, notes)
    assert r is None and err is not None and err.exit_code == 3
    assert "fixed batch of 2" in notes[0] and "TorchScript-based exporter" in notes[0]
    assert "Python integer" in str(err)
    # pt2: torch.export refuses to specialise a dynamic dimension.
    r, err = _export(run_dir, "pt2", tmp_path)
    assert r is None and "batch" in str(err)
    assert not (tmp_path / "model.onnx").exists() and not (tmp_path / "model.pt2").exists()
    # TorchScript scripts forward(), so int(x.shape[0]) stays dynamic: a *correct*
    # file, which verification proves at batch 7 (and 1 and 64).
    r, err = _export(run_dir, "torchscript", tmp_path)
    assert err is None and r.exporter == "torch.jit.script"
    assert r.verify.passed and 7 in r.verify.batch_sizes


def test_hard_coded_batch_fails_verification_at_batch_7(fixture_runs, tmp_path):
    # Exported for batch 2 only, it passes at 2, and the sweep exposes it at 7.
    (r,) = export_run(
        fixture_runs["hard-batch"],
        "onnx",
        out=tmp_path / "fixed.onnx",
        static_batch=2,
        registry=FIXTURES,
        echo=quiet,
    )
    assert r.verify.passed
    report = verify_file(r.path, batch_sizes=[2, 7], registry=FIXTURES)
    assert not report.passed and report.exit_code == 1
    assert {c.batch for c in report.checks if not c.passed} == {7}
    assert all(c.passed for c in report.checks if c.batch == 2)


def test_data_dependent_branch_is_refused_or_caught_never_passed(fixture_runs, tmp_path):
    run_dir = fixture_runs["data-branch"]
    r, err = _export(run_dir, "onnx", tmp_path)
    assert r is None and "Python boolean" in str(err)
    r, err = _export(run_dir, "pt2", tmp_path)
    assert r is None and "data-dependent" in str(err).lower()
    # Scripting keeps the branch as real control flow: correct on both signs.
    r, err = _export(run_dir, "torchscript", tmp_path)
    assert err is None and r.exporter == "torch.jit.script" and r.verify.passed
    assert {c.inputs for c in r.verify.checks} >= {"ood-negative", "ood-large", "random"}
    # A forward() TorchScript cannot script must be traced: the trace is refused.
    r, err = _export(fixture_runs["data-branch-varargs"], "torchscript", tmp_path / "v")
    assert r is None and "tracing is unsafe" in str(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.torchscript.pt"]


def test_batchnorm_and_dropout_export_in_eval_mode_and_pass(fixture_runs, tmp_path):
    run_dir = fixture_runs["bn-dropout"]
    model = rebuild_model(open_run(run_dir), FIXTURES)
    x = torch.randn(64, 2)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), model.train()(x))  # dropout is live in train
    before = sha256_file(run_dir / "model.safetensors")
    results = export_run(run_dir, "all", out=tmp_path, registry=FIXTURES, echo=quiet)
    assert all(r.written and r.verify.passed for r in results)
    assert sha256_file(run_dir / "model.safetensors") == before


def test_unsupported_operator_names_operator_and_opset(fixture_runs, tmp_path):
    r, err = _export(fixture_runs["digamma"], "onnx", tmp_path)
    assert r is None and err.exit_code == 3
    assert "digamma" in str(err) and "opset 20" in str(err)
    assert list(tmp_path.iterdir()) == []
    # With --format all the other formats still get written, then the failure is raised.
    with pytest.raises(ExportError, match="digamma") as info:
        export_run(fixture_runs["digamma"], "all", out=tmp_path, registry=FIXTURES, echo=quiet)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt2", "model.torchscript.pt"]
    assert [r.format for r in info.value.results if r.verify.passed] == ["torchscript", "pt2"]


# -------------------------------------------------------------------- the command
def test_tk_export_command_all_formats(tk):
    train_run(REGISTRY, "circle", tk.cwd / "runs", epochs=50, name="demo")  # sets runs/latest
    res = tk("export", "--format", "all")
    assert res.code == 0, res.err
    run_dir = tk.cwd / "runs" / "circle" / "demo"
    for fmt, name in FILE_NAMES.items():
        assert (run_dir / name).is_file()
        assert f"{fmt}: wrote" in res.out and "PASS" in res.out
    assert res.err.count("deprecates TorchScript") == 1  # one line, no raw FutureWarnings
    assert "FutureWarning" not in res.err
    again = tk("export", "runs/circle/demo", "--format", "onnx")
    assert again.code == 2 and "--overwrite" in again.err
    res = tk("inspect", str(run_dir / "model.torchscript.pt"), "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["exporter"] == "torch.jit.script"
