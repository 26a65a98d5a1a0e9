"""Integrity of a run directory: a manifest of sha256s, and the gate every loaded file passes.

``manifest.json`` in the run directory maps every file tk wrote there (checkpoints,
weights, exports) to its sha256. It is updated *after* the file is in place, so a
kill between the two leaves an unlisted file that is ignored, never a listed file
that is wrong. A file whose bytes no longer match its manifest entry is refused.

A manifest is integrity, not trust: it says the bytes did not change since tk wrote
them, but anyone can write one, so it never lets a file that runs code load
(``toolkit.trust`` decides that from tk's own record of its exports).
"""

from __future__ import annotations

import json
from pathlib import Path

from toolkit import runs
from toolkit.errors import IntegrityError

MANIFEST = "manifest.json"


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


def check_file(path: str | Path, *, required: bool = False, sha256: str | None = None) -> bool:
    """Compare a file with its manifest entry; raise IntegrityError on a mismatch.

    Returns True when the file was checked, False when no manifest lists it (then a
    ``required`` check raises too). ``sha256``: the file's hash, when already known.
    """
    path = Path(path)
    found = find_manifest(path)
    if found is None:
        if required:
            raise IntegrityError(f"{path} is not listed in its run's {MANIFEST}; refusing it")
        return False
    run_dir, rel = found
    expected = read_manifest(run_dir)[rel]
    actual = sha256 or runs.sha256_file(path)
    if actual != expected:
        raise IntegrityError(
            f"{path} does not match its sha256 in {run_dir / MANIFEST} (corrupt or modified); "
            "refusing to load it"
        )
    return True


# ------------------------------------------------------------- exported files
def record_export(run_dir: str | Path, path: str | Path, sha256: str) -> None:
    """List an export written inside its run directory in the run's manifest.

    A file written elsewhere has no manifest entry: ``toolkit.trust`` records every
    export, wherever it went.
    """
    try:
        Path(path).resolve().relative_to(Path(run_dir).resolve())
    except ValueError:
        return
    record(run_dir, path, sha256)
