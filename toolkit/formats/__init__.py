"""Exported file formats as objects: one :class:`ExportFormat` per format.

A format knows its name and file suffix, how to recognise its bytes, how to export
a model, how to read the metadata tk embeds, and how to load a file in its runtime
(a :class:`Runner`). Export, verify, predict, bench and the trust gate dispatch
through these objects, never on a format's name. Formats are registered by plugins
(``tk_register_formats``), tk's own three too (:mod:`toolkit.formats.builtin`):

- ONNX (:mod:`toolkit.formats.onnx`): metadata as ``metadata_props`` entries
  ``tk.<key>``, each value JSON-encoded, so other tools (Netron, onnxruntime's
  ``custom_metadata_map``) show every field on its own;
- TorchScript and pt2 (:mod:`~toolkit.formats.torchscript`, :mod:`~toolkit.formats.pt2`):
  one JSON document stored as an extra file of their zip archive
  (``<archive>/extra/tk_metadata.json``). Loading them runs code, so they pass
  ``--trust`` or tk's record of what it exported (toolkit/trust.py) first.

This module holds what every format shares; it imports nothing heavy.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from toolkit.errors import ExportError, one_line

if TYPE_CHECKING:
    import numpy as np

# tk's own formats, in the order ``--format all`` exports them.
FORMATS = ("onnx", "torchscript", "pt2")
FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "pt2": "model.pt2"}
META_FILE = "tk_metadata.json"
ZIP_MAGIC = b"PK\x03\x04"
ZIP_END = b"PK\x05\x06"  # the end-of-central-directory record's signature
ZIP_TAIL = (1 << 16) + 22  # the furthest from the end that record can start
HEAD_BYTES = 4096  # what a format's detect() sees of a file's start
# tk's metadata is a few kB; a larger member is refused unread (a zip bomb).
MAX_META_BYTES = 1 << 20
ONNX_PREFIX = "tk."
# ONNX files made smaller from the verified fp32 one (``tk export --quantize``):
# int8 weights quantized at load time, int8 weights and activations calibrated on
# training rows, or float16 weights and compute (inputs and outputs stay float32).
QUANTIZE_SCHEMES = ("int8-dynamic", "int8-static", "fp16")


@dataclass
class Runner:
    """An exported file loaded in its runtime: ``run(x) -> list of numpy outputs``."""

    name: str
    run: Callable[[np.ndarray], list[np.ndarray]]


@dataclass(frozen=True)
class Probe:
    """What a format's :meth:`ExportFormat.detect` sees: the file's first bytes, and
    the member names when the file is a zip archive (None otherwise)."""

    head: bytes
    zip_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ExportRequest:
    """Everything an exporter gets: a fresh ``eval()`` copy of the model and how to label it.

    :param meta: ``meta(exporter, opset=None)`` -> the metadata to embed.
    :param source: ``source(name)`` -> the verified bytes of another format of the
        same export (OpenVINO converts the verified ONNX graph: ``source("onnx")``).
    """

    model: Any
    example: Any
    meta: Callable[..., dict[str, Any]]
    opset: int | None
    dynamic: bool
    input_name: str
    output_name: str | None
    echo_err: Callable[[str], None]
    source: Callable[[str], bytes]


@dataclass(frozen=True)
class Exported:
    """An exporter's result: the file's bytes, the files beside it (by suffix,
    e.g. OpenVINO's ``{".bin": weights}``), the exporter's name and the opset."""

    data: bytes
    exporter: str
    opset: int | None = None
    extra: Mapping[str, bytes] = field(default_factory=dict)


class ExportFormat:
    """One exported file format. Subclass it and register an instance
    (``tk_register_formats``); import heavy libraries inside the methods only.

    :cvar name: ``--format NAME``; ``aliases``: other names it answers to.
    :cvar suffix: the file's suffix; ``file_name``: its default name in a run.
    :cvar companions: suffixes of files written beside it (OpenVINO's ``.bin``).
    :cvar can_carry_code: loading it can run code: only files this tk installation
        exported, or ``--trust``, are loaded (toolkit/trust.py).
    :cvar in_all: exported by ``--format all``.
    :cvar fallback: takes the files no other format recognises (ONNX: onnxruntime
        then refuses anything that is not a model, and runs no code).
    :cvar platform: what an inference server reports for it (KServe v2 / Triton's
        ``platform``); empty: the format's name.
    """

    name: str = ""
    title: str = ""
    suffix: str = ""
    file_name: str = ""
    aliases: tuple[str, ...] = ()
    companions: tuple[str, ...] = ()
    can_carry_code: bool = False
    in_all: bool = False
    fallback: bool = False
    platform: str = ""
    description: str = ""

    def detect(self, probe: Probe) -> bool:
        """True when these bytes are a file of this format (never the file's name)."""
        return False

    def export(self, request: ExportRequest) -> Exported:
        """The exported file's bytes, with ``request.meta(...)`` embedded."""
        raise NotImplementedError

    def read_metadata(self, source: str | Path | bytes) -> dict[str, Any]:
        """tk's metadata embedded in the file (``{}`` if none); no model code runs."""
        raise NotImplementedError

    def check(self, path: Path) -> None:
        """Refuse a file on disk that would make the runtime reach outside it (before loading)."""

    def load(self, cleared: Any, *, cuda: bool = True, threads: int | None = None) -> list[Runner]:
        """The runtime(s) that serve a file the gate let through (``toolkit.trust.Cleared``:
        ``source`` a path, or bytes, ``extra`` its companions' bytes when in memory)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<ExportFormat {self.name}>"


class ZipArchiveFormat(ExportFormat):
    """A torch archive (TorchScript, pt2): a zip whose ``extra/tk_metadata.json`` holds
    tk's metadata, and whose loading runs code."""

    can_carry_code = True
    in_all = True

    def read_metadata(self, source: str | Path | bytes) -> dict[str, Any]:
        """The archive's ``extra/tk_metadata.json``."""
        return zip_metadata(source)


def size_text(n: int) -> str:
    """A file size as ``8.1 kB`` or ``42.7 MB`` (export lines, ``tk bench``)."""
    return f"{n / 1024:.1f} kB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MB"


def export_file_name(fmt: ExportFormat, quantize: str | None = None, optimize: bool = False) -> str:
    """The default file name of an export: ``model.onnx``, ``model.opt.int8-static.onnx``..."""
    name = fmt.file_name or f"model{fmt.suffix}"
    if not (quantize or optimize):
        return name
    tags = ([".opt"] if optimize else []) + ([f".{quantize}"] if quantize else [])
    return name.removesuffix(fmt.suffix) + "".join(tags) + fmt.suffix


def quantization(meta: dict[str, Any]) -> str | None:
    """The quantization scheme an exported file carries (None for a float32 file)."""
    q = meta.get("quantization")
    return q.get("scheme") if isinstance(q, dict) else None


def static_batch(meta: dict[str, Any]) -> int | None:
    """The batch size a file was exported for, or None for a dynamic batch."""
    first = (meta.get("input") or {}).get("shape", ["batch"])[0]
    return int(first) if isinstance(first, int) else None


def probe(data: bytes | str | Path | BinaryIO, *, name: str | None = None) -> Probe:
    """The first bytes of a file (path, bytes or an open file, left at its start), and
    its member names when it is a zip archive: the magic at its start, or an
    end-of-archive record where a zip reader would find one. Raises ExportError
    (exit 3) for a damaged zip archive (``name``: the file, for the message)."""
    source: Any = io.BytesIO(data) if isinstance(data, bytes) else data
    if hasattr(source, "read"):
        return _probe(source, name or "an in-memory export")
    with open(source, "rb") as fh:
        return _probe(fh, name or str(data))


def _probe(fh: Any, name: str) -> Probe:
    fh.seek(0)
    head = fh.read(HEAD_BYTES)
    if not _zipped(fh, head):
        fh.seek(0)
        return Probe(head)
    try:
        with zipfile.ZipFile(fh) as zf:
            names = tuple(zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ExportError(
            f"cannot read {name}: a damaged zip archive ({one_line(exc, 120)})",
            "re-export it with tk export",
        ) from None
    finally:
        fh.seek(0)
    return Probe(head, names)


def _zipped(fh: Any, head: bytes) -> bool:
    """A zip archive: the magic at the start, or an end record where zip readers look."""
    if head[:4] == ZIP_MAGIC:
        return True
    # The end record sits in the last 64 kB + 22 bytes; most files lack its signature,
    # which settles it without zipfile's slower search.
    end = fh.seek(0, os.SEEK_END)
    fh.seek(max(0, end - ZIP_TAIL))
    found = ZIP_END in fh.read()
    zipped = found and zipfile.is_zipfile(fh)
    fh.seek(0)
    return zipped


def detect(formats: Sequence[ExportFormat], seen: Probe, name: str) -> ExportFormat:
    """The format of a file from its :func:`probe`: the first of ``formats`` (tk's own
    come first) whose ``detect`` claims it, else the fallback (ONNX). Raises
    ExportError when no installed format takes it (``name``: the file)."""
    for fmt in formats:
        if fmt.detect(seen):
            return fmt
    fallback = next((f for f in formats if f.fallback), None)
    if fallback is None or seen.zip_names is not None:
        raise ExportError(
            f"cannot read {name}: no installed export format recognises it",
            "tk list formats",
        )
    return fallback


def is_pt2_archive(probe: Probe) -> bool:
    """A zip archive with ``archive_format`` right under its top directory (torch.export)."""
    # torch's archive reader drops the first directory; TorchScript code may well
    # live under ``code/.../models/``, so only that level counts.
    return any(n.split("/", 1)[-1] == "archive_format" for n in probe.zip_names or ())


def zip_metadata(source: str | Path | bytes) -> dict[str, Any]:
    """The JSON document ``<archive>/extra/tk_metadata.json`` of a zip archive ({} if none)."""
    src: Any = io.BytesIO(source) if isinstance(source, bytes) else source
    with zipfile.ZipFile(src) as zf:
        info = next((i for i in zf.infolist() if i.filename.endswith(f"/extra/{META_FILE}")), None)
        if info is None:
            return {}
        # The declared size first, then a bounded read: a member that inflates
        # beyond its header's claim is cut off, never held whole in memory.
        if info.file_size > MAX_META_BYTES:
            raise ValueError(f"{info.filename} is {info.file_size} bytes (tk's is a few kB)")
        with zf.open(info) as fh:
            raw = fh.read(MAX_META_BYTES + 1)
        if len(raw) > MAX_META_BYTES:
            raise ValueError(f"{info.filename} inflates beyond {MAX_META_BYTES} bytes")
        meta = json.loads(raw)
    if not isinstance(meta, dict):
        raise ValueError(f"{META_FILE} holds a {type(meta).__name__}, not an object")
    return meta


def onnx_proto_metadata(proto: Any, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """tk's ``tk.*`` metadata_props of an already-parsed ONNX ModelProto (only ``keys``)."""
    n = len(ONNX_PREFIX)
    return {
        p.key[n:]: json.loads(p.value)
        for p in proto.metadata_props
        if p.key.startswith(ONNX_PREFIX) and (keys is None or p.key[n:] in keys)
    }
