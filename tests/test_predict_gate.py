"""`tk predict`'s fast ONNX path keeps the gate: a file that no longer matches its manifest is
refused (small files hashed at once, large ones beside the runtime), external data outside
the file's directory is refused, and the wire-format reader agrees with onnx."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import quiet
from fixtures.export_models import train_run
from fixtures.shaped import shaped_registry

from toolkit.errors import ExportError, UsageError
from toolkit.export import export_run
from toolkit.formats import ONNX_PREFIX, onnx_proto_metadata
from toolkit.integrity import IntegrityError
from toolkit.plugins import load_plugins
from toolkit.predict import loading, onnxwire, predict

REGISTRY = load_plugins(warn=False).registry
SHAPED = shaped_registry()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A small (circle, 8 kB) and a large (784-512-512-10 MLP, 2.6 MB) ONNX export."""
    root = tmp_path_factory.mktemp("gate")
    small = train_run(REGISTRY, "circle", root / "runs", epochs=30, name="small")
    large = train_run(SHAPED, "fashion-mlp", root / "runs", epochs=1, name="large")
    (s,) = export_run(small, "onnx", registry=REGISTRY, echo=quiet)
    (big,) = export_run(large, "onnx", registry=SHAPED, echo=quiet)
    assert s.size < loading.THREAD_BYTES <= big.size
    np.save(root / "xy.npy", np.zeros((3, 2), np.float32))
    np.save(root / "img.npy", np.zeros((3, 1, 28, 28), np.uint8))
    return {"small": s.path, "large": big.path, "xy": root / "xy.npy", "img": root / "img.npy"}


def _flip_last_weight_byte(path: Path) -> bytes:
    """Change one weight byte in place (the file still parses and runs)."""
    data = bytearray(path.read_bytes())
    original = bytes(data)
    proto = onnx.load_from_string(original)
    raw = max(proto.graph.initializer, key=lambda t: len(t.raw_data)).raw_data
    at = original.index(raw) + len(raw) // 2
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    return original


@pytest.mark.parametrize(("which", "inputs"), [("small", "xy"), ("large", "img")])
def test_a_changed_byte_is_refused_before_any_prediction(files, which, inputs):
    path = files[which]
    assert len(predict(path, files[inputs], registry=SHAPED).rows) == 3
    original = _flip_last_weight_byte(path)
    try:
        with pytest.raises(IntegrityError, match="does not match its sha256") as info:
            predict(path, files[inputs], registry=SHAPED)
        assert info.value.exit_code == 3
        # ... and it is the error that wins over bad input, too.
        with pytest.raises(IntegrityError):
            predict(path, files["xy" if which == "large" else "img"], registry=SHAPED)
    finally:
        path.write_bytes(original)


def test_external_data_outside_the_directory_is_refused(files, tmp_path):
    proto = onnx.load(str(files["large"]))
    init = proto.graph.initializer[0]
    init.ClearField("raw_data")
    init.data_location = onnx.TensorProto.EXTERNAL
    entry = init.external_data.add()
    entry.key, entry.value = "location", "../secret.bin"
    evil = tmp_path / "evil" / "model.onnx"
    evil.parent.mkdir()
    evil.write_bytes(proto.SerializeToString())
    data = evil.read_bytes()
    assert onnxwire.has_external_data(data) and not onnxwire.has_external_data(
        files["large"].read_bytes()
    )
    with pytest.raises(IntegrityError, match="outside the model's directory"):
        predict(evil, files["img"], registry=SHAPED)


def test_wire_reader_agrees_with_onnx(files):
    for key in ("small", "large"):
        data = files[key].read_bytes()
        want = onnx_proto_metadata(onnx.load_from_string(data))
        assert onnxwire.metadata(data, ONNX_PREFIX) == want
        assert onnxwire.metadata(data, ONNX_PREFIX, ["task"]) == {"task": want["task"]}


def test_not_onnx_and_no_metadata(files, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07 this is not a protobuf model \xff\xfe" * 40_000)
    with pytest.raises(ExportError, match="cannot read"):
        predict(junk, files["xy"], registry=REGISTRY)
    bare = onnx.load(str(files["small"]))
    del bare.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(bare, str(plain))
    with pytest.raises(UsageError, match="carries no tk metadata"):
        predict(plain, files["xy"], registry=REGISTRY)
