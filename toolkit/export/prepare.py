"""Everything decided before the first exporter runs: formats, paths, the reference model.

Bad options, an unfinished run and existing files are refused here, before any
work; then the eager reference is rebuilt once and every format is exported
from (a copy of) it, on the same example input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import runs, trust
from toolkit.errors import UsageError, check_number, one_line
from toolkit.export.metadata import build_metadata
from toolkit.formats import QUANTIZE_SCHEMES, ExportFormat, export_file_name
from toolkit.formats.onnx import ONNX
from toolkit.tasks import get_task

if TYPE_CHECKING:
    import numpy as np
    import torch

    from toolkit.registry import Registry
    from toolkit.verify import HeldOut

# Exports trace with this batch unless --static-batch: at least 2, because exporters
# specialise a dimension of size 1 (or 0) to a constant.
EXAMPLE_BATCH = 2
CALIBRATION_ROWS = 256  # training rows int8-static calibrates on, by default


@dataclass
class Derived:
    """What to make of the verified float32 ONNX file (``tk export --quantize/--optimize``)."""

    quantize: str | None = None  # a QUANTIZE_SCHEMES name
    optimize: bool = False
    calibration_rows: int = CALIBRATION_ROWS
    calibration: np.ndarray | None = None  # rows given by the caller, instead of training rows
    min_agreement: float | None = None  # held-out agreement the written file must reach

    def check(self, formats: Sequence[str], verify: bool) -> None:
        """UsageError for a scheme, format or calibration that cannot work (before any work)."""
        from toolkit.verify.main import check_min_agreement

        check_min_agreement(self.min_agreement)
        check_number("--calibration-rows", self.calibration_rows, 0)
        if self.optimize and "onnx" not in formats:
            raise UsageError("--optimize works on ONNX files", "--format onnx --optimize")
        if self.quantize is None:
            return
        if self.quantize not in QUANTIZE_SCHEMES:
            raise UsageError(
                f"unknown quantization scheme {self.quantize!r}; choose from "
                f"{', '.join(QUANTIZE_SCHEMES)}",
                "--quantize int8-dynamic",
            )
        if list(formats) != ["onnx"]:
            others = ", ".join(f for f in formats if f != "onnx") or "none"
            raise UsageError(
                f"--quantize makes ONNX files only, not {others}", "--format onnx --quantize ..."
            )
        if not verify:
            raise UsageError(
                "a quantized file is always checked on the held-out split; --no-verify "
                "cannot be combined with --quantize",
                "drop --no-verify",
            )
        static = self.quantize == "int8-static" and self.calibration is None
        if static and self.calibration_rows < 1:
            raise UsageError(
                f"int8-static needs calibration data, got --calibration-rows "
                f"{self.calibration_rows}",
                "--calibration-rows 256, or --quantize int8-dynamic",
            )
        if self.calibration is not None and not len(self.calibration):
            raise UsageError("the calibration data has no rows", "--calibration-rows 256")


def parse_formats(formats: str | Sequence[str], registry: Registry | None = None) -> list[str]:
    """``"all"`` (every installed format that joins it), one name or alias, a comma list
    or a sequence -> unique format names in order."""
    table = trust.formats(registry)
    items = [formats] if isinstance(formats, str) else list(formats)
    names: list[str] = []
    for item in items:
        for name in str(item).split(","):
            name = name.strip().lower()
            if not name:
                continue
            every = [f.name for f in table.formats.values() if f.in_all]
            for fmt in every if name == "all" else [table.format(name).name]:
                if fmt not in names:
                    names.append(fmt)
    if not names:
        raise UsageError("no export format given", "--format onnx")
    return names


def plan_paths(
    run_dir: Path,
    formats: Sequence[str],
    out: str | Path | None,
    overwrite: bool,
    derived: Derived | None = None,
) -> dict[str, Path]:
    """Where each format goes; refused when every one of them exists (unless ``overwrite``).

    ``out`` is a file for one format, a directory for several (or when it is one, or
    a new path without a suffix).
    """
    if out is None:
        base, single = run_dir, None
    else:
        out = Path(out)
        # A directory: several formats, an existing directory, a trailing slash, or a
        # new path without a suffix (exported files always have one).
        as_dir = out.is_dir() or str(out).endswith(("/", "\\")) or not (out.suffix or out.exists())
        if len(formats) > 1 or as_dir:
            base, single = out, None
        else:
            base, single = out.parent, out
    d = derived or Derived()
    table = trust.formats()
    paths = {fmt: single or base / _file_name(table.format(fmt), d) for fmt in formats}
    for fmt, path in paths.items():
        if path.exists() and not path.is_file():
            raise UsageError(f"{path} exists and is not a file", "another --out")
        for companion in (path.with_suffix(s) for s in table.format(fmt).companions):
            if companion.exists() and not path.exists():  # not the file's own: never replaced
                raise UsageError(f"{companion} exists, and {path} would need it", "another --out")
        if overwrite and path.exists() and not _tk_export(path):
            raise UsageError(
                f"refusing to replace {path}: it is not a file tk exported (no tk metadata)",
                "another --out (--overwrite replaces only tk's own exports)",
            )
    existing = [p for p in paths.values() if p.exists()]
    if existing and len(existing) == len(paths) and not overwrite:
        # Nothing left to write: every file asked for is there already.
        names = ", ".join(map(str, existing))
        verb = "already exists" if len(existing) == 1 else "already exist"
        raise UsageError(
            f"{names} {verb}", "--overwrite to replace " + ("it" if len(existing) == 1 else "them")
        )
    return paths


def _file_name(fmt: ExportFormat, d: Derived) -> str:
    """The default name; ``--quantize`` and ``--optimize`` tag the ONNX file they derive."""
    return export_file_name(fmt, d.quantize, d.optimize) if fmt is ONNX else export_file_name(fmt)


def split_existing(
    paths: dict[str, Path], overwrite: bool
) -> tuple[dict[str, Path], dict[str, Path]]:
    """(the formats to export, the ones skipped because their file exists): without
    ``overwrite``, an earlier export's files stay and only the missing ones are made."""
    if overwrite:
        return paths, {}
    todo = {fmt: p for fmt, p in paths.items() if not p.exists()}
    return todo, {fmt: p for fmt, p in paths.items() if fmt not in todo}


