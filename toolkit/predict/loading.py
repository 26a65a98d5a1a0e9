"""Opening what ``tk predict`` runs: an exported file, or a run's eager model.

Every file passes the same gate as ``tk verify`` (the run manifest's sha256, ONNX
external data kept beside the file, ``--trust`` for a TorchScript or pt2 file this tk
installation did not export: ``toolkit.trust.clear``); the format is decided from the
bytes through the installed formats. ONNX files, which run no
code and are served at runtime speed, are read once: the same bytes give the
metadata (one protobuf parse), the onnxruntime session and the sha256 check. The
hash of a large file runs in a thread while onnxruntime loads and runs it
(hashlib releases the GIL), and :meth:`Opened.settle` waits for it: ``predict``
settles before it returns anything, and before reporting any other error, so a
file that does not match its manifest is still refused, never used.
"""

from __future__ import annotations

import json
import mmap
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import integrity, runs, trust
from toolkit.errors import ExportError, UsageError, one_line
from toolkit.formats import ONNX_PREFIX, onnx_proto_metadata
from toolkit.formats.onnx import ONNX, check_external_data, onnx_tensors
from toolkit.predict import onnxwire

if TYPE_CHECKING:
    from toolkit.formats import Runner
    from toolkit.registry import Registry

THREAD_BYTES = 1 << 20  # hash smaller files at once: a thread costs more than the hash
SMALL_JOB_FLOPS = 4e6
# The metadata predict reads (the rest of an export's provenance is not decoded here).
PREDICT_KEYS = (
    "format", "task", "input", "inputs", "output", "class_names", "feature_scale", "run",
)  # fmt: skip


@dataclass
class Opened:
    """A prediction target, opened: its metadata, and how to start its runtime."""

    meta: dict[str, Any]
    source: str
    load: Callable[..., Runner]  # load(rows=0): rows it will run, to size the runtime
    checks: list[Callable[[], None]] = field(default_factory=list)

    def settle(self) -> None:
        """Wait for the integrity check still running; raise IntegrityError if it failed."""
        while self.checks:
            self.checks.pop()()


def open_target(
    target: str | Path, runs_dir: str | Path, registry: Registry | None, allow: bool = False
) -> Opened:
    """An exported file (ONNX on the fast path) or a run directory / ``latest``."""
    p = runs.guard_path(target, runs_dir)  # runs/latest/model.onnx stays in the runs root
    try:
        # Unbuffered: the file is read in one call; no system call spent on isfile().
        fh = open(p, "rb", buffering=0)  # noqa: SIM115  (closed by the with below)
    except (IsADirectoryError, FileNotFoundError, NotADirectoryError):
        return _open_run(target, runs_dir, registry)
    with fh:
        # The one decision from the bytes: ONNX is read once here; every other
        # format goes through the gate (TorchScript and pt2 run code).
        if trust.format_of(fh, name=str(p)) is not ONNX:
            return _open_file(p, allow)
        return _open_onnx(p, fh)


def _no_metadata(p: Path) -> UsageError:
    return UsageError(
        f"{p} carries no tk metadata (input spec, output meaning)", "export it with tk export"
    )


def _open_file(p: Path, allow: bool) -> Opened:
    """Any format but ONNX: through the gate, metadata now, the runtime once the input is read."""
    cleared = trust.clear(p, trust=allow)
    meta = cleared.metadata()
    if not meta:
        raise _no_metadata(p)
    return Opened(meta, str(p), lambda rows=0: cleared.runners(cuda=False)[0])


def _open_onnx(p: Path, fh: Any) -> Opened:
    """An ONNX file read once (mapped when large): metadata, external-data check, sha256.

    The metadata and the external-data check come from the wire format
    (:mod:`toolkit.predict.onnxwire`): no tensor is copied. onnxruntime then loads the
    file itself, as a plain ``InferenceSession(path)`` does.
    """
    size = os.fstat(fh.fileno()).st_size
    data: Any = (
        mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size >= THREAD_BYTES else fh.read()
    )
    checks, vouched = _hash_check(p, data)
    try:
        meta, external = _scan(data, vouched)
    except Exception as exc:
        for check in checks:  # a corrupt file is an integrity failure first
            check()
        raise ExportError(
            f"cannot read {p} as onnx: {one_line(exc, 200)}", "re-export it with tk export"
        ) from None
    finally:
        if not checks and isinstance(data, mmap.mmap):
            data.close()
    if not meta:
        for check in checks:
            check()
        raise _no_metadata(p)
    meta.setdefault("format", ONNX.name)
    if external:
        # Only a file tk did not write has any: the full gate before onnxruntime reads it.
        for check in checks:
            check()
        check_external_data(p)
        checks = []
    return Opened(meta, str(p), lambda rows=0: _session(str(p), _threads(size, rows)), checks)


