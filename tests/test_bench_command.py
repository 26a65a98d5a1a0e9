"""`tk bench`: files in their runtimes next to the eager model, interleaved; p50/p90/p99 per
batch size, sizes, a table, JSON and a PNG; the same gate as `tk verify`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import quiet, tk_main
from fixtures.export_models import train_run

from toolkit.bench import bench_files
from toolkit.export import export_run
from toolkit.plugins import load_plugins
from toolkit.speed import interleave, latency, percentile

REGISTRY = load_plugins(warn=False).registry


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bench")
    run = train_run(REGISTRY, "circle", root / "runs", epochs=50)
    results = export_run(run, "all", registry=REGISTRY, echo=quiet, echo_err=quiet)
    # The gate is tests/test_quantize.py's subject: a 2-10-10-1 MLP with many points near
    # its boundary loses label agreement under int8, and timing it needs only the file.
    (q,) = export_run(
        run, "onnx", quantize="int8-dynamic", min_agreement=0.0, registry=REGISTRY, echo=quiet
    )
    return {"root": root, "run": run, **{r.format: r.path for r in results}, "int8": q.path}


def test_two_files_and_eager_with_percentiles_per_batch(files, capsys):
    threads = torch.get_num_threads()
    args = ["bench", str(files["onnx"]), str(files["int8"]), "--batch-sizes", "1,8"]
    assert tk_main(*args, "--rounds", "3", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["batch_sizes"] == [1, 8] and report["rounds"] == 3
    names = [r["name"] for r in report["results"]]
    assert names == ["model.onnx", "model.int8-dynamic.onnx", "eager (circle/r)"]
    for r in report["results"]:
        assert r["size"] > 0 and set(r["latency"]) == {"1", "8"}
        for lat in r["latency"].values():
            assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
            assert lat["rows_per_s"] > 0 and lat["rounds"] == 3
    assert report["results"][1]["quantization"] == "int8-dynamic"
    assert torch.get_num_threads() == threads  # the process is left as it was found

    png = files["root"] / "chart.png"
    assert tk_main(*args, "--rounds", "2", "--plot", str(png)) == 0
    out = capsys.readouterr().out
    for name in ("model.onnx", "model.int8-dynamic.onnx", "eager (circle/r)", "p99 ms"):
        assert name in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_torchscript_and_pt2_files_run_in_their_runtimes(files):
    report = bench_files(
        [files["torchscript"], files["pt2"]], batch_sizes=[4], rounds=2, registry=REGISTRY
    )
    assert [t.runtime for t in report.targets] == ["torch.jit", "torch.export", "torch"]
    assert all(4 in t.latency for t in report.targets)


def test_the_gate_and_bad_options_are_usage_errors(files, tmp_path, capsys):
    # Saved again with one more metadata field: bytes no tk manifest vouches for.
    extra = {"tk_metadata.json": ""}
    module = torch.jit.load(str(files["torchscript"]), _extra_files=extra)
    meta = {**json.loads(extra["tk_metadata.json"]), "note": "re-saved elsewhere"}
    stray = tmp_path / "resaved.torchscript.pt"
    torch.jit.save(module, str(stray), _extra_files={"tk_metadata.json": json.dumps(meta)})
    assert tk_main("bench", str(stray), "--batch-sizes", "1", "--rounds", "1") == 2
    assert "--trust" in capsys.readouterr().err
    args = ["--batch-sizes", "1", "--rounds", "1", "--json"]
    assert tk_main("bench", str(stray), "--trust", *args) == 0
    capsys.readouterr()
    for bad in (
        [str(tmp_path / "missing.onnx")],
        [str(files["onnx"]), "--batch-sizes", "0"],
        [str(files["onnx"]), "--rounds", "0"],
        [str(files["onnx"]), "--threads", "0"],
    ):
        assert tk_main("bench", *bad) == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("tk: error:") and err.count("\n") == 1


def test_speed_helpers():
    calls = []
    times = interleave({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3)
    assert calls == ["a", "b", "b", "a", "a", "b"]  # the order rotates every round
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5 and percentile([5.0], 99) == 5.0
    lat = latency([0.001, 0.002, 0.003], rows=10)
    assert lat["p50_ms"] == pytest.approx(2.0) and lat["rows_per_s"] == pytest.approx(5000)
