"""Everything decided before the first exporter runs: formats, paths, the reference model.

Bad options, an unfinished run and existing files are refused here, before any
work; then the eager reference is rebuilt once and every format is exported
from (a copy of) it, on the same example input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import runs
from toolkit.errors import UsageError, one_line
from toolkit.export.metadata import build_metadata
from toolkit.formats import FILE_NAMES, FORMATS
from toolkit.tasks import get_task

if TYPE_CHECKING:
    import numpy as np
    import torch

    from toolkit.registry import Registry

# Exports trace with this batch unless --static-batch: at least 2, because exporters
# specialise a dimension of size 1 (or 0) to a constant.
EXAMPLE_BATCH = 2


def parse_formats(formats: str | Sequence[str]) -> list[str]:
    """``"all"``, one name, a comma list or a sequence -> unique format names in order."""
    items = [formats] if isinstance(formats, str) else list(formats)
    names: list[str] = []
    for item in items:
        for name in str(item).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name in ("ts", "jit"):
                name = "torchscript"
            chosen = list(FORMATS) if name == "all" else [name]
            for fmt in chosen:
                if fmt not in FORMATS:
                    raise UsageError(
                        f"unknown export format {name!r}; choose from {', '.join(FORMATS)} or all",
                        "--format onnx",
                    )
                if fmt not in names:
                    names.append(fmt)
    if not names:
        raise UsageError("no export format given", "--format onnx")
    return names


def plan_paths(
    run_dir: Path, formats: Sequence[str], out: str | Path | None, overwrite: bool
) -> dict[str, Path]:
    """Where each format goes; an existing file is refused unless ``overwrite``.

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
    paths = {fmt: single or base / FILE_NAMES[fmt] for fmt in formats}
    for path in paths.values():
        if path.exists() and not overwrite:
            raise UsageError(f"{path} already exists", "--overwrite to replace it")
        if path.exists() and not path.is_file():
            raise UsageError(f"{path} exists and is not a file", "another --out")
    return paths


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
    heldout: np.ndarray | None = None  # held-out samples for verification
    heldout_note: str | None = None  # why there are none, when verification wanted them

    @property
    def dynamic(self) -> bool:
        """True unless the export is for one fixed batch size (``--static-batch``)."""
        return self.static_batch is None

    def metadata(self, fmt: str, exporter: str, version: int | None = None) -> dict[str, Any]:
        """The metadata a ``fmt`` file made by ``exporter`` carries (opset for ONNX only)."""
        return build_metadata(
            self.run,
            self.registry,
            fmt,
            exporter,
            version if fmt == "onnx" else None,
            self.output_shape,
            self.static_batch,
            self.weights_sha256,
        )


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
) -> ExportJob:
    """Check the options, plan the paths, rebuild the reference and its example input.

    Raises UsageError before any work for a bad option, an unfinished run or a file
    that exists; held-out samples are loaded only when ``verify``.
    """
    fmts = parse_formats(formats)
    if static_batch is not None and static_batch < 1:
        raise UsageError(f"--static-batch must be at least 1, got {static_batch}")
    if opset is not None and opset < 7:
        raise UsageError(f"--opset {opset} is too old; ONNX exporters need 7 or newer")
    the_run = runs.open_run(run, runs_dir)
    if not the_run.weights.is_file():
        raise UsageError(f"{the_run.path} has no {runs.WEIGHTS} (the run did not finish)")
    paths = plan_paths(the_run.path, fmts, out, overwrite)
    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()
    job = _rebuild(the_run, registry, fmts, paths, opset, static_batch)
    if verify:
        job.heldout, job.heldout_note = _heldout(the_run, registry)
    return job


def _rebuild(
    run: runs.Run,
    registry: Registry,
    formats: list[str],
    paths: dict[str, Path],
    opset: int | None,
    static_batch: int | None,
) -> ExportJob:
    """The reference model, a seeded example input, and the shape of what it returns."""
    import torch

    from toolkit.models import rebuild_model

    weights_sha256 = runs.sha256_file(run.weights)
    reference = rebuild_model(run, registry)
    spec = registry.model(run.config["model"])
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
        reference=reference,
        example=example,
        input_name=spec.input.name,
        output_name=get_task(spec.task).output_name if single_output else None,
        output_shape=list(first.shape[1:]),
    )


def _heldout(run: runs.Run, registry: Registry) -> tuple[Any, str | None]:
    """(held-out samples, None), or (None, why) when the run's data cannot be loaded."""
    from toolkit.verify import heldout_features

    try:
        return heldout_features(run.config, registry), None
    except Exception as exc:
        return None, f"held-out samples unavailable ({one_line(exc, 160)})"
