"""Integrity of a run directory: a manifest of sha256s, and the gate every loaded file passes.

``manifest.json`` in the run directory maps every file tk wrote there (checkpoints,
weights, exports) to its sha256. It is updated *after* the file is in place, so a
kill between the two leaves an unlisted file that is ignored, never a listed file
that is wrong. A file whose bytes no longer match its manifest entry is refused.

Exports written outside the run directory are remembered by hash only; that hash is
what vouches for a TorchScript file, whose loading runs code.
"""

from __future__ import annotations

import json
from pathlib import Path

from toolkit import runs
from toolkit.errors import TkError, UsageError

MANIFEST = "manifest.json"


class IntegrityError(TkError):
    """A file does not match the sha256 recorded in its run's manifest."""

    exit_code = 3


def read_manifest(run_dir: str | Path) -> dict[str, str]:
    """``{relative path: sha256}`` of a run directory ({} when there is none)."""
    p = Path(run_dir) / MANIFEST
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError:
        raise IntegrityError(f"{p} is corrupt (not valid JSON)") from None
    return dict(data.get("files", {}))


def record(run_dir: str | Path, path: str | Path, sha256: str | None = None) -> str:
    """Add (or update) ``path``'s sha256 in the run's manifest; returns the hash."""
    run_dir = Path(run_dir)
    rel = Path(path).resolve().relative_to(run_dir.resolve()).as_posix()
    digest = sha256 or runs.sha256_file(path)
    files = read_manifest(run_dir)
    files[rel] = digest
    _write_files(run_dir, files)
    return digest


def _write_files(run_dir: Path, files: dict[str, str]) -> None:
    # Other keys (the hashes of exports outside the run) are kept as they are.
    p = run_dir / MANIFEST
    data = json.loads(p.read_text()) if p.is_file() else {}
    data.update({"version": 1, "files": dict(sorted(files.items()))})
    runs.atomic_write_json(p, data)


def forget(run_dir: str | Path, rel: str) -> None:
    """Drop an entry from the manifest (before the file itself is deleted)."""
    files = read_manifest(run_dir)
    if files.pop(rel, None) is not None:
        _write_files(Path(run_dir), files)


def find_manifest(path: str | Path) -> tuple[Path, str] | None:
    """The run directory whose manifest lists ``path``, and the entry's key."""
    path = Path(path).resolve()
    for parent in list(path.parents)[:3]:
        if (parent / MANIFEST).is_file():
            rel = path.relative_to(parent).as_posix()
            if rel in read_manifest(parent):
                return parent, rel
    return None


def check_file(path: str | Path, *, required: bool = False) -> bool:
    """Compare a file with its manifest entry; raise IntegrityError on a mismatch.

    Returns True when the file was checked, False when no manifest lists it (then a
    ``required`` check raises too).
    """
    path = Path(path)
    found = find_manifest(path)
    if found is None:
        if required:
            raise IntegrityError(f"{path} is not listed in its run's {MANIFEST}; refusing it")
        return False
    run_dir, rel = found
    expected = read_manifest(run_dir)[rel]
    actual = runs.sha256_file(path)
    if actual != expected:
        raise IntegrityError(
            f"{path} does not match its sha256 in {run_dir / MANIFEST} (corrupt or modified); "
            "refusing to load it"
        )
    return True


# ------------------------------------------------------------- exported files
def record_export(run_dir: str | Path, path: str | Path, sha256: str) -> None:
    """Remember an export's sha256 in its run's manifest (files outside the run too).

    Inside the run directory it is an ordinary manifest entry (checked on load);
    elsewhere only its hash is kept, which is what vouches for a TorchScript file.
    """
    run_dir = Path(run_dir)
    path = Path(path)
    try:
        path.resolve().relative_to(run_dir.resolve())
        record(run_dir, path, sha256)
        return
    except ValueError:
        pass
    manifest = run_dir / MANIFEST
    data = json.loads(manifest.read_text()) if manifest.is_file() else {"version": 1, "files": {}}
    exports = set(data.get("exports", []))
    exports.add(sha256)
    data["exports"] = sorted(exports)
    runs.atomic_write_json(manifest, data)


def is_tk_export(path: str | Path, run_dir: str | Path | None) -> bool:
    """True when ``path``'s sha256 is one tk recorded for the run it names."""
    if run_dir is None or not (Path(run_dir) / MANIFEST).is_file():
        return False
    digest = runs.sha256_file(path)
    data = json.loads((Path(run_dir) / MANIFEST).read_text())
    return digest in data.get("files", {}).values() or digest in data.get("exports", [])


def check_onnx_external_data(path: str | Path) -> None:
    """Refuse ONNX files whose external data would be read from outside their directory.

    ``../`` segments, absolute paths and symlinks leaving the directory would let a
    model file make onnxruntime read arbitrary files on this machine.
    """
    import onnx

    path = Path(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise IntegrityError(f"{path} is not a readable ONNX file: {type(exc).__name__}") from None
    base = path.resolve().parent
    tensors = list(proto.graph.initializer)
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (base / location).resolve()
        if (
            not location
            or Path(location).is_absolute()
            or ".." in Path(location).parts
            or (target != base and base not in target.parents)
        ):
            raise IntegrityError(
                f"refusing {path}: tensor '{tensor.name}' reads external data from "
                f"{location!r}, outside the model's directory",
                "re-export it with tk export (weights embedded in one file)",
            )


def check_export(path: str | Path, fmt: str, run_dir: str | Path | None, trust: bool) -> None:
    """The gate every exported file passes before a runtime opens it, after
    :func:`check_file` (which its callers run before they read the metadata).

    ONNX external data must stay beside the file; TorchScript (loading it runs
    code) needs ``trust`` unless tk vouches for its bytes.
    """
    if fmt == "onnx":
        check_onnx_external_data(path)
    elif fmt == "torchscript" and not trust and not is_tk_export(path, run_dir):
        raise UsageError(
            f"refusing to load TorchScript file {path}: loading it runs code, and its sha256 "
            "matches no tk run's manifest",
            "--trust if you trust where it came from",
        )
