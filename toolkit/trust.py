"""Who may run code: the one gate every exported file passes before a runtime opens it.

The gate decides a file's format from its bytes, through the installed formats
(``tk_register_formats``; tk's own are asked first), and a runner comes only from
what it let through (:meth:`Cleared.runners`).

Loading a TorchScript or torch.export file runs code: TorchScript's own, the
pickles a pt2 archive may hold, and a pt2 graph's symbolic shapes, which torch
parses with sympy (an ``eval``). tk loads such a file only when this tk
installation exported exactly these bytes, or the user said ``--trust``. What the
file says about itself (its metadata, a ``manifest.json`` beside it or in the run
it names) is integrity at most, never trust: anyone can write those.

tk's record of what it exported lives in the user's data directory, outside every
run: ``$TK_HOME/exports.sha256``, else ``$XDG_DATA_HOME/tk/``, else
``~/.local/share/tk/``; one ``<sha256>  <path>`` line per written file, the format
``sha256sum -c`` reads. A line is appended by one ``write`` on an ``O_APPEND``
descriptor and fsynced, so concurrent exports never interleave and a kill leaves at
most a torn last line, which matches nothing. Only the hash vouches: a copy of an
export, anywhere, still loads.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from toolkit import integrity
from toolkit.errors import ExportError, UsageError, one_line
from toolkit.formats import ExportFormat, Runner, detect, probe
from toolkit.formats.builtin import BUILTIN
from toolkit.formats.runtime import quiet_native
from toolkit.registry import Registry
from toolkit.runs import sha256_bytes

STORE = "exports.sha256"
# Why a file was let through (Cleared.reason).
NO_CODE = "runs no code"
EXPORTED = "exported by this tk installation"
TRUSTED = "--trust"
EXPORTING = "being exported by tk"


def home() -> Path:
    """tk's data directory: ``$TK_HOME``, else ``$XDG_DATA_HOME/tk``, else ``~/.local/share/tk``."""
    if os.environ.get("TK_HOME"):
        return Path(os.environ["TK_HOME"]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "")
    # The XDG spec: a relative XDG_DATA_HOME is invalid and ignored.
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share") / "tk"


def store_path() -> Path:
    """The record of every file this tk installation exported."""
    return home() / STORE


