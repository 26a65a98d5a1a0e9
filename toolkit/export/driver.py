"""``export_run``: prepare, then per format export -> verify the bytes -> write or refuse.

A format that cannot be exported or fails verification is never written, and it
does not stop the other formats; the error raised at the end carries the
results of every format that was exported (``tk export --json`` prints them).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import integrity, runs
from toolkit.errors import ExportError, VerificationError
from toolkit.export.common import stderr_line
from toolkit.export.prepare import ExportJob, prepare
from toolkit.export.to_onnx import export_onnx
from toolkit.export.to_pt2 import export_pt2
from toolkit.export.to_torchscript import export_torchscript
from toolkit.formats import read_metadata
from toolkit.verify import VerifyReport, load_runners, verify_loaded

if TYPE_CHECKING:
    from toolkit.registry import Registry


@dataclass
class ExportResult:
    """One exported file: where it went, how long it took, and its verification."""

    format: str
    path: Path
    seconds: float  # wall time of the export itself (trace, convert, serialise)
    exporter: str
    opset: int | None
    size: int
    written: bool
    verify: VerifyReport | None = None
    verify_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "format": self.format,
            "path": str(self.path),
            "seconds": round(self.seconds, 4),
            "exporter": self.exporter,
            "opset": self.opset,
            "size": self.size,
            "written": self.written,
            "verify": self.verify.to_json() if self.verify else None,
            "verify_seconds": round(self.verify_seconds, 4),
        }


class PartialExportError(ExportError):
    """An ExportError raised after the other formats had their turn.

    :param results: every format that was exported (written or refused).
    """

    def __init__(
        self, message: str, hint: str | None = None, *, results: Sequence[ExportResult] = ()
    ) -> None:
        super().__init__(message, hint)
        self.results = list(results)


class PartialVerificationError(VerificationError):
    """A VerificationError raised after the other formats had their turn.

    :param results: every format that was exported (written or refused).
    """

    def __init__(
        self, message: str, hint: str | None = None, *, results: Sequence[ExportResult] = ()
    ) -> None:
        super().__init__(message, hint)
        self.results = list(results)


def export_run(
    run: str | Path | None = None,
    formats: str | Sequence[str] = ("onnx",),
    *,
    out: str | Path | None = None,
    opset: int | None = None,
    overwrite: bool = False,
    static_batch: int | None = None,
    verify: bool = True,
    runs_dir: str | Path = "runs",
    registry: Registry | None = None,
    echo: Callable[[str], None] = print,
    echo_err: Callable[[str], None] = stderr_line,
) -> list[ExportResult]:
    """Export a run's model to each format, verify each file, write the ones that pass.

    :param run: a run directory, or None for ``runs/latest``.
    :param formats: ``onnx``, ``torchscript``, ``pt2`` or ``all`` (or several).
    :param out: a file (one format) or a directory (several); default: the run directory.
    :param opset: ONNX opset (default: the exporter's).
    :param overwrite: replace existing files (refused otherwise, before any work).
    :param static_batch: export for exactly this batch size instead of a dynamic one.
    :param verify: verify each export against the eager model before writing it.
    :returns: one ExportResult per format.
    :raises VerificationError: a file failed verification (the report was printed and
        that file not written; the others were). Exit 1.
    :raises ExportError: a format cannot be exported (nothing partial is left). Exit 3.
    """
    job = prepare(
        run,
        formats,
        out=out,
        opset=opset,
        overwrite=overwrite,
        static_batch=static_batch,
        verify=verify,
        runs_dir=runs_dir,
        registry=registry,
    )
    results: list[ExportResult] = []
    errors: list[tuple[str, ExportError]] = []
    for fmt in job.formats:
        try:
            data, result = export_one(job, fmt, echo_err)
            if verify:
                verify_before_write(job, result, data)
        except ExportError as exc:
            # Nothing was written for this format; the other formats still get their turn.
            errors.append((fmt, exc))
            continue
        results.append(result)
        write_or_refuse(job, result, data, echo)
    return finish(job, results, errors)


def export_one(
    job: ExportJob, fmt: str, echo_err: Callable[[str], None]
) -> tuple[bytes, ExportResult]:
    """Export a fresh ``eval()`` copy of the reference to ``fmt``: its bytes and result."""
    # Each exporter gets its own copy: the reference stays untouched, and one
    # exporter's changes to a module cannot leak into the next.
    model = copy.deepcopy(job.reference).eval()
    meta = partial(job.metadata, fmt)  # (exporter, opset=None) -> the metadata to embed
    version: int | None = None
    start = time.perf_counter()
    if fmt == "onnx":
        data, exporter, version = export_onnx(
            model,
            job.example,
            meta,
            opset=job.opset,
            dynamic=job.dynamic,
            input_name=job.input_name,
            output_name=job.output_name,
            echo_err=echo_err,
        )
    elif fmt == "torchscript":
        data, exporter = export_torchscript(model, job.example, meta, echo_err=echo_err)
    else:
        data, exporter = export_pt2(model, job.example, meta, dynamic=job.dynamic)
    seconds = time.perf_counter() - start
    return data, ExportResult(fmt, job.paths[fmt], seconds, exporter, version, len(data), False)


def verify_before_write(job: ExportJob, result: ExportResult, data: bytes) -> None:
    """Verify the exact bytes about to be written, with the metadata they carry."""
    start = time.perf_counter()
    report = verify_loaded(
        load_runners(data, result.format),
        read_metadata(data),
        job.run,
        path=str(result.path),
        batch_sizes=None,
        atol=None,
        rtol=None,
        registry=job.registry,
        model=job.reference,
        heldout=job.heldout,
    )
    if job.heldout_note is not None:
        report.notes.append(job.heldout_note + ": random and out-of-distribution inputs only")
    result.verify = report
    result.verify_seconds = time.perf_counter() - start


def write_or_refuse(
    job: ExportJob, result: ExportResult, data: bytes, echo: Callable[[str], None]
) -> None:
    """Write a file that passed (or skipped) verification, atomically; refuse one that failed."""
    fmt, path = result.format, result.path
    if result.verify is not None and not result.verify.passed:
        echo(result.verify.text())
        echo(f"{fmt}: {path} NOT written: verification failed")
        return
    runs.atomic_write_bytes(path, data)
    # The manifest entry is what later refuses a corrupted copy and vouches for
    # a TorchScript file (whose loading runs code).
    integrity.record_export(job.run.path, path, runs.sha256_bytes(data))
    result.written = True
    extra = f", opset {result.opset}" if result.opset else ""
    verdict = f"; verify: {result.verify.summary()}" if result.verify else " (not verified)"
    echo(
        f"{fmt}: wrote {path} ({_size(len(data))}, {result.exporter}{extra}) "
        f"in {result.seconds:.2f} s{verdict}"
    )


def finish(
    job: ExportJob, results: list[ExportResult], errors: list[tuple[str, ExportError]]
) -> list[ExportResult]:
    """The results, or the error for the formats that failed (carrying the results)."""
    if runs.sha256_file(job.run.weights) != job.weights_sha256:  # never expected: say so loudly
        raise ExportError(f"{job.run.weights} changed during export", "report this as a bug")
    if errors:
        first = errors[0][1]
        what = "; ".join(f"{fmt}: {exc.message}" for fmt, exc in errors)
        message = what if len(errors) > 1 else first.message
        raise PartialExportError(message, first.hint, results=results)
    failed = [r for r in results if r.verify is not None and not r.verify.passed]
    if failed:
        names = "; ".join(f"{r.format}: {r.verify.summary()}" for r in failed if r.verify)
        raise PartialVerificationError(
            f"verification failed, file not written: {names}",
            "fix the model's forward(), or --no-verify to write the file anyway",
            results=results,
        )
    return results


def _size(n: int) -> str:
    return f"{n / 1024:.1f} kB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MB"
