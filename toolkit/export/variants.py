"""ONNX files derived from the verified float32 export: graph-optimized, quantized, or both.

``--optimize`` runs onnxruntime's offline graph optimization at the *basic* level
(constant folding, redundant-node elimination, semantics-preserving fusions of
standard ONNX operators). Basic optimizations run before onnxruntime assigns nodes
to execution providers, so the saved graph holds only standard operators and
stays portable; the extended and all levels fuse into provider-specific
contrib operators (FusedConv, FusedGemm on CPU...), and onnxruntime's docs warn
that a model saved at those levels may only run on the provider, and the
hardware, that optimized it. tk does not write such files.

The derived file carries the usual provenance plus what was done to it, with the
sha256 of the float32 bytes it came from; ``driver`` verifies it before writing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import runs
from toolkit.errors import ExportError, one_line
from toolkit.export.quantize import TOOLS, calibration_sha256, quantize
from toolkit.formats.onnx import ONNX, opset_of, with_metadata
from toolkit.formats.runtime import quiet_native, session_options

if TYPE_CHECKING:
    from toolkit.export.prepare import ExportJob

OPTIMIZE_TOOL = "onnxruntime offline graph optimization (basic)"


def optimize(data: bytes) -> Any:
    """The model after onnxruntime's basic offline graph optimization (a ModelProto)."""
    import onnx
    import onnxruntime as ort

    try:
        with quiet_native(), tempfile.TemporaryDirectory(prefix="tk-optimize-") as tmp:
            target = Path(tmp) / "optimized.onnx"
            opts = session_options()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            opts.optimized_model_filepath = str(target)
            ort.InferenceSession(data, opts, ["CPUExecutionProvider"])
            return onnx.load(str(target))
    except Exception as exc:
        raise ExportError(
            f"graph optimization failed: {one_line(exc, 240)}", "drop --optimize"
        ) from None


def derive(job: ExportJob, data: bytes, exporter: str) -> tuple[bytes, str, int | None]:
    """``data`` (verified float32 ONNX) optimized and/or quantized as the job asks.

    Returns (bytes with metadata, the exporter chain, opset).
    """
    source = runs.sha256_bytes(data)
    steps = [exporter]
    extra: dict[str, Any] = {}
    proto = None  # derive runs only with --optimize or --quantize: one of them sets it
    if job.optimize:
        proto = optimize(data)
        steps.append(OPTIMIZE_TOOL)
        extra["optimization"] = {"tool": "onnxruntime", "level": "basic", "source_sha256": source}
        data = proto.SerializeToString()
    if job.quantize:
        proto = quantize(
            data, job.quantize, calibration=job.calibration, static_batch=job.static_batch
        )
        steps.append(TOOLS[job.quantize])
        extra["quantization"] = {
            "scheme": job.quantize,
            "tool": TOOLS[job.quantize],
            "calibration": _calibration_meta(job),
            "source_sha256": source,
        }
    chain = " + ".join(steps)
    version = opset_of(proto)
    meta = job.metadata(ONNX.name, chain, version)
    meta.update(extra)
    return with_metadata(proto, meta), chain, version


def _calibration_meta(job: ExportJob) -> dict[str, Any] | None:
    """Rows, hash and origin of the calibration data (int8-static only)."""
    if job.calibration is None or job.quantize != "int8-static":
        return None
    return {
        "rows": len(job.calibration),
        "sha256": calibration_sha256(job.calibration),
        "source": job.calibration_source,
    }
