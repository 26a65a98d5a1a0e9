"""Issue 19, security: no code runs from a file tk did not write.

Every payload is real: a pickle whose ``__reduce__`` runs ``touch MARKER`` (inside
a pt2's sample inputs, weights or constants, written by torch.export.save and then
doctored), a pt2 with no pickle at all whose symbolic shape is a Python expression
(sympy's parser evaluates it), a TorchScript module whose ``forward`` creates a file,
ONNX external data that points outside the model's directory. ``--trust`` cases
show each payload really runs when the user lets it (the marker appears); every
other case asserts the exit code, one ``tk: error:`` line with no traceback,
nothing changed on disk (the trust record included), and no marker.

What vouches for a file that runs code is tk's record of what this installation
exported (``$TK_HOME/exports.sha256``, a temporary one for the test session), never
the file's metadata or a manifest.json anyone can write.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import quiet
from fixtures.export_models import train_run
from hostile import assert_one_line, assert_unchanged, run, snapshot
from onnx import TensorProto
from onnx import helper as oh

from toolkit import trust
from toolkit.export import export_run
from toolkit.formats import META_FILE
from toolkit.plugins import load_plugins
from toolkit.runs import sha256_file
from toolkit.testing.process import tk_env
from toolkit.trust import detect_format, read_metadata

REGISTRY = load_plugins(warn=False).registry
RUNS_CODE = "loading it runs code"
OUTSIDE = "outside the model's directory"


class Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class WritesOnForward(torch.nn.Module):
    """The circle model's input and output, and a ``forward`` that creates ``marker``."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.fc = torch.nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        written = torch.from_file(self.marker, shared=True, size=4, dtype=torch.uint8)
        written.fill_(65)
        return self.fc(x) + written[0].float() * 0