def _scan(data: Any, vouched: bool) -> tuple[dict[str, Any], bool]:
    """(predict's metadata, whether any tensor has external data) of an ONNX buffer.

    A small file is parsed with onnx (fastest below a megabyte); a large one is
    walked on the wire, its tensors skipped rather than copied. ``vouched``: the
    bytes already matched a tk manifest, and tk writes every tensor inline.
    """
    if isinstance(data, mmap.mmap):
        return onnxwire.metadata(data, ONNX_PREFIX, PREDICT_KEYS), onnxwire.has_external_data(data)
    import onnx

    proto = onnx.load_from_string(data)
    if vouched:
        return onnx_proto_metadata(proto, PREDICT_KEYS), False
    tensors = onnx_tensors(proto)
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors)
    return onnx_proto_metadata(proto, PREDICT_KEYS), external


def _hash_check(p: Path, data: Any) -> tuple[list[Callable[[], None]], bool]:
    """The manifest comparison of ``data``: done now (small), or started in a thread.

    Returns (the checks still to wait for, whether the bytes already matched). A
    large file's buffer (a read-only map) is closed once its hash is known.
    """
    found = _manifest_entry(p)
    if found is None:
        return [], False
    run_dir, expected = found
    result: list[str] = []

    def compare() -> None:
        if thread is not None:
            thread.join()
            data.close()
        actual = result[0] if result else runs.sha256_bytes(data)
        if actual != expected:
            raise integrity.IntegrityError(
                f"{p} does not match its sha256 in {run_dir / integrity.MANIFEST} "
                "(corrupt or modified); refusing to load it"
            )

    thread = None
    if isinstance(data, mmap.mmap):
        # hashlib releases the GIL: the hash runs while onnxruntime loads and runs the file.
        thread = threading.Thread(target=lambda: result.append(runs.sha256_bytes(data)))
        thread.daemon = True
        thread.start()
        return [compare], False
    compare()
    return [], True


def _manifest_entry(p: Path) -> tuple[Path, str] | None:
    """(run directory, recorded sha256) of the manifest listing ``p`` (each read once).

    The same search as ``integrity.find_manifest`` (the file's directory and two
    above, symlinks resolved), trying the path as given first: that costs no
    system call per path component.
    """
    absolute = os.path.abspath(p)
    found = _search(absolute)
    real = os.path.realpath(absolute) if found is None else absolute
    return _search(real) if found is None and real != absolute else found


def _search(path: str) -> tuple[Path, str] | None:
    parent = path
    for _ in range(3):
        parent = os.path.dirname(parent)
        manifest = os.path.join(parent, integrity.MANIFEST)
        try:
            with open(manifest, "rb") as fh:  # bytes: json decodes UTF-8 itself
                raw = fh.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue
        try:
            files = json.loads(raw).get("files", {})
        except ValueError:
            raise integrity.IntegrityError(f"{manifest} is corrupt (not valid JSON)") from None
        rel = path[len(parent) :].lstrip(os.sep).replace(os.sep, "/")  # parent is its prefix
        if rel in files:
            return Path(parent), files[rel]
    return None


def _threads(size: int, rows: int) -> int | None:
    """1 for a job smaller than starting onnxruntime's thread pool costs, else its default.

    The work is estimated as 2 flops per weight (4 bytes each) per row: a dense
    model's multiply-adds. Below SMALL_JOB_FLOPS a second thread costs more than
    it saves (circle at 1,024 rows: ~0.3 Mflop).
    """
    return 1 if rows and 2 * (size / 4) * rows < SMALL_JOB_FLOPS else None


def _session(model: str, threads: int | None = None) -> Runner:
    """An onnxruntime CPU session as a Runner (the file was already through the gate)."""
    import onnxruntime as ort

    from toolkit.formats.runtime import onnx_runner, session_options

    try:
        # No quiet_native() here (it costs ~0.1 ms a call): the session's own logger is
        # off (severity 4) and a failure comes back as this exception, one line.
        session = ort.InferenceSession(model, session_options(threads), ["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(
            f"cannot load {model} as onnx: {one_line(exc, 240)}", "re-export it with tk export"
        ) from None
    return onnx_runner(session)


def _open_run(target: str | Path, runs_dir: str | Path, registry: Registry | None) -> Opened:
    """What a run directory's config says about its model, and its eager model."""
    from toolkit.formats.runtime import eager_runner
    from toolkit.models import rebuild_model
    from toolkit.tasks import get_task

    run = runs.open_run(None if str(target) == runs.LATEST else target, runs_dir)
    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()
    cfg = run.config
    task = cfg.get("task", "regression")
    meta = {
        "task": task,
        "input": cfg["input"],
        "output": get_task(task).meaning,
        "class_names": cfg.get("class_names"),
        "feature_scale": cfg.get("feature_scale"),
        "inputs": cfg.get("inputs"),  # columns by name, or how images are decoded
    }
    return Opened(meta, str(run.path), lambda rows=0: eager_runner(rebuild_model(run, registry)))
