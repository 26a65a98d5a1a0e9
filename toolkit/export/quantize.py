"""Smaller ONNX files made from the verified float32 one: int8 (dynamic, static) and float16.

- ``int8-dynamic``: ``onnxruntime.quantization.quantize_dynamic``: int8 weights,
  activations quantized at run time from each batch's own range. No data needed.
- ``int8-static``: ``quantize_static`` in QDQ format, int8 weights per channel and
  int8 activations whose ranges (MinMax) are calibrated on rows of the run's
  training split (evenly spaced over it, ``--calibration-rows N``), or on the
  rows given (``--calibration-data``).
- ``fp16``: ``onnxruntime.transformers.float16.convert_float_to_float16`` with
  ``keep_io_types=True``: float16 weights and compute, float32 inputs and outputs,
  so a caller feeds and reads the file exactly as the float32 one.

The quantizers are fed the float32 bytes that passed verification and write into
a temporary directory; what they produce is then checked on the held-out split
like any export, and written only if it passes. Nothing here decides anything.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import ExportError, one_line
from toolkit.formats import QUANTIZE_SCHEMES
from toolkit.formats.runtime import quiet_native

if TYPE_CHECKING:
    import numpy as np

CALIBRATION_BATCH = 64
TOOLS = {
    "int8-dynamic": "onnxruntime.quantization.quantize_dynamic(int8 weights)",
    "int8-static": "onnxruntime.quantization.quantize_static(QDQ, int8 per-channel, MinMax)",
    "fp16": "onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)",
}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No log lines or warnings from the quantizers (their advice is not for a tk user)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # "please consider pre-processing" on the root logger
    try:
        with quiet_native(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def quantize(
    data: bytes,
    scheme: str,
    *,
    calibration: np.ndarray | None = None,
    static_batch: int | None = None,
) -> Any:
    """The ``scheme`` version of the float32 ONNX model ``data``, as an onnx ModelProto.

    :param calibration: model-input rows for ``int8-static`` (required there).
    :param static_batch: the file's fixed batch, if any (calibration is fed in it).
    :raises ExportError: the quantizer failed on this model (exit 3).
    """
    import onnx

    if scheme not in QUANTIZE_SCHEMES:  # prepare() refuses it first; a library caller too
        raise ValueError(f"unknown quantization scheme {scheme!r}")
    proto = onnx.load_from_string(data)
    try:
        with _quiet(), tempfile.TemporaryDirectory(prefix="tk-quantize-") as tmp:
            out = Path(tmp) / "model.onnx"
            if scheme == "fp16":
                return _fp16(proto)
            if scheme == "int8-dynamic":
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantize_dynamic(proto, out, weight_type=QuantType.QInt8)
            else:
                _static(proto, out, calibration, static_batch)
            return onnx.load(str(out))
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(
            f"{scheme} quantization failed: {one_line(exc, 240)}",
            "another --quantize scheme, or export the float32 file (no --quantize)",
        ) from None


def _fp16(proto: Any) -> Any:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(proto, keep_io_types=True)


def _static(proto: Any, out: Path, calibration: Any, static_batch: int | None) -> None:
    from onnxruntime.quantization import QuantFormat, quantize_static

    if calibration is None or not len(calibration):
        raise ExportError("int8-static needs calibration rows", "--calibration-rows 256")
    name = proto.graph.input[0].name
    quantize_static(
        proto,
        out,
        _reader(name, calibration, static_batch or CALIBRATION_BATCH, static_batch is not None),
        quant_format=QuantFormat.QDQ,
        per_channel=True,  # one scale per output channel: conv filters differ widely
    )


def _reader(name: str, rows: np.ndarray, batch: int, exact: bool) -> Any:
    """Calibration batches for ``quantize_static`` (a ``CalibrationDataReader``).

    A static-batch model (``exact``) is fed exactly its batch: the last one is
    filled up by cycling through the rows again.
    """
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader

    batches = []
    for i in range(0, len(rows), batch):
        xb = rows[i : i + batch]
        if exact and len(xb) < batch:
            xb = rows[np.arange(i, i + batch) % len(rows)]
        batches.append({name: np.ascontiguousarray(xb, dtype=np.float32)})

    class Rows(CalibrationDataReader):
        def __init__(self) -> None:
            self.position = 0

        def get_next(self) -> dict[str, Any] | None:
            if self.position >= len(batches):
                return None
            self.position += 1
            return batches[self.position - 1]

        def rewind(self) -> None:
            self.position = 0

    return Rows()


def calibration_sha256(rows: np.ndarray) -> str:
    """The sha256 of calibration rows as the model sees them: float32, C order."""
    import numpy as np

    from toolkit.runs import sha256_bytes

    return sha256_bytes(np.ascontiguousarray(rows, dtype=np.float32).tobytes())