def _tk_export(path: Path) -> bool:
    """True for a file carrying tk's export metadata: the only kind --overwrite replaces."""
    try:
        return bool(trust.read_metadata(path))
    except Exception:  # unreadable as any export format: not a file tk wrote
        return False


@dataclass
class ExportJob:
    """One ``export_run`` call, prepared: the run, where each format goes, the reference."""

    run: runs.Run
    registry: Registry
    formats: list[str]
    paths: dict[str, Path]
    opset: int | None
    static_batch: int | None
    weights_sha256: str  # before any export: the weights must not change under us
    reference: torch.nn.Module  # the eager model, in eval(); exporters get copies
    example: torch.Tensor
    input_name: str
    output_name: str | None  # None when forward() returns several outputs
    output_shape: list[int]
    heldout: HeldOut | None = None  # the held-out split, for verification
    heldout_note: str | None = None  # why there is none, when verification wanted it
    derived: Derived | None = None
    calibration: np.ndarray | None = None  # int8-static's calibration rows
    calibration_source: str | None = None
    weights: str = "best"  # best (model.safetensors) or last (last.safetensors)
    skipped: dict[str, Path] = field(default_factory=dict)  # formats whose file exists
    sources: dict[str, bytes] = field(default_factory=dict)  # verified float32 files, by format

    @property
    def quantize(self) -> str | None:
        """The quantization scheme of the ONNX file, if any."""
        return self.derived.quantize if self.derived else None

    @property
    def optimize(self) -> bool:
        """True when the ONNX file is graph-optimized."""
        return bool(self.derived and self.derived.optimize)

    @property
    def dynamic(self) -> bool:
        """True unless the export is for one fixed batch size (``--static-batch``)."""
        return self.static_batch is None

    def metadata(self, fmt: str, exporter: str, version: int | None = None) -> dict[str, Any]:
        """The metadata a ``fmt`` file made by ``exporter`` carries (opset for ONNX only)."""
        meta = build_metadata(
            self.run,
            self.registry,
            fmt,
            exporter,
            version,
            self.output_shape,
            self.static_batch,
            self.weights_sha256,
        )
        meta["weights"] = self.weights
        return meta


def check_options(
    formats: list[str], derived: Derived, verify: bool, static_batch: int | None, opset: int | None
) -> None:
    """Every export option checked before any run is looked up (a bad option is the
    error, whatever the run reference)."""
    derived.check(formats, verify)
    if static_batch is not None and static_batch < 1:
        raise UsageError(f"--static-batch must be at least 1, got {static_batch}")
    if opset is not None and opset < 7:
        raise UsageError(f"--opset {opset} is too old; ONNX exporters need 7 or newer")