def remember(path: str | Path, sha256: str) -> None:
    """Record that tk exported these bytes (every format, before the file is written).

    Raises OSError when the record cannot be written (the caller warns).
    """
    store = store_path()
    store.parent.mkdir(parents=True, exist_ok=True)
    shown = str(Path(path).absolute())
    # sha256sum's escape for names with a newline or backslash.
    if "\n" in shown or "\\" in shown:
        shown = shown.replace("\\", "\\\\").replace("\n", "\\n")
        sha256 = "\\" + sha256
    fd = os.open(store, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        # A writer killed mid-line left a torn line: start on a fresh one.
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        os.write(fd, ("\n" if torn else "").encode() + f"{sha256}  {shown}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def exported(sha256: str) -> bool:
    """True when this tk installation exported a file with these bytes."""
    store = store_path()
    try:
        text = store.read_bytes()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise UsageError(
            f"cannot read tk's record of its exports {store}: {exc.strerror}",
            "--trust if you trust where the file came from",
        ) from None
    want = sha256.encode()
    return any(line.lstrip(b"\\")[:66] == want + b"  " for line in text.splitlines())


def formats(registry: Registry | None = None) -> Registry:
    """The registry whose formats files are dispatched through: ``registry`` when it
    has any, else the installation's (formats belong to it, not to one call's models)."""
    if registry is not None and registry.formats:
        return registry
    from toolkit.plugins import get_registry

    return get_registry()


def format_of(
    data: bytes | str | Path | BinaryIO,
    *,
    name: str | None = None,
    registry: Registry | None = None,
) -> ExportFormat:
    """The format of a file from its bytes, never its name or metadata (``name``: the
    file, for messages). An open file is left at its start; a damaged zip archive, or
    bytes no installed format takes, is an ExportError (exit 3)."""
    what = name or (str(data) if isinstance(data, (str, Path)) else "an in-memory export")
    seen = probe(data, name=what)
    # tk's own formats lead every installation's table: bytes one of them claims need
    # no plugin loaded (``tk predict model.onnx`` starts without them).
    own = next((f for f in BUILTIN if f.detect(seen)), None)
    return own or detect(list(formats(registry).formats.values()), seen, what)


def detect_format(data: bytes | str | Path | BinaryIO, *, name: str | None = None) -> str:
    """The name of a file's format, from its bytes (:func:`format_of`)."""
    return format_of(data, name=name).name


def read_metadata(path: str | Path | bytes, *, name: str | None = None) -> dict[str, Any]:
    """The provenance tk stored in an exported file (``{}`` if it has none).

    Reads only the metadata: no weights are loaded and no model code runs, so this
    is safe on files from anywhere. Raises ExportError if the file cannot be read.
    ``name``: the file the bytes came from, for messages.
    """
    if not isinstance(path, bytes) and not Path(path).is_file():
        what = "not a file" if Path(path).exists() else "no such file"
        raise UsageError(f"{what}: {path}", "tk export, then the path of the file it wrote")
    what = name or ("an in-memory export" if isinstance(path, bytes) else str(path))
    return _metadata(format_of(path, name=what), path, what)


def _metadata(fmt: ExportFormat, source: str | Path | bytes, what: str) -> dict[str, Any]:
    try:
        meta = fmt.read_metadata(source)
    except Exception as exc:
        raise ExportError(
            f"cannot read {what} as {fmt.name}: {one_line(exc, 200)}",
            "re-export it with tk export",
        ) from None
    if meta:
        # What the bytes are, whatever the file says about itself.
        meta["format"] = fmt.name
    return meta


@dataclass(frozen=True)
class Cleared:
    """A file the gate let through: what to load, its format (from its bytes), and why.

    ``source`` is the path of a file that runs no code, and the very bytes that were
    hashed for one that can (what is loaded is what was vouched for); bytes too for
    an export being verified before it is written, with its companion files'
    bytes in ``extra`` (by suffix).
    """

    source: str | bytes
    fmt: ExportFormat
    reason: str
    name: str
    extra: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def format(self) -> str:
        """The format's name."""
        return self.fmt.name

    @property
    def allows_pickles(self) -> bool:
        """Only ``--trust`` lets a torch.export file's pickles be unpickled."""
        return self.reason == TRUSTED

    def metadata(self) -> dict[str, Any]:
        """The provenance tk embedded in the file (``{}`` if none); no code runs."""
        return _metadata(self.fmt, self.source, self.name)

    def runners(self, *, cuda: bool = True, threads: int | None = None) -> list[Runner]:
        """The file in the runtime(s) of its format: the only way to load an exported file.

        ``cuda``: also a CUDA runtime when the format has one; ``threads``: the runtime's
        intra-op threads (torch's are process-wide: ``torch.set_num_threads``). Raises
        ExportError (exit 3) when the file cannot be loaded.
        """
        try:
            with quiet_native(), warnings.catch_warnings():
                # torch.jit.load warns that TorchScript is deprecated: tk export said so.
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                return self.fmt.load(self, cuda=cuda, threads=threads)
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(
                f"cannot load {self.name} as {self.format}: {one_line(exc, 240)}",
                "re-export it with tk export",
            ) from None


def load_runners(
    cleared: Cleared, *, cuda: bool = True, threads: int | None = None
) -> list[Runner]:
    """``cleared.runners(...)``: refuses anything that did not pass :func:`clear`."""
    if not isinstance(cleared, Cleared):  # no loader that runs code outside the gate
        raise TypeError("load_runners takes what toolkit.trust.clear returned")
    return cleared.runners(cuda=cuda, threads=threads)


def clear(path: str | Path, *, trust: bool = False, registry: Registry | None = None) -> Cleared:
    """The gate: every file ``tk verify``, ``predict`` and ``bench`` load passes here.

    1. A file its run's manifest lists must match it (integrity), companions too.
    2. The format is decided from the bytes (:func:`format_of`).
    3. A format that runs no code (ONNX): its own check (external data beside it).
    4. A format whose loading can run code (TorchScript, pt2): this tk installation
       exported these bytes, or ``trust``. Anything else is refused (UsageError, exit 2).

    ``registry``: whose formats to detect with (default: the installation's).
    """
    path = Path(path)
    if not path.is_file():
        what = "not a file" if path.exists() else "no such file"
        raise UsageError(f"{what}: {path}", "tk export, then the path of the file it wrote")
    fmt = format_of(path, name=str(path), registry=registry)
    if not fmt.can_carry_code:
        integrity.check_file(path)
        for companion in companions(fmt, path):
            integrity.check_file(companion)
        fmt.check(path)
        return Cleared(str(path), fmt, NO_CODE, str(path))
    data = path.read_bytes()
    if (
        format_of(data, name=str(path), registry=registry).name != fmt.name
    ):  # the bytes that will be loaded decide
        raise ExportError(f"{path} changed while it was being read", "run the command again")
    digest = sha256_bytes(data)
    integrity.check_file(path, sha256=digest)
    if exported(digest):
        return Cleared(data, fmt, EXPORTED, str(path))
    if not trust:
        raise UsageError(
            f"refusing to load {fmt.title or fmt.name} file {path}: loading it runs code, and this "
            f"tk installation did not export these bytes (sha256 {digest[:12]} is not in "
            f"{store_path()})",
            "--trust if you trust where it came from",
        )
    return Cleared(data, fmt, TRUSTED, str(path))


def companions(fmt: ExportFormat, path: Path) -> list[Path]:
    """The files a format keeps beside ``path`` (OpenVINO's ``.bin``); each must be a
    plain file in the same directory."""
    found = []
    for suffix in fmt.companions:
        companion = path.with_suffix(suffix)
        if companion.is_symlink() or not companion.is_file():
            raise UsageError(
                f"{path} needs {companion.name} beside it (a plain file, not a link)",
                "copy both files, or tk export again",
            )
        found.append(companion)
    return found


def own_export(data: bytes, fmt: ExportFormat, extra: Mapping[str, bytes] | None = None) -> Cleared:
    """Bytes tk's exporter just produced in this process, verified before they are written.

    Raises ExportError when the format does not recognise its own bytes (a format
    plugin's ``detect`` that disagrees with its ``export``): such a file could never
    be loaded again.
    """
    found = format_of(data, name=f"the {fmt.name} export")
    if found.name != fmt.name:
        raise ExportError(
            f"the {fmt.name} exporter wrote bytes that are detected as {found.name}",
            f"fix detect() of the plugin that registers {fmt.name}",
        )
    return Cleared(data, fmt, EXPORTING, "the in-memory export", dict(extra or {}))
