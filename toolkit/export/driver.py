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
from toolkit.export.prepare import CALIBRATION_ROWS, Derived, ExportJob, prepare
from toolkit.export.to_onnx import export_onnx
from toolkit.export.to_pt2 import export_pt2
from toolkit.export.to_torchscript import export_torchscript
from toolkit.export.variants import derive
from toolkit.formats import read_metadata, size_text
from toolkit.verify import VerifyReport, load_runners, verify_loaded

if TYPE_CHECKING:
    import numpy as np

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
    quantization: str | None = None  # the scheme of a quantized ONNX file
    optimized: bool = False  # onnxruntime's offline graph optimization applied
    source_size: int | None = None  # bytes of the float32 file it was derived from

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "quantization": self.quantization,
            "optimized": self.optimized,
            "source_size": self.source_size,
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
    quantize: str | None = None,
    calibration_rows: int = CALIBRATION_ROWS,
    calibration: np.ndarray | None = None,
    optimize: bool = False,
    min_agreement: float | None = None,
    weights: str = "best",
) -> list[ExportResult]:
    """Export a run's model to each format, verify each file, write the ones that pass;
    returns one ExportResult per format.

    :param run: a run directory, or None for ``runs/latest``.
    :param formats: ``onnx``, ``torchscript``, ``pt2`` or ``all`` (or several).
    :param out: a file (one format) or a directory (several); default: the run directory.
    :param opset: ONNX opset (default: the exporter's); ``static_batch``: a fixed batch;
        ``overwrite``: replace existing files; ``verify``: each file before it is written.
    :param quantize: ``int8-dynamic``, ``int8-static`` or ``fp16``: write that version
        of the verified float32 ONNX file instead (``--format onnx`` only);
        ``calibration_rows`` training rows calibrate int8-static, or ``calibration``.
    :param optimize: onnxruntime's basic offline graph optimization of the ONNX file.
    :param min_agreement: held-out agreement to reach (default 1.0; 0.99 quantized).
    :param weights: ``best`` (the epoch validation selected) or ``last`` (the last epoch).
    :raises VerificationError: a file failed verification (not written; the others were);
        :class:`ExportError`: a format cannot be exported (nothing partial left). Exit 3.
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
        derived=Derived(quantize, optimize, calibration_rows, calibration, min_agreement),
        weights=weights,
    )
    return export_all(job, verify, echo, echo_err)


def export_all(
    job: ExportJob, verify: bool, echo: Callable[[str], None], echo_err: Callable[[str], None]
) -> list[ExportResult]:
    """Every format of a prepared job: export, verify, write or refuse, then the verdict."""
    results: list[ExportResult] = []
    errors: list[tuple[str, ExportError]] = []
    for fmt in job.formats:
        try:
            data, result = export_verified(job, fmt, verify, echo_err)
        except ExportError as exc:
            # Nothing was written for this format; the other formats still get their turn.
            errors.append((fmt, exc))
            continue
        results.append(result)
        write_or_refuse(job, result, data, echo)
    return finish(job, results, errors)


def export_verified(
    job: ExportJob, fmt: str, verify: bool, echo_err: Callable[[str], None]
) -> tuple[bytes, ExportResult]:
    """Export ``fmt``, verify it, and derive the optimized/quantized file from it if asked."""
    data, result = export_one(job, fmt, echo_err)
    if verify:
        verify_before_write(job, result, data, final=not _derives(job, fmt))
    if _derives(job, fmt) and (result.verify is None or result.verify.passed):
        data = derive_one(job, result, data)
    return data, result


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


def _derives(job: ExportJob, fmt: str) -> bool:
    return fmt == "onnx" and (job.quantize is not None or job.optimize)


def derive_one(job: ExportJob, result: ExportResult, data: bytes) -> bytes:
    """The optimized and/or quantized file made from verified float32 bytes, verified too."""
    start = time.perf_counter()
    out, result.exporter, result.opset = derive(job, data, result.exporter)
    result.seconds += time.perf_counter() - start
    result.source_size, result.size = len(data), len(out)
    result.quantization, result.optimized = job.quantize, job.optimize
    if result.verify is not None:  # the float32 source passed; now the file itself
        verify_before_write(job, result, out, final=True)
    return out


def verify_before_write(
    job: ExportJob, result: ExportResult, data: bytes, final: bool = True
) -> None:
    """Verify the exact bytes about to be written, with the metadata they carry.

    ``final=False``: the float32 source of a derived file (held to the default minimum).
    """
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
        min_agreement=job.derived.min_agreement if final and job.derived else None,
    )
    if job.heldout_note is not None:
        report.notes.append(job.heldout_note + ": random and out-of-distribution inputs only")
    if not final:
        report.notes.append("the float32 file the written one is made from")
    result.verify = report
    result.verify_seconds += time.perf_counter() - start


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
    if result.source_size:
        extra += f", {len(data) / result.source_size:.2f}x the float32 file"
    verdict = f"; verify: {result.verify.summary()}" if result.verify else " (not verified)"
    echo(
        f"{fmt}: wrote {path} ({size_text(len(data))}, {result.exporter}{extra}) "
        f"in {result.seconds:.2f} s{verdict}"
    )


def finish(
    job: ExportJob, results: list[ExportResult], errors: list[tuple[str, ExportError]]
) -> list[ExportResult]:
    """The results, or the error for the formats that failed (carrying the results)."""
    from toolkit.models import weights_path

    source = weights_path(job.run, job.weights)
    if runs.sha256_file(source) != job.weights_sha256:  # never expected: say so loudly
        raise ExportError(f"{source} changed during export", "report this as a bug")
    if errors:
        first = errors[0][1]
        what = "; ".join(f"{fmt}: {exc.message}" for fmt, exc in errors)
        message = what if len(errors) > 1 else first.message
        raise PartialExportError(message, first.hint, results=results)
    failed = [r for r in results if r.verify is not None and not r.verify.passed]
    if failed:
        held = [r for r in failed if r.verify and r.verify.heldout_failure()]
        if held and held[0].quantization:  # the one figure that decides a quantized file
            r = held[0]
            h = r.verify.heldout_failure()  # type: ignore[union-attr]
            raise PartialVerificationError(
                f"{r.quantization}: {h.summary()}; {r.path} not written",  # type: ignore[union-attr]
                "another --quantize scheme (int8-dynamic, fp16), more --calibration-rows, "
                "or a lower --min-agreement",
                results=results,
            )
        names = "; ".join(f"{r.format}: {r.verify.summary()}" for r in failed if r.verify)
        raise PartialVerificationError(
            f"verification failed, file not written: {names}",
            "fix the model's forward(), or --no-verify to write the file anyway",
            results=results,
        )
    return results
