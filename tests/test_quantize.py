"""`tk export --quantize`: int8 and fp16 ONNX files made from the verified float32 one, real
onnxruntime sessions checking them over the whole held-out split; a quantization that
breaks the model is refused and leaves nothing behind; bad requests are exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import quiet, tk_main
from fixtures.export_models import train_run
from fixtures.shaped import DATA_GONE, shaped_registry

from toolkit.errors import UsageError, VerificationError
from toolkit.export import export_run
from toolkit.plugins import load_plugins
from toolkit.runs import sha256_file
from toolkit.trust import read_metadata
from toolkit.verify import verify_file

REGISTRY = load_plugins(warn=False).registry
SHAPED = shaped_registry()


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """digits-cnn (the registered model, real sklearn digits), 3 epochs: ~96% held-out."""
    return train_run(REGISTRY, "digits-cnn", tmp_path_factory.mktemp("q") / "runs", epochs=3)


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> Path:
    """The 784-512-512-10 tutorial MLP on learnable FashionMNIST-shaped images."""
    return train_run(SHAPED, "fashion-mlp", tmp_path_factory.mktemp("q") / "runs", epochs=2)


def _check_quantized(result, scheme: str, registry) -> float:
    """What every quantized file must show; returns its size ratio to float32."""
    held = result.verify.heldout[0]
    assert result.written and result.path.name == f"model.{scheme}.onnx"
    assert held.runtime == "onnxruntime-cpu" and held.rows >= 200  # the whole test split
    assert held.agreement >= 0.99 and held.min_agreement == 0.99, held.summary()
    # The line a person reads says what judged the file, and quotes no tolerance
    # (none was applied to a quantized file's values).
    line = result.verify.summary()
    assert line.startswith(f"PASS: {held.summary()}; "), line
    assert f"{scheme} values not judged" in line and "atol" not in line and "rtol" not in line
    ratio = result.size / result.source_size
    print(f"{result.path.parent.parent.name} {scheme}: size ratio {ratio:.3f}, {held.summary()}")
    assert result.size < result.source_size and result.path.stat().st_size == result.size
    meta = read_metadata(result.path)
    assert meta["quantization"]["scheme"] == scheme
    assert meta["quantization"]["source_sha256"]
    assert meta["weights_sha256"] and meta["model"]["name"]
    manifest = json.loads((result.path.parent / "manifest.json").read_text())["files"]
    assert manifest[result.path.name] == sha256_file(result.path)
    # ... and the file on disk passes `tk verify` on its own (the 0.99 default applies).
    report = verify_file(result.path, registry=registry)
    assert report.passed and report.quantization == scheme, report.summary()
    return ratio


@pytest.mark.parametrize("scheme", ["int8-dynamic", "int8-static", "fp16"])
def test_digits_cnn_quantized_agrees_and_is_smaller(digits, scheme):
    (r,) = export_run(digits, "onnx", quantize=scheme, registry=REGISTRY, echo=quiet)
    ratio = _check_quantized(r, scheme, REGISTRY)
    assert ratio < (0.6 if scheme == "fp16" else 0.35)
    cal = read_metadata(r.path)["quantization"]["calibration"]
    if scheme == "int8-static":  # 256 training rows, spread over the split, hashed
        assert cal["rows"] == 256 and len(cal["sha256"]) == 64 and "train" in cal["source"]
    else:
        assert cal is None


@pytest.mark.parametrize("scheme", ["int8-dynamic", "int8-static"])
def test_fashion_shaped_mlp_quantized_agrees_and_is_smaller(fashion, scheme):
    (r,) = export_run(fashion, "onnx", quantize=scheme, registry=SHAPED, echo=quiet)
    assert _check_quantized(r, scheme, SHAPED) < 0.3  # int8 weights: about a quarter


def test_calibration_on_constant_zeros_is_refused_naming_the_agreement(digits, tmp_path, tk):
    """A real broken quantization: activation ranges calibrated on blank images."""
    zeros = tmp_path / "zeros.npy"
    np.save(zeros, np.zeros((64, 1, 8, 8), np.uint8))
    out = tmp_path / "broken.onnx"
    res = tk(
        "export",
        str(digits),
        "--format",
        "onnx",
        "--quantize",
        "int8-static",
        "--calibration-data",
        str(zeros),
        "--out",
        str(out),
    )
    assert res.code == 1, res.err
    line = res.err.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "label agreement" in line and "below the minimum 99%" in line and "not written" in line
    agreement = float(line.split("label agreement ")[1].split("%")[0])
    assert agreement < 99
    assert not out.exists() and not list(tmp_path.glob(".broken*"))
    assert str(out) not in (digits / "manifest.json").read_text()


def test_optimized_export_is_verified_and_portable(digits):
    (r,) = export_run(digits, "onnx", optimize=True, registry=REGISTRY, echo=quiet)
    assert r.written and r.path.name == "model.opt.onnx" and r.verify.passed
    assert r.verify.heldout[0].agreement == 1.0  # float32: every row
    meta = read_metadata(r.path)
    assert meta["optimization"]["level"] == "basic" and "quantization" not in meta
    import onnx

    domains = {n.domain for n in onnx.load(str(r.path)).graph.node}
    assert domains <= {"", "ai.onnx"}, domains  # standard operators only: any provider runs it


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "torchscript", "--quantize", "int8-dynamic"], "ONNX files only"),
        (["--format", "pt2", "--quantize", "fp16"], "ONNX files only"),
        (["--format", "all", "--quantize", "fp16"], "ONNX files only"),
        (["--quantize", "int4"], "choose from int8-dynamic, int8-static, fp16"),
        (["--quantize", "int8-static", "--calibration-rows", "0"], "needs calibration data"),
        (["--quantize", "int8-dynamic", "--no-verify"], "--no-verify"),
        (["--quantize", "fp16", "--min-agreement", "1.5"], "must be in [0, 1]"),
    ],
)
def test_bad_quantize_requests_are_usage_errors(digits, capsys, args, message):
    before = sorted(p.name for p in digits.iterdir())
    assert tk_main("export", str(digits), *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tk: error:") and message in err and "\n" not in err
    assert sorted(p.name for p in digits.iterdir()) == before


def test_quantizing_a_run_whose_dataset_is_gone_is_a_usage_error(fashion):
    before = sorted(p.name for p in fashion.iterdir())
    DATA_GONE["on"] = True
    try:
        for scheme in ("int8-static", "int8-dynamic"):
            with pytest.raises(UsageError, match="needs the run's dataset") as info:
                export_run(
                    fashion, "onnx", quantize=scheme, overwrite=True, registry=SHAPED, echo=quiet
                )
            assert info.value.exit_code == 2
    finally:
        DATA_GONE["on"] = False
    assert sorted(p.name for p in fashion.iterdir()) == before


def test_min_agreement_lets_a_weaker_file_through_only_when_asked(tmp_path):
    run = train_run(REGISTRY, "circle", tmp_path / "runs", epochs=200)
    zeros = np.zeros((32, 2), np.float32)
    with pytest.raises(VerificationError):
        export_run(
            run, "onnx", quantize="int8-static", calibration=zeros, registry=REGISTRY, echo=quiet
        )
    assert not (run / "model.int8-static.onnx").exists()
    (r,) = export_run(
        run, "onnx", quantize="int8-static", calibration=zeros, min_agreement=0.0,
        registry=REGISTRY, echo=quiet,
    )  # fmt: skip
    assert r.written and r.verify.heldout[0].agreement < 0.99
    assert r.verify.heldout[0].worst and not r.verify.heldout[0].worst[0]["agrees"]
