"""Reading what ``tk predict`` needs from an ONNX file without parsing its weights.

``onnx.load`` copies every tensor into Python objects: ~3 ms for a 2.6 MB MLP, more
than onnxruntime takes to run it. ``tk predict`` needs only the ``tk.*`` metadata
and whether any tensor keeps its data in another file, so this walks the protobuf
wire format directly and skips every tensor's bytes by their length prefix.

Field numbers are ONNX's (onnx/onnx.proto): ModelProto graph = 7, metadata_props
= 14, functions = 25; GraphProto node = 1, initializer = 5, sparse_initializer =
15; NodeProto attribute = 5; FunctionProto node = 7; AttributeProto t = 5, g = 6,
tensors = 10, graphs = 11, sparse_tensor = 22, sparse_tensors = 23;
SparseTensorProto values = 1, indices = 2; TensorProto external_data = 13,
data_location = 14 (1 = EXTERNAL); StringStringEntryProto key = 1, value = 2.
A malformed buffer raises ValueError.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

VARINT, I64, LEN, I32 = 0, 1, 2, 5
EXTERNAL = 1


def _varint(buf: Any, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 0x80:  # one byte: every tag and most lengths
        return b, pos + 1
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def fields(buf: Any, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` of one message; LEN values are (start, end)."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = _varint(buf, pos)
        elif wire == LEN:
            n, pos = _varint(buf, pos)
            value = (pos, pos + n)
            pos += n
        elif wire in (I64, I32):
            value = None
            pos += 8 if wire == I64 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("truncated message")
        yield number, wire, value


def _sub(buf: Any, span: tuple[int, int], number: int) -> Iterator[tuple[int, int]]:
    """The spans of the length-delimited field ``number`` inside the message at ``span``."""
    for n, wire, value in fields(buf, *span):
        if n == number and wire == LEN:
            yield value


def metadata(buf: Any, prefix: str, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """The JSON-decoded ``metadata_props`` whose key starts with ``prefix`` (only ``keys``)."""
    out = {}
    for entry in _sub(buf, (0, len(buf)), 14):
        key = value = ""
        for n, wire, v in fields(buf, *entry):
            if wire == LEN and n in (1, 2):
                text = bytes(buf[v[0] : v[1]]).decode("utf-8")
                key, value = (text, value) if n == 1 else (key, text)
        name = key[len(prefix) :]
        if key.startswith(prefix) and (keys is None or name in keys):
            out[name] = json.loads(value)
    return out


def _external(buf: Any, tensor: tuple[int, int]) -> bool:
    for n, wire, v in fields(buf, *tensor):
        if (n == 14 and wire == VARINT and v == EXTERNAL) or (n == 13 and wire == LEN):
            return True
    return False


def has_external_data(buf: Any) -> bool:
    """True when any tensor keeps its data elsewhere: the tensors
    ``toolkit.integrity.check_onnx_external_data`` checks (initializers, sparse ones,
    node attributes, subgraphs, functions)."""
    whole = (0, len(buf))
    if any(_graph_external(buf, g) for g in _sub(buf, whole, 7)):
        return True
    return any(_node_external(buf, node) for f in _sub(buf, whole, 25) for node in _sub(buf, f, 7))


def _graph_external(buf: Any, graph: tuple[int, int]) -> bool:
    for n, wire, v in fields(buf, *graph):
        if wire != LEN:
            continue
        if (n == 5 and _external(buf, v)) or (n == 15 and _sparse_external(buf, v)):
            return True
        if n == 1 and _node_external(buf, v):
            return True
    return False


def _node_external(buf: Any, node: tuple[int, int]) -> bool:
    for attr in _sub(buf, node, 5):
        for m, w, t in fields(buf, *attr):
            if w != LEN:
                continue
            if m in (5, 10) and _external(buf, t):  # t, tensors
                return True
            if m in (22, 23) and _sparse_external(buf, t):  # sparse_tensor(s)
                return True
            if m in (6, 11) and _graph_external(buf, t):  # g, graphs: If/Loop bodies
                return True
    return False


def _sparse_external(buf: Any, sparse: tuple[int, int]) -> bool:
    return any(_external(buf, t) for n in (1, 2) for t in _sub(buf, sparse, n))