def prepare(
    run: str | Path | None,
    formats: str | Sequence[str],
    *,
    out: str | Path | None,
    opset: int | None,
    overwrite: bool,
    static_batch: int | None,
    verify: bool,
    runs_dir: str | Path,
    registry: Registry | None,
    derived: Derived | None = None,
    weights: str = "best",
) -> ExportJob:
    """Check the options, plan the paths, rebuild the reference and its example input.

    Raises UsageError before any work for a bad option, an unfinished run or a file
    that exists; the held-out split is loaded only when ``verify``, and a quantized
    file (which is judged on it) is refused when it cannot be.
    """
    fmts = parse_formats(formats)
    derived = derived or Derived()
    check_options(fmts, derived, verify, static_batch, opset)
    from toolkit.models import weights_path

    the_run = runs.open_run(run, runs_dir)
    weights_path(the_run, weights)  # refused now, before any work, when it is missing
    paths, skipped = split_existing(
        plan_paths(the_run.path, fmts, out, overwrite, derived), overwrite
    )
    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()
    job = _rebuild(the_run, registry, list(paths), paths, opset, static_batch, weights)
    job.derived = derived
    job.skipped = skipped
    if verify:
        _load_data(job)
    return job


def _rebuild(
    run: runs.Run,
    registry: Registry,
    formats: list[str],
    paths: dict[str, Path],
    opset: int | None,
    static_batch: int | None,
    weights: str = "best",
) -> ExportJob:
    """The reference model, a seeded example input, and the shape of what it returns."""
    import torch

    from toolkit.models import rebuild_model, run_model_spec, weights_path

    weights_sha256 = runs.sha256_file(weights_path(run, weights))
    reference = rebuild_model(run, registry, weights)
    spec = run_model_spec(run.config, registry)
    batch = static_batch or EXAMPLE_BATCH
    example = torch.randn((batch, *spec.input.shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sample_out = reference(example)
    single_output = isinstance(sample_out, torch.Tensor)
    first = sample_out if single_output else sample_out[0]
    return ExportJob(
        run=run,
        registry=registry,
        formats=formats,
        paths=paths,
        opset=opset,
        static_batch=static_batch,
        weights_sha256=weights_sha256,
        weights=weights,
        reference=reference,
        example=example,
        input_name=spec.input.name,
        output_name=get_task(spec.task).output_name if single_output else None,
        output_shape=list(first.shape[1:]),
    )


def _load_data(job: ExportJob) -> None:
    """The held-out split (and int8-static's calibration rows) from the run's dataset.

    A float32 export goes on without data (random and out-of-distribution inputs
    only, and a note); a quantized one is a UsageError.
    """
    from toolkit.models import run_data
    from toolkit.verify import heldout_of

    d = job.derived or Derived()
    try:
        data = run_data(job.run.config, job.registry)
        job.heldout = heldout_of(data)
        if d.quantize == "int8-static":
            job.calibration, job.calibration_source = _calibration(job, data, d)
    except UsageError:
        raise
    except Exception as exc:
        why = f"held-out samples unavailable ({one_line(exc, 160)})"
        if d.quantize:
            raise UsageError(
                f"--quantize {d.quantize} needs the run's dataset (held-out rows to check "
                f"the file{', training rows to calibrate' if d.calibration is None else ''}): "
                f"{why}",
                "make the run's dataset loadable (e.g. its data directory)",
            ) from None
        job.heldout_note = why


def _calibration(job: ExportJob, data: Any, d: Derived) -> tuple[np.ndarray, str]:
    """The caller's calibration rows, or ``calibration_rows`` spread over the training split."""
    import numpy as np
    import torch

    from toolkit.data import Split

    shape = tuple(job.example.shape[1:])
    if d.calibration is not None:
        rows = np.ascontiguousarray(d.calibration, dtype=np.float32)
        if tuple(rows.shape[1:]) != shape:
            raise UsageError(
                f"calibration rows have shape {tuple(rows.shape)}; the model takes N x "
                + "x".join(map(str, shape))
            )
        return rows, "given"
    train = data.train
    n = len(train)
    # Evenly spaced, not the first N: a split sorted by class would calibrate on one class.
    idx = np.unique(np.linspace(0, n - 1, min(d.calibration_rows, n)).astype(np.int64))
    if isinstance(train, Split):
        x = train.x[torch.from_numpy(idx)]
    else:
        x = torch.stack([train[int(i)][0] for i in idx])
    where = f"{data.spec.splits[0]} split, {len(idx)} rows evenly spaced"
    return data.features(x).cpu().numpy(), where