def _rewrite(src: Path, dst: Path, change: Callable[[str, bytes], bytes], add=()) -> Path:
    """A copy of the zip archive ``src`` with members changed (and ``add``ed)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, change(info.filename, zin.read(info.filename)))
        for name, data in add:
            zout.writestr(name, data)
    return dst


def _evil_torchscript(dst: Path, marker: Path, meta: dict) -> Path:
    scripted = torch.jit.script(WritesOnForward(str(marker)))
    torch.jit.save(scripted, str(dst), _extra_files={META_FILE: json.dumps(meta)})
    return dst


def _pt2_payloads(src: Path, evil: Path, marker: Callable[[str], Path]) -> dict[str, Path]:
    """tk's pt2 export with a pickle payload in each place torch unpickles, and one
    with no pickle whose symbolic shape is Python code."""

    def sample_inputs(name: str, data: bytes, tag: str = "pt2-sample") -> bytes:
        return pickle.dumps(Payload(marker(tag))) if "sample_inputs/" in name else data

    def weights(name: str, data: bytes) -> bytes:
        if name.endswith("weights/model_weights_config.json"):
            cfg = json.loads(data)
            cfg["config"]["0.weight"]["use_pickle"] = True
            return json.dumps(cfg).encode()
        return pickle.dumps(Payload(marker("pt2-weights"))) if name.endswith("/weight_0") else data

    def constants(name: str, data: bytes) -> bytes:
        if name.endswith("constants/model_constants_config.json"):
            entry = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True}
            return json.dumps({"config": {"evil": {**entry, "tensor_meta": None}}}).encode()
        return data

    def sympy_expr(name: str, data: bytes) -> bytes:
        if not name.endswith("models/model.json"):
            return data
        code = f"__import__('os').system('touch {marker('pt2-sympy')}')"
        text, n = re.subn(
            r'"expr_str": "(Symbol\([^"]*\))"', f'"expr_str": "({code}, \\1)[1]"', data.decode()
        )
        assert n > 0  # tk's pt2 has a dynamic batch: a symbolic shape to replace
        return text.encode()

    opaque = [("archive/data/constants/opaque_obj_0", pickle.dumps(Payload(marker("pt2-const"))))]
    return {
        "pt2-sample": _rewrite(src, evil / "sample.pt2", sample_inputs),
        "pt2-weights": _rewrite(src, evil / "weights.pt2", weights),
        "pt2-const": _rewrite(src, evil / "constant.pt2", constants, opaque),
        "pt2-sympy": _rewrite(src, evil / "sympy.pt2", sympy_expr),
        "pt2-trusted": _rewrite(
            src, evil / "trusted.pt2", lambda n, d: sample_inputs(n, d, "pt2-trusted")
        ),
        "pt2-as-onnx": _rewrite(src, evil / "pt2-as.onnx", sample_inputs),
        "pt2-as-pt": _rewrite(src, evil / "pt2-as.pt", sample_inputs),
    }


def _torchscript_payloads(
    tk_file: Path, run_dir: Path, evil: Path, marker: Callable[[str], Path]
) -> dict[str, Path]:
    """A forward() that writes a file, carrying tk's metadata with each lie."""
    meta = read_metadata(tk_file)
    files = {
        f"ts-format-{label}": _evil_torchscript(
            evil / f"format-{label}.pt", marker(f"ts-format-{label}"), {**meta, "format": value}
        )
        for label, value in (("null", None), ("empty", ""), ("onnx", "onnx"))
    }
    # Claims the sha256 of tk's real export (and the run's weights, which are real).
    spoofed = {**meta, "sha256": sha256_file(tk_file)}
    files["ts-spoofed"] = _evil_torchscript(evil / "spoofed.pt", marker("ts-spoofed"), spoofed)
    files["ts-as-onnx"] = _evil_torchscript(evil / "ts-as.onnx", marker("ts-as-onnx"), meta)
    files["ts-as-pt2"] = _evil_torchscript(evil / "ts-as.pt2", marker("ts-as-pt2"), meta)
    files["ts-trusted"] = _evil_torchscript(evil / "trusted.pt", marker("ts-trusted"), meta)

    # A manifest.json beside the file, listing its sha256 (and as an "export").
    beside = evil / "beside"
    beside.mkdir()
    files["ts-beside"] = _evil_torchscript(beside / "model.pt", marker("ts-beside"), meta)
    _forge_manifest(beside, files["ts-beside"])

    # A forged run at the path its metadata names: config, weights, manifest.
    forged_run = evil / "forged-run"
    forged_run.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(run_dir / name, forged_run / name)
    at_run = {**meta, "run": str(forged_run)}
    files["ts-at-run"] = _evil_torchscript(evil / "at-run.pt", marker("ts-at-run"), at_run)
    _forge_manifest(forged_run, files["ts-at-run"])
    return files


def _forge_manifest(directory: Path, listed: Path) -> None:
    digest = sha256_file(listed)
    rel = listed.relative_to(directory).as_posix() if listed.is_relative_to(directory) else None
    files = {rel: digest} if rel else {}
    manifest = {"version": 1, "files": files, "exports": [digest]}
    (directory / "manifest.json").write_text(json.dumps(manifest))


def _with_external(src: Path, dst: Path, location: str, extra_bytes: int = 0) -> Path:
    """tk's ONNX export whose first initializer reads its data from ``location``."""
    proto = onnx.load(str(src))
    init = proto.graph.initializer[0]
    n = int(np.prod(init.dims)) * 4
    init.ClearField("raw_data")
    del init.float_data[:]
    init.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(n))):
        entry = init.external_data.add()
        entry.key, entry.value = key, value
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(proto.SerializeToString())
    return dst


