"""OpenVINO IR as a tk export format: converted from the verified ONNX graph.

``tk export RUN --format openvino`` asks tk for the ONNX bytes it exported and
verified in this same export (``request.source("onnx")``), converts them with
OpenVINO, stores tk's metadata in the IR's ``rt_info`` and hands back the XML
with its weights (``.bin``) as a companion file; tk then verifies the pair in
the OpenVINO runtime before writing either. Nothing here is imported by ``tk
list``: OpenVINO and onnx load inside the methods.
"""

from __future__ import annotations

import json
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit import Exported, ExportFormat, ExportRequest, Probe, Runner, hookimpl

META_KEY = "tk_metadata"  # the rt_info entry holding tk's metadata (one JSON document)
ONNX_PREFIX = "tk."  # tk's metadata_props in the ONNX source, dropped from the IR


class OpenVinoFormat(ExportFormat):
    """OpenVINO IR v11: ``model.xml`` (the graph) and ``model.bin`` (the weights)."""

    name = "openvino"
    title = "OpenVINO IR"
    suffix = ".xml"
    file_name = "model.xml"
    companions = (".bin",)
    aliases = ("ov", "ir")
    description = "OpenVINO IR (.xml + .bin) from the verified ONNX graph; OpenVINO CPU runtime"

    def detect(self, probe: Probe) -> bool:
        """An XML document whose root is ``<net>`` (the IR's)."""
        head = probe.head.lstrip(b"\xef\xbb\xbf \t\r\n")
        return head.startswith((b"<?xml", b"<net")) and b"<net " in head

    def export(self, request: ExportRequest) -> Exported:
        """Convert the verified ONNX bytes; keep float32 weights; embed tk's metadata."""
        import onnx
        import openvino as ov

        proto = onnx.load_from_string(request.source("onnx"))
        source = {p.key[len(ONNX_PREFIX) :]: p.value for p in proto.metadata_props}
        kept = [p for p in proto.metadata_props if not p.key.startswith(ONNX_PREFIX)]
        del proto.metadata_props[:]
        proto.metadata_props.extend(kept)  # tk's own entries would say "format": "onnx"
        model = ov.Core().read_model(proto.SerializeToString())
        onnx_exporter = json.loads(source.get("exporter", '"ONNX"'))
        exporter = f"{onnx_exporter} + OpenVINO {ov.__version__.split('-')[0]}"
        model.set_rt_info(json.dumps(request.meta(exporter)), [META_KEY])
        with tempfile.TemporaryDirectory(prefix="tk-openvino-") as tmp:
            xml = Path(tmp) / "model.xml"
            # fp16 compression is OpenVINO's default: verified against float32 tolerances,
            # the file must keep the weights it was verified with.
            ov.save_model(model, xml, compress_to_fp16=False)
            return Exported(
                xml.read_bytes(), exporter, None, {".bin": xml.with_suffix(".bin").read_bytes()}
            )

    def read_metadata(self, source: str | Path | bytes) -> dict[str, Any]:
        """The ``rt_info`` entry, parsed from the XML alone (no OpenVINO, no weights)."""
        root = ET.fromstring(source) if isinstance(source, bytes) else ET.parse(source).getroot()
        entry = root.find(f"./rt_info/{META_KEY}")
        if entry is None:
            return {}
        meta = json.loads(entry.get("value", "{}"))
        if not isinstance(meta, dict):
            raise ValueError(f"{META_KEY} holds a {type(meta).__name__}, not an object")
        return meta

    def load(self, cleared: Any, *, cuda: bool = True, threads: int | None = None) -> list[Runner]:
        """OpenVINO's CPU plugin, in float32 (never its bf16/fp16 defaults)."""
        import numpy as np
        import openvino as ov

        core = ov.Core()
        if isinstance(cleared.source, bytes):  # being exported: both files in memory
            weights = ov.Tensor(np.frombuffer(cleared.extra[".bin"], dtype=np.uint8))
            model = core.read_model(cleared.source.decode(), weights)
        else:  # through the gate: the .bin beside it was checked too
            model = core.read_model(cleared.source)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = core.compile_model(model, "CPU", config)
        return [Runner("openvino-cpu", _run(compiled))]


def _run(compiled: Any) -> Callable[[Any], list[Any]]:
    outputs = list(compiled.outputs)

    def run(x: Any) -> list[Any]:
        result = compiled([x])  # copies the outputs (share_outputs=False)
        return [result[o] for o in outputs]

    return run


@hookimpl
def tk_register_formats(register: Callable[[ExportFormat], None]) -> None:
    """The ``openvino`` format."""
    register(OpenVinoFormat())
