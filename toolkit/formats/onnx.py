"""ONNX: the dynamo exporter, else the TorchScript-based one; weights embedded in one file.

Both exporters' graphs pass ``onnx.checker.check_model(full_check=True)`` and, for
a dynamic export, must keep the batch dimension symbolic: a fixed batch the user
did not ask for is a failed export, never a file that works only at one size.
Loaded in onnxruntime, which runs no code; a file's external data must stay in its
directory (:func:`check_external_data`). :data:`ONNX` is the format object.
"""

from __future__ import annotations

import io
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import ExportError, IntegrityError, one_line
from toolkit.formats import (
    ONNX_PREFIX,
    Exported,
    ExportFormat,
    ExportRequest,
    Probe,
    Runner,
    onnx_proto_metadata,
)
from toolkit.formats.exporting import dynamic_shapes, note, refuse_tracer_warnings, stderr_line
from toolkit.formats.runtime import onnx_runners, quiet_native

if TYPE_CHECKING:
    import torch

DYNAMO = "torch.onnx.export(dynamo=True)"
LEGACY = "torch.onnx.export(dynamo=False)"


def export_onnx(
    model: torch.nn.Module,
    example: torch.Tensor,
    meta: Callable[[str, int | None], dict[str, Any]],
    *,
    opset: int | None,
    dynamic: bool,
    input_name: str,
    output_name: str | None,
    echo_err: Callable[[str], None] = stderr_line,
) -> tuple[bytes, str, int | None]:
    """ONNX bytes with the weights embedded: the dynamo exporter, else the TorchScript one.

    ``meta(exporter, opset)`` gives the metadata to embed. The graph is checked with
    ``onnx.checker.check_model(full_check=True)``. Returns (bytes, exporter, opset).
    """
    args = (model, example, opset, dynamic, input_name, output_name)
    try:
        proto, exporter = _onnx_dynamo(*args), DYNAMO
    except Exception as first:
        reason = _dynamo_reason(first)
        note(
            f"the dynamo ONNX exporter failed ({reason}); "
            "retrying with the TorchScript-based exporter",
            echo_err,
        )
        try:
            proto, exporter = _onnx_legacy(*args), LEGACY
        except Exception as second:
            raise _both_failed(first, second, reason, opset) from None
    version = opset_of(proto)
    return with_metadata(proto, meta(exporter, version)), exporter, version