def _subgraph_external(src: Path, dst: Path, location: str, pad: int = 0) -> Path:
    """An ``If`` whose branch holds the only external tensor; tk's metadata copied in.
    ``pad`` bytes of inline weights make the file large enough for predict's wire scan."""
    w = oh.make_tensor("w", TensorProto.FLOAT, [2, 1], np.zeros(2, np.float32))
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "8")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    out = oh.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])
    then = oh.make_graph([oh.make_node("MatMul", ["input", "w"], ["y"])], "then", [], [out], [w])
    other = oh.make_graph([oh.make_node("MatMul", ["input", "v"], ["y"])], "else", [], [out])
    other.initializer.append(oh.make_tensor("v", TensorProto.FLOAT, [2, 1], [0.0, 0.0]))
    cond = oh.make_tensor("cond", TensorProto.BOOL, [], [True])
    big = oh.make_tensor("pad", TensorProto.UINT8, [pad], b"\0" * pad, raw=True)
    graph = oh.make_graph(
        [oh.make_node("If", ["cond"], ["output"], then_branch=then, else_branch=other)],
        "g",
        [oh.make_tensor_value_info("input", TensorProto.FLOAT, [None, 2])],
        [oh.make_tensor_value_info("output", TensorProto.FLOAT, [None, 1])],
        [cond, *([big] if pad else [])],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.metadata_props.extend(onnx.load(str(src)).metadata_props)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(model.SerializeToString())
    return dst


def _onnx_payloads(tk_onnx: Path, root: Path, evil: Path) -> dict[str, Path]:
    secret = root / "secret.bin"  # outside every model directory
    secret.write_bytes(np.arange(64, dtype=np.float32).tobytes())
    files = {
        "onnx-absolute": _with_external(tk_onnx, evil / "abs" / "model.onnx", str(secret)),
        "onnx-dotdot": _with_external(tk_onnx, evil / "dotdot" / "model.onnx", "../../secret.bin"),
        "onnx-symlink": _with_external(tk_onnx, evil / "link" / "model.onnx", "data.bin"),
    }
    (evil / "link" / "data.bin").symlink_to(secret)
    # The model is a symlink into a directory whose data.bin is harmless; beside the
    # symlink (where onnxruntime looks), data.bin leads outside.
    real = _with_external(tk_onnx, evil / "real" / "model.onnx", "data.bin")
    (evil / "real" / "data.bin").write_bytes(b"\0" * 64)
    (evil / "via").mkdir()
    (evil / "via" / "model.onnx").symlink_to(real)
    (evil / "via" / "data.bin").symlink_to(secret)
    files["onnx-model-symlink"] = evil / "via" / "model.onnx"
    files["onnx-subgraph"] = _subgraph_external(tk_onnx, evil / "sub" / "model.onnx", "../x.bin")
    files["onnx-subgraph-large"] = _subgraph_external(
        tk_onnx, evil / "sub-large" / "model.onnx", "../x.bin", pad=2 << 20
    )
    return files


def _other_payloads(tk_ts: Path, evil: Path, marker: Callable[[str], Path]) -> dict[str, Path]:
    raw = pickle.dumps(Payload(marker("raw")))
    files = {f"raw{suffix}": evil / f"raw{suffix}" for suffix in (".onnx", ".pt2", ".pt")}
    for path in files.values():
        path.write_bytes(raw)
    files["torch-save"] = evil / "saved.pt"
    torch.save({"x": Payload(marker("torch-save"))}, files["torch-save"])
    # tk's TorchScript whose metadata member inflates to 32 MB (a few kB compressed).
    bomb = evil / "bomb.pt"
    with zipfile.ZipFile(tk_ts) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith(META_FILE):
                data = b"{" + b" " * (32 << 20) + b"}"
            zout.writestr(info.filename, data)
    files["bomb"] = bomb
    return files


@pytest.fixture(scope="module")
def bed(tmp_path_factory) -> dict:
    """One trained circle run, its three exports (recorded in the session's trust
    record), and every hostile file built from them."""
    root = tmp_path_factory.mktemp("hostile-sec")
    run_dir = train_run(REGISTRY, "circle", root / "runs", epochs=5, name="r")
    results = export_run(run_dir, "all", registry=REGISTRY, echo=quiet, echo_err=quiet)
    tk = {r.format: r.path for r in results}
    evil, markers = root / "evil", root / "markers"
    evil.mkdir()
    markers.mkdir()

    def marker(tag: str) -> Path:
        return markers / tag

    files = {
        **_pt2_payloads(tk["pt2"], evil, marker),
        **_torchscript_payloads(tk["torchscript"], run_dir, evil, marker),
        **_onnx_payloads(tk["onnx"], root, evil),
        **_other_payloads(tk["torchscript"], evil, marker),
    }
    points = root / "points.csv"
    points.write_text("0.1,0.2\n0.9,-0.3\n")
    work = root / "work"
    work.mkdir()
    return {"root": root, "run": run_dir, "tk": tk, "files": files, "markers": markers,
            "points": points, "work": work}  # fmt: skip


def _args(bed: dict, command: str, path: Path) -> list[str]:
    extra = {
        "predict": ["--input", str(bed["points"])],
        "bench": ["--batch-sizes", "1", "--rounds", "1"],
    }
    return [command, str(path), *extra.get(command, [])]


def _refused(bed, capsys, monkeypatch, path, command, code, needles, *flags):
    """Run ``tk COMMAND FILE``: refused with ``code`` in one line, nothing changed, no marker."""
    monkeypatch.chdir(bed["work"])
    watched = (bed["root"], trust.home())
    before = snapshot(*watched)
    outcome = run(capsys, *_args(bed, command, path), *flags)
    line = assert_one_line(outcome, code, *needles)
    assert_unchanged(before, snapshot(*watched))
    assert not any(bed["markers"].iterdir()), sorted(bed["markers"].iterdir())
    return line


GATED = ("refusing to load", RUNS_CODE, "did not export", "--trust")
REFUSED = [
    # TorchScript whose forward() writes a file, and what it claims about itself.
    ("ts-format-null", "predict", 2, ("TorchScript", *GATED)),
    ("ts-format-empty", "verify", 2, ("TorchScript", *GATED)),
    ("ts-format-onnx", "bench", 2, ("TorchScript", *GATED)),
    ("ts-format-onnx", "predict", 2, ("TorchScript", *GATED)),
    ("ts-as-onnx", "predict", 2, ("TorchScript", *GATED)),
    ("ts-as-onnx", "verify", 2, ("TorchScript", *GATED)),
    ("ts-as-pt2", "bench", 2, ("TorchScript", *GATED)),
    ("ts-spoofed", "verify", 2, GATED),
    ("ts-beside", "predict", 2, GATED),
    ("ts-beside", "bench", 2, GATED),
    ("ts-at-run", "verify", 2, GATED),
    # torch.export files: pickles in each member torch unpickles, and none at all.
    ("pt2-sample", "predict", 2, ("torch.export", *GATED)),
    ("pt2-sample", "verify", 2, ("torch.export", *GATED)),
    ("pt2-sample", "bench", 2, ("torch.export", *GATED)),
    ("pt2-weights", "verify", 2, GATED),
    ("pt2-const", "predict", 2, GATED),
    ("pt2-sympy", "verify", 2, GATED),
    ("pt2-sympy", "predict", 2, GATED),
    ("pt2-as-onnx", "predict", 2, ("torch.export", *GATED)),
    ("pt2-as-pt", "bench", 2, ("torch.export", *GATED)),
    ("torch-save", "predict", 2, GATED),  # a torch.save zip is code-bearing too
    ("bomb", "predict", 2, GATED),  # refused before its metadata is read
    # A bare pickle under any name is not a zip: read as ONNX, which it is not.
    ("raw.onnx", "predict", 3, ("cannot read", "onnx")),
    ("raw.pt2", "verify", 3, ("cannot read", "onnx")),
    ("raw.pt", "bench", 3, ("cannot read", "onnx")),
    ("raw.pt", "inspect", 3, ("cannot read", "onnx")),
    # ONNX external data leaving the model's directory.
    ("onnx-absolute", "predict", 3, (OUTSIDE,)),
    ("onnx-absolute", "verify", 3, (OUTSIDE,)),
    ("onnx-dotdot", "bench", 3, (OUTSIDE, "../../secret.bin")),
    ("onnx-dotdot", "predict", 3, (OUTSIDE,)),
    ("onnx-symlink", "predict", 3, (OUTSIDE, "data.bin")),
    ("onnx-symlink", "verify", 3, (OUTSIDE,)),
    ("onnx-model-symlink", "predict", 3, (OUTSIDE,)),
    ("onnx-model-symlink", "bench", 3, (OUTSIDE,)),
    ("onnx-subgraph", "verify", 3, (OUTSIDE, "'w'")),
    ("onnx-subgraph", "predict", 3, (OUTSIDE,)),
    ("onnx-subgraph-large", "predict", 3, (OUTSIDE,)),  # the wire-format scan
    # A 32 MB metadata member: refused from its declared size, never inflated.
    ("bomb", "inspect", 3, ("cannot read", "bytes")),
]


@pytest.mark.parametrize(("key", "command", "code", "needles"), REFUSED)
def test_hostile_file_is_refused_and_runs_nothing(
    bed, capsys, monkeypatch, key, command, code, needles
):
    _refused(bed, capsys, monkeypatch, bed["files"][key], command, code, needles)


def test_a_zip_bomb_is_refused_even_with_trust(bed, capsys, monkeypatch):
    bomb = bed["files"]["bomb"]
    _refused(bed, capsys, monkeypatch, bomb, "predict", 3, ("cannot read", "bytes"), "--trust")


@pytest.mark.parametrize(
    ("key", "fmt"),
    [("ts-format-null", "torchscript"), ("ts-as-onnx", "torchscript"), ("pt2-sample", "pt2")],
)
def test_inspect_reads_metadata_only_and_says_what_the_bytes_are(bed, capsys, key, fmt):
    before = snapshot(bed["root"])
    outcome = run(capsys, "inspect", str(bed["files"][key]), "--json")
    assert outcome.code == 0, outcome.err
    meta = json.loads(outcome.out)
    assert meta["format"] == fmt  # from the bytes, whatever the file claims
    assert meta["run"] == str(bed["run"])
    assert_unchanged(before, snapshot(bed["root"]))
    assert not any(bed["markers"].iterdir())


@pytest.mark.parametrize(
    ("key", "command", "needle"),
    [
        ("pt2-sample", "predict", "cannot load"),  # weights_only forced: UnpicklingError
        ("pt2-weights", "bench", "cannot load"),
        ("pt2-const", "verify", "opaque_obj_0"),  # refused from its member list
    ],
)
def test_a_recorded_pt2_still_never_unpickles(bed, capsys, monkeypatch, key, command, needle):
    """Defence in depth: even bytes the record vouches for (a poisoned record) load with
    every pickle refused; only --trust unpickles."""
    # A copy with one more extra member: bytes of its own, so only this case records them.
    recorded = bed["root"] / "recorded" / f"{key}.pt2"
    recorded.parent.mkdir(exist_ok=True)
    _rewrite(bed["files"][key], recorded, lambda _n, d: d, [("archive/extra/note", b"x")])
    trust.remember(recorded, sha256_file(recorded))
    _refused(bed, capsys, monkeypatch, recorded, command, 3, (needle,))


@pytest.mark.parametrize(("key", "command"), [("ts-trusted", "predict"), ("pt2-trusted", "verify")])
def test_trust_is_the_one_door_and_the_payloads_are_real(bed, capsys, monkeypatch, key, command):
    monkeypatch.chdir(bed["work"])
    marker = bed["markers"] / key
    outcome = run(capsys, *_args(bed, command, bed["files"][key]), "--trust")
    try:
        assert marker.exists(), (outcome.code, outcome.err)  # the payload ran: it is real
        # TorchScript ran and predicted; the pt2 unpickled its payload, then failed.
        assert outcome.code == (0 if key.startswith("ts") else 3), outcome.err
    finally:
        marker.unlink(missing_ok=True)


def test_files_tk_exported_load_without_trust_wherever_they_are(bed, capsys, monkeypatch):
    monkeypatch.chdir(bed["work"])
    for fmt in ("onnx", "torchscript", "pt2"):
        outcome = run(capsys, "predict", str(bed["tk"][fmt]), "--input", str(bed["points"]))
        assert outcome.code == 0, outcome.err
        assert len(outcome.out.strip().splitlines()) >= 2
    # Copied elsewhere (no manifest, no run beside them): the sha256 is recorded.
    elsewhere = bed["root"] / "elsewhere"
    elsewhere.mkdir()
    for fmt in ("torchscript", "pt2"):
        copy = elsewhere / bed["tk"][fmt].name
        shutil.copy(bed["tk"][fmt], copy)
        outcome = run(capsys, "verify", str(copy))
        assert outcome.code == 0, outcome.err
        assert "PASS" in outcome.out
    outcome = run(
        capsys, "bench", str(elsewhere / "model.pt2"), "--batch-sizes", "1", "--rounds", "1"
    )
    assert outcome.code == 0, outcome.err


def test_a_manifest_never_vouches_only_the_record_does(bed, capsys, monkeypatch, tmp_path):
    """tk's own export inside its run (listed in the run's manifest.json) needs --trust
    once the record of this installation's exports does not hold it."""
    monkeypatch.setenv("TK_HOME", str(tmp_path / "other-home"))
    monkeypatch.chdir(bed["work"])
    for fmt, name in (("torchscript", "TorchScript"), ("pt2", "torch.export")):
        outcome = run(capsys, "verify", str(bed["tk"][fmt]))
        assert_one_line(outcome, 2, f"refusing to load {name} file", RUNS_CODE, "--trust")
        outcome = run(capsys, "verify", str(bed["tk"][fmt]), "--trust")
        assert outcome.code == 0, outcome.err
    assert not (tmp_path / "other-home").exists()  # loading records nothing


def test_export_records_every_file_it_writes(bed, tmp_path):
    store = trust.store_path()
    assert store.parent == Path(os.environ["TK_HOME"])  # the session's, never a real home
    assert tk_env(inherit_tk=False)["TK_HOME"] == os.environ["TK_HOME"]  # kept for subprocesses
    recorded = store.read_text()
    for path in bed["tk"].values():
        assert f"{sha256_file(path)}  {path.absolute()}\n" in recorded
    (q,) = export_run(
        bed["run"], "onnx", quantize="int8-dynamic", out=tmp_path / "q.onnx",
        registry=REGISTRY, echo=quiet, echo_err=quiet,
    )  # fmt: skip
    assert q.written and f"{sha256_file(q.path)}  {q.path}\n" in store.read_text()


def test_a_torn_record_line_matches_nothing_and_the_next_export_starts_fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("TK_HOME", str(tmp_path))
    digest = "ab" * 32
    trust.store_path().write_text(digest[:40])  # a writer killed mid-line
    assert not trust.exported(digest)
    trust.remember(tmp_path / "model.pt2", digest)
    assert trust.exported(digest)
    assert trust.store_path().read_text().splitlines()[-1].startswith(digest + "  ")


def test_the_format_comes_from_the_archive_layout_not_names(bed, tmp_path):
    """TorchScript code can live under ``code/__torch__/torchvision/models/`` (ResNet's
    does): still TorchScript. A pt2 is what torch's reader sees as one, whatever its name."""
    ts = _rewrite(
        bed["tk"]["torchscript"],
        tmp_path / "resnet-like.pt2",
        lambda _n, d: d,
        [("archive/code/__torch__/torchvision/models/resnet.py", b"")],
    )
    assert detect_format(ts) == detect_format(ts.read_bytes()) == "torchscript"
    for key, fmt in (("pt2-as-onnx", "pt2"), ("ts-as-onnx", "torchscript"), ("raw.pt2", "onnx")):
        assert detect_format(bed["files"][key]) == fmt
