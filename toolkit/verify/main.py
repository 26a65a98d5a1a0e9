"""The entry points: verify a file on disk, or runners already loaded from bytes.

``verify_file`` finds the run a file came from, passes the integrity gate, loads
the file and hands over to ``verify_loaded``, which ``tk export`` also calls on
the bytes it is about to write.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import integrity, runs
from toolkit.errors import UsageError, one_line
from toolkit.formats import read_metadata, static_batch
from toolkit.verify.compare import DEFAULT_ATOL, DEFAULT_RTOL, run_checks
from toolkit.verify.inputs import heldout_features
from toolkit.verify.report import VerifyReport
from toolkit.verify.runtimes import Runner, eager_runner, load_runners

if TYPE_CHECKING:
    from toolkit.registry import Registry

DEFAULT_BATCH_SIZES = (1, 7, 64)


def resolve_tolerance(
    meta: dict[str, Any], registry: Registry | None, atol: float | None, rtol: float | None
) -> tuple[float, float]:
    """Explicit values, else the model spec's, else the file's, else 1e-5 / 1e-4."""
    declared: dict[str, Any] = dict(meta.get("tolerance") or {})
    name = (meta.get("model") or {}).get("name")
    if registry is not None and name in registry.models:
        tol = registry.models[name].tolerance
        declared = {"atol": tol.atol, "rtol": tol.rtol}
    a = atol if atol is not None else float(declared.get("atol", DEFAULT_ATOL))
    r = rtol if rtol is not None else float(declared.get("rtol", DEFAULT_RTOL))
    if a < 0 or r < 0:
        raise UsageError(f"tolerances must not be negative (atol {a}, rtol {r})")
    return a, r


def find_run(path: Path | None, meta: dict[str, Any], run: Any, runs_dir: Any) -> runs.Run:
    """The run a file was exported from: ``run`` if given, else the one its metadata names.

    Falls back to the file's own directory (the default export location) when the
    recorded path moved. The run's weights must be the ones the file was made from.
    """
    if run is not None:
        found = runs.open_run(run, runs_dir)
    else:
        candidates = [meta.get("run")]
        if path is not None:
            candidates.append(str(path.resolve().parent))
        found = None
        for cand in candidates:
            if cand and (Path(cand) / runs.CONFIG).is_file():
                found = runs.open_run(cand, runs_dir)
                break
        if found is None:
            raise UsageError(
                f"cannot find the run this file was exported from ({meta.get('run')})",
                "--run RUN_DIR",
            )
    want = meta.get("weights_sha256")
    if want and found.weights.is_file():
        have = runs.sha256_file(found.weights)
        if have != want:
            raise UsageError(
                f"{found.path} holds different weights (sha256 {have[:12]}) than the ones "
                f"this file was exported from ({want[:12]})",
                "--run the original run, or tk export again",
            )
    return found


def verify_file(
    path: str | Path,
    *,
    run: Any = None,
    batch_sizes: Sequence[int] | None = DEFAULT_BATCH_SIZES,
    atol: float | None = None,
    rtol: float | None = None,
    runs_dir: str | Path = "runs",
    registry: Registry | None = None,
    trust: bool = False,
) -> VerifyReport:
    """Run ``path`` in its runtime and compare it with the eager model of its run.

    :param run: the run directory; default: the one named in the file's metadata.
    :param batch_sizes: the sweep; ``None`` or the default on a file exported with
        ``--static-batch N`` checks batch N only.
    :param atol: absolute tolerance (default: the model spec's, else 1e-5).
    :param rtol: relative tolerance (default: the model spec's, else 1e-4).
    :returns: the report; ``report.passed`` / ``report.status`` / ``report.exit_code``.
    :raises ExportError: the file cannot be read or loaded (exit 3).
    :raises UsageError: no tk metadata, run not found, or different weights (exit 2).
    :param trust: load a TorchScript file that no tk manifest vouches for.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} not found", "tk export")
    integrity.check_file(path)  # a file its run's manifest lists must match it
    meta = read_metadata(path)
    if not meta:
        raise UsageError(
            f"{path} carries no tk metadata, so there is no eager model to compare with",
            "export it with tk export",
        )
    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()
    found = find_run(path, meta, run, runs_dir)
    integrity.check_export(path, meta.get("format", ""), found.path, trust)
    runners = load_runners(path, meta.get("format"))
    return verify_loaded(
        runners,
        meta,
        found,
        path=str(path),
        batch_sizes=batch_sizes,
        atol=atol,
        rtol=rtol,
        registry=registry,
    )


def verify_loaded(
    runners: Sequence[Runner],
    meta: dict[str, Any],
    run: runs.Run,
    *,
    path: str,
    batch_sizes: Sequence[int] | None,
    atol: float | None,
    rtol: float | None,
    registry: Registry,
    model: Any = None,
    heldout: Any = "load",
) -> VerifyReport:
    """The sweep for already-loaded runners (``tk export`` verifies its bytes this way).

    :param model: the eager reference (rebuilt from ``run`` when None).
    :param heldout: held-out samples, or ``"load"`` to read them from the run's dataset.
    """
    from toolkit.models import rebuild_model

    start = time.perf_counter()
    a, r = resolve_tolerance(meta, registry, atol, rtol)
    notes: list[str] = []
    sizes = _sweep_sizes(meta, batch_sizes, notes)
    if model is None:
        model = rebuild_model(run, registry)
    if isinstance(heldout, str):
        heldout = _load_heldout(run, registry, notes)
    task = meta.get("task") or run.config.get("task", "regression")
    checks = run_checks(
        runners,
        eager_runner(model),
        input_shape=[int(d) for d in meta["input"]["shape"][1:]],
        task=task,
        batch_sizes=sizes,
        atol=a,
        rtol=r,
        heldout=heldout,
        output_names=[meta["output"]["name"]] if meta.get("output") else [],
    )
    return VerifyReport(
        path=path,
        format=meta.get("format", "?"),
        run=str(run.path),
        task=task,
        atol=a,
        rtol=r,
        batch_sizes=sizes,
        runtimes=[x.name for x in runners],
        checks=checks,
        notes=notes,
        seconds=time.perf_counter() - start,
    )


def _sweep_sizes(
    meta: dict[str, Any], batch_sizes: Sequence[int] | None, notes: list[str]
) -> list[int]:
    """The batch sizes to check: a static-batch file is checked at its own batch only."""
    static = static_batch(meta)
    if batch_sizes is None or (static and tuple(batch_sizes) == DEFAULT_BATCH_SIZES):
        batch_sizes = (static,) if static else DEFAULT_BATCH_SIZES
        if static:
            notes.append(f"exported with a static batch of {static}: only batch {static} checked")
    sizes = [int(b) for b in batch_sizes]
    if not sizes or any(b < 1 for b in sizes):
        raise UsageError(f"batch sizes must be positive integers, got {sizes}", "1,7,64")
    return sizes


def _load_heldout(run: runs.Run, registry: Registry, notes: list[str]) -> Any:
    """The run's held-out samples, or None (and a note) when its data is gone."""
    try:
        return heldout_features(run.config, registry)
    except Exception as exc:  # data gone (e.g. a --data-dir that moved): say so
        notes.append(
            f"held-out samples unavailable ({one_line(exc, 160)}): "
            "random and out-of-distribution inputs only"
        )
        return None


def parse_batch_sizes(text: str | None) -> list[int] | None:
    """``"1,7,64"`` -> ``[1, 7, 64]``; a bad list is a UsageError naming the item."""
    if text is None:
        return None
    sizes = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            value = int(item)
        except ValueError:
            raise UsageError(f"--batch-sizes: {item!r} is not an integer", "1,7,64") from None
        if value < 1:
            raise UsageError(f"--batch-sizes: {value} is not a positive batch size", "1,7,64")
        sizes.append(value)
    if not sizes:
        raise UsageError("--batch-sizes is empty", "1,7,64")
    return sizes
