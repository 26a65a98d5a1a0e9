"""``export_run``: prepare, then per format export -> verify the bytes -> write or refuse.

A format that cannot be exported or fails verification is never written, and it
does not stop the other formats; the error raised at the end carries the
results of every format that was exported (``tk export --json`` prints them).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import integrity, runs, trust
from toolkit.errors import ExportError, VerificationError
from toolkit.export.prepare import (
    CALIBRATION_ROWS,
    Derived,
    ExportJob,
    check_options,
    parse_formats,
    prepare,
)
from toolkit.export.variants import derive
from toolkit.formats import Exported, ExportRequest, size_text
from toolkit.formats.exporting import note, stderr_line
from toolkit.formats.onnx import ONNX
from toolkit.runs.lock import lock_run
from toolkit.train.tracked import send_files
from toolkit.trust import own_export, remember, store_path
from toolkit.verify import VerifyReport, tolerance_change, verify_loaded

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
    skipped: bool = False  # its file existed already and was left as it was
    companions: list[Path] = field(default_factory=list)  # files written beside it

    @classmethod
    def existing(cls, fmt: str, path: Path) -> ExportResult:
        """A format not exported because ``path`` is there already (no ``--overwrite``)."""
        return cls(fmt, path, 0.0, "", None, path.stat().st_size, False, skipped=True)

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
            "skipped": self.skipped,
            "verify": self.verify.to_json() if self.verify else None,
            "verify_seconds": round(self.verify_seconds, 4),
            "companions": [str(p) for p in self.companions],
        }


class _AfterTheOthers:
    """An error raised after the other formats had their turn.

    :param results: every format that was exported (written or refused).
    """

    def __init__(
        self, message: str, hint: str | None = None, *, results: Sequence[ExportResult] = ()
    ) -> None:
        super().__init__(message, hint)  # type: ignore[call-arg]
        self.results = list(results)


class PartialExportError(_AfterTheOthers, ExportError):
    """An ExportError raised after the other formats had their turn (``results``)."""


class PartialVerificationError(_AfterTheOthers, VerificationError):
    """A VerificationError raised after the other formats had their turn (``results``)."""


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
    :param formats: ``onnx``, ``torchscript``, ``pt2``, a plugin's format (``tk list
        formats``) or ``all`` (tk's own three), or several.
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
    derived = Derived(quantize, optimize, calibration_rows, calibration, min_agreement)
    check_options(parse_formats(formats), derived, verify, static_batch, opset)
    # The run directory is written (exports, the manifest): one writer at a time.
    path = runs.resolve_run(run, runs_dir)
    with lock_run(path, "tk export"):
        job = prepare(
            path,
            formats,
            out=out,
            opset=opset,
            overwrite=overwrite,
            static_batch=static_batch,
            verify=verify,
            runs_dir=runs_dir,
            registry=registry,
            derived=derived,
            weights=weights,
        )
        return export_all(job, verify, echo, echo_err)


def export_all(
    job: ExportJob, verify: bool, echo: Callable[[str], None], echo_err: Callable[[str], None]
) -> list[ExportResult]:
    """Every format of a prepared job: export, verify, write or refuse, then the verdict."""
    results: list[ExportResult] = []
    for fmt, path in job.skipped.items():
        echo(f"{fmt}: skipped {path}: it already exists (--overwrite to replace it)")
        results.append(ExportResult.existing(fmt, path))
    errors: list[tuple[str, ExportError]] = []
    changed = tolerance_change({}, job.registry, job.run.config) if verify else None
    if changed and job.formats:
        note(changed, echo_err)  # once for the run, not once per format
    for fmt in job.formats:
        try:
            out, result = export_verified(job, fmt, verify, echo_err)
        except ExportError as exc:
            # Nothing was written for this format; the other formats still get their turn.
            errors.append((fmt, exc))
            continue
        results.append(result)
        write_or_refuse(job, result, out, echo, echo_err)
    to_trackers(job, [r.path for r in results if r.written], echo, echo_err)
    return finish(job, results, errors)


def to_trackers(
    job: ExportJob, paths: list[Path], echo: Callable[[str], None], echo_err: Callable[[str], None]
) -> None:
    """The written files to the trackers the run was trained with (``RUN/trackers.json``)."""
    sent, warnings = send_files(job.run.path, paths, job.registry)
    if sent:
        names = ", ".join(p.name for p in paths)
        echo(f"{names}: logged to the run's trackers ({', '.join(sent)})")
    for line in warnings:
        echo_err(line)


def export_verified(
    job: ExportJob, fmt: str, verify: bool, echo_err: Callable[[str], None]
) -> tuple[Exported, ExportResult]:
    """Export ``fmt``, verify it, and derive the optimized/quantized file from it if asked."""
    out, result = export_one(job, fmt, verify, echo_err)
    if verify:
        verify_before_write(job, result, out, final=not _derives(job, fmt))
    if result.verify is None or result.verify.passed:
        job.sources.setdefault(fmt, out.data)  # what another format may convert
    if _derives(job, fmt) and (result.verify is None or result.verify.passed):
        out = derive_one(job, result, out)
    return out, result


def export_one(
    job: ExportJob, fmt: str, verify: bool, echo_err: Callable[[str], None]
) -> tuple[Exported, ExportResult]:
    """Export a fresh ``eval()`` copy of the reference to ``fmt``: its bytes and result."""
    # Each exporter gets its own copy: the reference stays untouched, and one
    # exporter's changes to a module cannot leak into the next.
    model = copy.deepcopy(job.reference).eval()
    request = ExportRequest(
        model=model,
        example=job.example,
        meta=partial(job.metadata, fmt),  # (exporter, opset=None) -> the metadata to embed
        opset=job.opset,
        dynamic=job.dynamic,
        input_name=job.input_name,
        output_name=job.output_name,
        echo_err=echo_err,
        source=partial(_source, job, verify, echo_err),
    )
    start = time.perf_counter()
    out = trust.formats(job.registry).format(fmt).export(request)
    seconds = time.perf_counter() - start
    path = job.paths.get(fmt, job.run.path / fmt)
    return out, ExportResult(fmt, path, seconds, out.exporter, out.opset, len(out.data), False)


def _source(job: ExportJob, verify: bool, echo_err: Callable[[str], None], fmt: str) -> bytes:
    """The verified float32 bytes of ``fmt`` in this job (exported, in memory, if it was
    not asked for): what a format converting another one starts from."""
    if fmt not in job.sources:
        out, result = export_one(job, fmt, verify, echo_err)
        if verify:
            verify_before_write(job, result, out, final=False)
            if result.verify is not None and not result.verify.passed:
                raise ExportError(
                    f"the {fmt} file it is converted from failed verification: "
                    f"{result.verify.summary()}",
                    f"tk export RUN --format {fmt} shows why",
                )
        job.sources[fmt] = out.data
    return job.sources[fmt]


def _derives(job: ExportJob, fmt: str) -> bool:
    return fmt == ONNX.name and (job.quantize is not None or job.optimize)


def derive_one(job: ExportJob, result: ExportResult, out: Exported) -> Exported:
    """The optimized and/or quantized file made from verified float32 bytes, verified too."""
    start = time.perf_counter()
    data, result.exporter, result.opset = derive(job, out.data, result.exporter)
    result.seconds += time.perf_counter() - start
    result.source_size, result.size = len(out.data), len(data)
    result.quantization, result.optimized = job.quantize, job.optimize
    derived = Exported(data, result.exporter, result.opset)
    if result.verify is not None:  # the float32 source passed; now the file itself
        verify_before_write(job, result, derived, final=True)
    return derived


def verify_before_write(
    job: ExportJob, result: ExportResult, out: Exported, final: bool = True
) -> None:
    """Verify the exact bytes about to be written, with the metadata they carry.

    ``final=False``: the float32 source of a derived file (held to the default minimum).
    """
    start = time.perf_counter()
    cleared = own_export(out.data, trust.formats(job.registry).format(result.format), out.extra)
    report = verify_loaded(
        cleared.runners(),
        cleared.metadata(),
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
    job: ExportJob,
    result: ExportResult,
    out: Exported,
    echo: Callable[[str], None],
    echo_err: Callable[[str], None] = stderr_line,
) -> None:
    """Write a file that passed (or skipped) verification, atomically; refuse one that failed.

    Its companions (OpenVINO's weights) are written first: a kill in between leaves
    no main file naming a companion that is not there.
    """
    fmt, path, data = result.format, result.path, out.data
    if result.verify is not None and not result.verify.passed:
        echo(result.verify.text())
        echo(f"{fmt}: {path} NOT written: verification failed")
        return
    for suffix, extra in out.extra.items():
        result.companions.append(_write(job, path.with_suffix(suffix), extra, echo_err))
    _write(job, path, data, echo_err)
    result.written = True
    extra = f", opset {result.opset}" if result.opset else ""
    if result.source_size:
        extra += f", {len(data) / result.source_size:.2f}x the float32 file"
    verdict = f"; verify: {result.verify.summary()}" if result.verify else " (not verified)"
    echo(
        f"{fmt}: wrote {path} ({size_text(len(data))}, {result.exporter}{extra}) "
        f"in {result.seconds:.2f} s{verdict}"
    )


def _write(job: ExportJob, path: Path, data: bytes, echo_err: Callable[[str], None]) -> Path:
    """Record, write atomically, list in the run's manifest."""
    digest = runs.sha256_bytes(data)
    _remember(path, digest, echo_err)
    runs.atomic_write_bytes(path, data)
    # The manifest entry is what later refuses a corrupted copy (integrity only).
    integrity.record_export(job.run.path, path, digest)
    return path


def _remember(path: Path, digest: str, echo_err: Callable[[str], None]) -> None:
    """Add the bytes to tk's record of its exports, before they are written.

    That record, not a manifest, is what later lets a TorchScript or pt2 file load
    without ``--trust``. A kill between the two steps leaves a recorded hash of bytes
    tk made and verified, never an unrecorded file. A record that cannot be written
    (a read-only home) costs a warning, not the export.
    """
    try:
        remember(path, digest)
    except OSError as exc:
        echo_err(
            f"tk: warning: cannot record {path} in {store_path()} ({exc.strerror}): "
            "loading it will need --trust if it is TorchScript or pt2"
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
