"""The Open Inference Protocol (KServe v2 REST) as ``tk serve`` speaks it: an infer
request's tensor checked against the model (name, datatype, shape, finite values),
and the response, in JSON or in Triton's binary tensor extension (what
``tritonclient`` sends by default: the JSON header's length in
``Inference-Header-Content-Length``, each tensor's raw little-endian bytes after it,
``binary_data_size`` in its parameters)."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from toolkit.serve.model import NUMPY_TO_V2, V2_TYPES
from toolkit.serve.wire import HTTPError

if TYPE_CHECKING:
    import numpy as np
    from starlette.requests import Request
    from starlette.responses import Response

    from toolkit.serve.model import ServedModel

HEADER_LENGTH = "inference-header-content-length"


def split_binary(request: Request, body: bytes) -> tuple[bytes, bytes]:
    """(JSON header, binary tensor data) of a request in Triton's binary extension."""
    declared = request.headers.get(HEADER_LENGTH)
    if declared is None:
        return body, b""
    if not declared.isdigit() or int(declared) > len(body):
        raise HTTPError(400, f"{HEADER_LENGTH} {declared!r} does not fit a {len(body)}-byte body")
    n = int(declared)
    return body[:n], body[n:]


def infer_input(payload: Any, binary: bytes, model: ServedModel) -> np.ndarray:
    """The model's input tensor from a v2 infer request (JSON data or binary), checked."""
    import numpy as np

    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise HTTPError(
            400, 'a v2 infer request is {"inputs": [{"name", "shape", "datatype", "data"}]}'
        )
    tensors = payload["inputs"]
    names = [t.get("name") if isinstance(t, dict) else None for t in tensors]
    unknown = [n for n in names if n != model.input_name]
    if unknown:
        raise HTTPError(
            400, f"unknown input {unknown[0]!r}: model {model.name} takes {model.input_name!r}"
        )
    if len(tensors) != 1:
        raise HTTPError(400, f"input {model.input_name!r} given {len(tensors)} times")
    t = tensors[0]
    shape, datatype = t.get("shape"), t.get("datatype")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise HTTPError(
            400, f"input {model.input_name!r}: shape must be a list of sizes, got {shape!r}"
        )
    want_type = NUMPY_TO_V2.get(model.input_dtype, "FP32")
    if datatype != want_type:
        raise HTTPError(
            400, f"input {model.input_name!r}: datatype {datatype!r}, the model takes {want_type}"
        )
    sample = model.sample_shape
    if len(shape) != len(sample) + 1 or shape[1:] != sample or shape[0] == 0:
        want = "x".join(["N", *map(str, sample)])
        raise HTTPError(400, f"input {model.input_name!r}: shape {shape}, the model takes {want}")
    return _tensor_data(t, shape, np.dtype(V2_TYPES[datatype]), binary, model)


def _tensor_data(
    t: dict[str, Any], shape: list[int], dtype: Any, binary: bytes, model: ServedModel
) -> np.ndarray:
    """The tensor's values (JSON ``data`` or its binary bytes) as ``shape``, checked."""
    import numpy as np

    datatype = t.get("datatype")
    count = math.prod(shape)
    params = t.get("parameters") or {}
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if not isinstance(size, int) or size != count * dtype.itemsize or size > len(binary):
            raise HTTPError(
                400,
                f"input {model.input_name!r}: binary_data_size {size!r} does not hold {shape}",
            )
        x = np.frombuffer(binary[:size], dtype=dtype.newbyteorder("<")).astype(dtype)
    else:
        data = t.get("data")
        if data is None:
            raise HTTPError(400, f"input {model.input_name!r}: no data")
        try:
            x = np.asarray(data, dtype=dtype)
        except (TypeError, ValueError, OverflowError):
            raise HTTPError(
                400, f"input {model.input_name!r}: data is not all {datatype} numbers"
            ) from None
        if x.size != count:
            raise HTTPError(
                400, f"input {model.input_name!r}: {x.size} values for shape {shape} ({count})"
            )
    x = x.reshape(shape)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise HTTPError(400, f"input {model.input_name!r}: values must be finite")
    return np.ascontiguousarray(x)


def infer_response(payload: dict[str, Any], ys: list[np.ndarray], model: ServedModel) -> Response:
    """The v2 infer response: JSON data, or binary where the request asked for it."""
    import numpy as np
    from starlette.responses import JSONResponse, Response

    names = [model.output_name] + [f"output_{i}" for i in range(1, len(ys))]
    requested = payload.get("outputs")
    wanted: dict[str, dict[str, Any]] = {}
    if isinstance(requested, list) and requested:
        for r in requested:
            name = r.get("name") if isinstance(r, dict) else None
            if name not in names:
                raise HTTPError(400, f"unknown output {name!r}: model {model.name} gives {names}")
            wanted[name] = r.get("parameters") or {}
    else:
        binary_default = bool((payload.get("parameters") or {}).get("binary_data_output"))
        wanted = {n: {"binary_data": binary_default} for n in names}
    outputs, blobs = [], []
    for name, y in zip(names, ys, strict=True):
        if name not in wanted:
            continue
        y = np.ascontiguousarray(y)
        entry: dict[str, Any] = {
            "name": name,
            "datatype": NUMPY_TO_V2.get(str(y.dtype), "FP32"),
            "shape": list(y.shape),
        }
        if wanted[name].get("binary_data"):
            raw = y.astype(y.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = y.reshape(-1).tolist()
        outputs.append(entry)
    body: dict[str, Any] = {"model_name": model.name, "model_version": "1", "outputs": outputs}
    if "id" in payload:
        body["id"] = payload["id"]
    if not blobs:
        return JSONResponse(body)
    header = json.dumps(body).encode()
    return Response(
        header + b"".join(blobs),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
