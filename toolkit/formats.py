"""The exported file formats: their names, default file names and embedded metadata.

Every module that writes, loads or inspects an exported file takes these from
here, so export, verify, predict and the plugin check agree on one list.

Metadata lives inside the file itself:

- ONNX: ``metadata_props`` entries ``tk.<key>``, each value JSON-encoded, so other
  tools (Netron, onnxruntime's ``custom_metadata_map``) show every field on its own;
- TorchScript and pt2: one JSON document stored as an extra file of their zip
  archive (``<archive>/extra/tk_metadata.json``).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit.errors import ExportError, UsageError, one_line

FORMATS = ("onnx", "torchscript", "pt2")
FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "pt2": "model.pt2"}
META_FILE = "tk_metadata.json"
ONNX_PREFIX = "tk."
# ONNX files made smaller from the verified fp32 one (``tk export --quantize``):
# int8 weights quantized at load time, int8 weights and activations calibrated on
# training rows, or float16 weights and compute (inputs and outputs stay float32).
QUANTIZE_SCHEMES = ("int8-dynamic", "int8-static", "fp16")


def size_text(n: int) -> str:
    """A file size as ``8.1 kB`` or ``42.7 MB`` (export lines, ``tk bench``)."""
    return f"{n / 1024:.1f} kB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MB"


def export_file_name(fmt: str, quantize: str | None = None, optimize: bool = False) -> str:
    """The default file name of an export: ``model.onnx``, ``model.opt.int8-static.onnx``..."""
    name = FILE_NAMES[fmt]
    if fmt != "onnx" or not (quantize or optimize):
        return name
    tags = ([".opt"] if optimize else []) + ([f".{quantize}"] if quantize else [])
    return name.removesuffix(".onnx") + "".join(tags) + ".onnx"


def quantization(meta: dict[str, Any]) -> str | None:
    """The quantization scheme an exported file carries (None for a float32 file)."""
    q = meta.get("quantization")
    return q.get("scheme") if isinstance(q, dict) else None


def detect_format(data: bytes | str | Path) -> str:
    """``onnx``, ``torchscript`` or ``pt2`` from the file's content, not its name.

    TorchScript and pt2 files are zip archives (pt2 has ``archive_format``,
    TorchScript has ``code/``); anything else is tried as ONNX.
    """
    source: Any = io.BytesIO(data) if isinstance(data, bytes) else data
    if not zipfile.is_zipfile(source):
        return "onnx"
    if isinstance(source, io.BytesIO):
        source.seek(0)
    with zipfile.ZipFile(source) as zf:
        names = zf.namelist()
    if any(n.endswith("/archive_format") or "/models/" in n for n in names):
        return "pt2"
    return "torchscript"


def read_metadata(path: str | Path | bytes) -> dict[str, Any]:
    """The provenance tk stored in an exported file (``{}`` if it has none).

    Reads only the metadata: no weights are loaded and no model code runs, so this
    is safe on files from anywhere. Raises ExportError if the file cannot be read.
    """
    if not isinstance(path, bytes) and not Path(path).is_file():
        what = "not a file" if Path(path).exists() else "no such file"
        raise UsageError(f"{what}: {path}", "tk export, then the path of the file it wrote")
    fmt = detect_format(path)
    try:
        meta = _onnx_metadata(path) if fmt == "onnx" else _zip_metadata(path)
    except Exception as exc:
        what = "an in-memory export" if isinstance(path, bytes) else str(path)
        raise ExportError(
            f"cannot read {what} as {fmt}: {one_line(exc, 200)}",
            "re-export it with tk export",
        ) from None
    if meta:
        meta.setdefault("format", fmt)
    return meta


def _onnx_metadata(path: str | Path | bytes) -> dict[str, Any]:
    import onnx

    if isinstance(path, bytes):
        proto = onnx.load_from_string(path)
    else:
        # format= explicitly: onnx guesses from the suffix (.json, .txt) otherwise.
        proto = onnx.load(str(path), format="protobuf", load_external_data=False)
    return onnx_proto_metadata(proto)


def onnx_proto_metadata(proto: Any, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """tk's ``tk.*`` metadata_props of an already-parsed ONNX ModelProto (only ``keys``)."""
    n = len(ONNX_PREFIX)
    return {
        p.key[n:]: json.loads(p.value)
        for p in proto.metadata_props
        if p.key.startswith(ONNX_PREFIX) and (keys is None or p.key[n:] in keys)
    }


def _zip_metadata(path: str | Path | bytes) -> dict[str, Any]:
    source: Any = io.BytesIO(path) if isinstance(path, bytes) else path
    with zipfile.ZipFile(source) as zf:
        name = next((n for n in zf.namelist() if n.endswith(f"/extra/{META_FILE}")), None)
        return json.loads(zf.read(name)) if name else {}


def static_batch(meta: dict[str, Any]) -> int | None:
    """The batch size a file was exported for, or None for a dynamic batch."""
    first = (meta.get("input") or {}).get("shape", ["batch"])[0]
    return int(first) if isinstance(first, int) else None