def opset_of(proto: Any) -> int | None:
    """The default-domain opset an ONNX model imports."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def with_metadata(proto: Any, meta: dict[str, Any]) -> bytes:
    """The model's bytes carrying ``meta`` as ``tk.*`` metadata_props (old ones replaced)."""
    kept = [p for p in proto.metadata_props if not p.key.startswith(ONNX_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = ONNX_PREFIX + key, json.dumps(value)
    try:
        return proto.SerializeToString()
    except ValueError as exc:  # protobuf's 2 GB limit
        raise ExportError(
            f"model too large for a single-file ONNX ({one_line(exc, 120)})", "--format pt2"
        ) from None


def _both_failed(
    first: BaseException, second: BaseException, reason: str, opset: int | None
) -> ExportError:
    """The error naming the operator (when a message names one) and both reasons."""
    ops = _operators(one_line(second, 2000), one_line(first, 4000))
    used = opset or _default_opset()
    what = f"operator {' / '.join(ops[:2])}" if ops else "the model"
    return ExportError(
        f"cannot export {what} to ONNX opset {used} with either exporter "
        f"(dynamo: {reason}; TorchScript-based: {one_line(second, 200)})",
        "--format pt2 or torchscript, another --opset, or replace the operator"
        if ops
        else "--format torchscript or pt2, or change forward() as the reasons say",
    )


def _operators(*messages: str) -> list[str]:
    found: list[str] = []
    for msg in messages:
        for op in re.findall(r"\b(?:aten|prims)(?:::|\.)[A-Za-z0-9_]+", msg):
            if op not in found and op not in ("aten.default", "prims.default"):
                found.append(op)
    return found


def _dynamo_reason(exc: BaseException) -> str:
    """The root cause from the dynamo exporter's long report (its "Exception summary")."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if "## Exception summary" in text:
        summary = text.split("## Exception summary", 1)[1]
        summary = summary.split("(Refer to the full stack trace", 1)[0].split("⬆️", 1)[0]
        summary = re.sub(r"<class '(?:[\w]+\.)*(\w+)'>", r"\1", summary)
        summary = " ".join(summary.split())
        if summary:
            return summary if len(summary) <= 200 else summary[:197] + "..."
    return one_line(exc, 200)


def _default_opset() -> int:
    try:
        from torch.onnx._constants import ONNX_DEFAULT_OPSET

        return int(ONNX_DEFAULT_OPSET)
    except Exception:  # a private constant: never let it break an error message
        return 0


def _check_onnx(proto: Any, dynamic: bool) -> None:
    import onnx

    onnx.checker.check_model(proto, full_check=True)
    if dynamic:
        dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
        if dim.HasField("dim_value"):
            # The dynamo exporter falls back to specialising silently; a fixed batch
            # the user did not ask for is a failed export, not a working file.
            raise ExportError(
                f"the exported graph has a fixed batch of {dim.dim_value}: the model turns "
                "the batch size into a constant (e.g. int(x.shape[0]))"
            )


def _onnx_dynamo(
    model: Any, example: Any, opset: int | None, dynamic: bool, input_name: str, out: str | None
) -> Any:
    import torch

    with quiet_native(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=opset,
            dynamic_shapes=dynamic_shapes(model, example) if dynamic else None,
            input_names=[input_name],
            output_names=[out] if out else None,
            verbose=False,
        )
        # model_proto carries the initializers inline: the file written later is one
        # self-contained .onnx (program.save() would split out a .onnx.data file).
        proto = program.model_proto
    _check_onnx(proto, dynamic)
    return proto


def _onnx_legacy(
    model: Any, example: Any, opset: int | None, dynamic: bool, input_name: str, out: str | None
) -> Any:
    import onnx
    import torch

    buf = io.BytesIO()
    out_name = out or "output"
    with quiet_native(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.onnx.export(
            model,
            (example,),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=[input_name],
            output_names=[out_name],
            dynamic_axes={input_name: {0: "batch"}, out_name: {0: "batch"}} if dynamic else None,
        )
    refuse_tracer_warnings(caught)
    proto = onnx.load_from_string(buf.getvalue())
    _check_onnx(proto, dynamic)
    return proto


def read_onnx_metadata(source: str | Path | bytes) -> dict[str, Any]:
    """tk's ``tk.*`` metadata of an ONNX file or its bytes (external data not read)."""
    import onnx

    if isinstance(source, bytes):
        proto = onnx.load_from_string(source)
    else:
        # format= explicitly: onnx guesses from the suffix (.json, .txt) otherwise.
        proto = onnx.load(str(source), format="protobuf", load_external_data=False)
    return onnx_proto_metadata(proto)


def check_external_data(path: str | Path) -> None:
    """Refuse ONNX files whose external data would be read from outside their directory.

    ``../`` segments, absolute paths and symlinks leaving the directory would let a
    model file make onnxruntime read arbitrary files on this machine. Every tensor
    counts: initializers, sparse ones, node attributes, and those of subgraphs
    (``If``/``Loop`` bodies) and functions. The directory is the one the path names
    (where onnxruntime looks), even when the model file itself is a symlink.
    """
    import onnx

    path = Path(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ExportError(
            f"cannot read {path} as onnx: {one_line(exc, 200)}", "re-export it with tk export"
        ) from None
    base = Path(os.path.abspath(path)).parent
    real = base.resolve()
    for tensor in onnx_tensors(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (base / location).resolve()
        if (
            not location
            or Path(location).is_absolute()
            or ".." in Path(location).parts
            or (target != real and real not in target.parents)
        ):
            raise IntegrityError(
                f"refusing {path}: tensor '{tensor.name}' reads external data from "
                f"{location!r}, outside the model's directory",
                "re-export it with tk export (weights embedded in one file)",
            )


def onnx_tensors(proto: Any) -> Iterator[Any]:
    """Every TensorProto of an ONNX model: initializers (sparse ones too), node
    attributes, and those inside subgraphs and functions."""
    yield from _graph_tensors(proto.graph)
    for function in proto.functions:
        for node in function.node:
            yield from _node_tensors(node)


def _graph_tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: Any) -> Iterator[Any]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        sparse = [attr.sparse_tensor] if attr.HasField("sparse_tensor") else []
        for s in [*sparse, *attr.sparse_tensors]:
            yield from (s.values, s.indices)
        for g in [attr.g] if attr.HasField("g") else []:
            yield from _graph_tensors(g)
        for g in attr.graphs:
            yield from _graph_tensors(g)


class OnnxFormat(ExportFormat):
    """ONNX: what starts like a ModelProto, and the fallback for bytes no other format
    claims (onnxruntime runs no code and refuses anything that is not a model)."""

    name = "onnx"
    platform = "onnxruntime_onnx"
    title = "ONNX"
    suffix = ".onnx"
    file_name = "model.onnx"
    in_all = True
    fallback = True
    description = "ONNX graph, weights embedded; onnxruntime (CPU, and CUDA when present)"

    def detect(self, probe: Probe) -> bool:
        """A ModelProto's first field, ``ir_version`` (field 1, a varint: byte 0x08), so a
        plugin's format never takes an ONNX file; ONNX also takes what nobody claims."""
        return probe.zip_names is None and probe.head[:1] == b"\x08"

    def export(self, request: ExportRequest) -> Exported:
        """The dynamo exporter, else the TorchScript-based one (:func:`export_onnx`)."""
        data, exporter, opset = export_onnx(
            request.model,
            request.example,
            request.meta,
            opset=request.opset,
            dynamic=request.dynamic,
            input_name=request.input_name,
            output_name=request.output_name,
            echo_err=request.echo_err,
        )
        return Exported(data, exporter, opset)

    def read_metadata(self, source: str | Path | bytes) -> dict[str, Any]:
        """The ``tk.*`` metadata_props."""
        return read_onnx_metadata(source)

    def check(self, path: Path) -> None:
        """External data stays beside the file (:func:`check_external_data`)."""
        check_external_data(path)

    def load(self, cleared: Any, *, cuda: bool = True, threads: int | None = None) -> list[Runner]:
        """onnxruntime on CPU, and on CUDA when that provider is present and ``cuda``."""
        return onnx_runners(cleared.source, cuda, threads)


ONNX = OnnxFormat()
