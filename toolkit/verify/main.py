"""The entry points: verify a file on disk, or runners already loaded from bytes.

``verify_file`` passes a file through the gate (``toolkit.trust``), finds its run, loads
the file and hands over to ``verify_loaded``, which ``tk export`` also calls on
the bytes it is about to write.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import runs
from toolkit.errors import UsageError, check_number, one_line
from toolkit.formats import Runner, quantization, static_batch
from toolkit.formats.runtime import eager_runner
from toolkit.trust import clear
from toolkit.verify.compare import DEFAULT_ATOL, DEFAULT_RTOL, run_checks
from toolkit.verify.heldout import (
    HeldOut,
    TaskReport,
    check_heldout,
    default_min_agreement,
    load_heldout,
)
from toolkit.verify.reference import NAME as FLOAT64
from toolkit.verify.reference import float64_runner
from toolkit.verify.report import VerifyReport

if TYPE_CHECKING:
    from toolkit.registry import Registry

DEFAULT_BATCH_SIZES = (1, 7, 64)
NOT_JUDGED = "element-wise differences are shown, not judged; held-out agreement decides"
SWEEP_ROWS = 1024  # held-out rows the batch sweep draws its "held-out" case from


def resolve_tolerance(
    meta: dict[str, Any],
    registry: Registry | None,
    atol: float | None,
    rtol: float | None,
    run_config: dict[str, Any] | None = None,
    notes: list[str] | None = None,
) -> tuple[float, float]:
    """Explicit values, else the tolerance recorded with the run, else 1e-5 / 1e-4.

    "Recorded" is the run's ``config.json`` (what it was trained and judged with),
    else the file's metadata, else -- for a run that recorded none -- the model
    spec's. A plugin that changed its tolerance since the run is not applied
    silently: :func:`tolerance_change` names both, in ``notes``.
    """
    changed = tolerance_change(meta, registry, run_config)
    if changed and notes is not None and (atol is None or rtol is None):
        notes.append(changed)
    declared = recorded_tolerance(meta, registry, run_config)
    a = atol if atol is not None else float(declared.get("atol", DEFAULT_ATOL))
    r = rtol if rtol is not None else float(declared.get("rtol", DEFAULT_RTOL))
    if a < 0 or r < 0:
        raise UsageError(f"tolerances must not be negative (atol {a}, rtol {r})")
    return a, r


def recorded_tolerance(
    meta: dict[str, Any], registry: Registry | None, run_config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``{"atol", "rtol"}`` as the run recorded them (config, else file), else the spec's."""
    for source in (run_config or {}, meta):
        if source.get("tolerance"):
            return dict(source["tolerance"])
    return current_tolerance(meta, registry, run_config) or {}


def current_tolerance(
    meta: dict[str, Any], registry: Registry | None, run_config: dict[str, Any] | None = None
) -> dict[str, float] | None:
    """The installed model plugin's tolerance now (None: the model is not installed)."""
    name = (run_config or {}).get("model") or (meta.get("model") or {}).get("name")
    if registry is None or name not in registry.models:
        return None
    tol = registry.models[name].tolerance
    return {"atol": tol.atol, "rtol": tol.rtol}


def tolerance_change(
    meta: dict[str, Any], registry: Registry | None, run_config: dict[str, Any] | None = None
) -> str | None:
    """One line when the plugin's tolerance differs from the run's recorded one, else None."""
    now = current_tolerance(meta, registry, run_config)
    then = recorded_tolerance(meta, registry, run_config)
    if not now or not then:
        return None
    pair = (float(then.get("atol", DEFAULT_ATOL)), float(then.get("rtol", DEFAULT_RTOL)))
    if pair == (now["atol"], now["rtol"]):
        return None
    name = (run_config or {}).get("model") or (meta.get("model") or {}).get("name")
    return (
        f"model {name}'s plugin now declares atol {now['atol']:g} rtol {now['rtol']:g}; "
        f"the run recorded atol {pair[0]:g} rtol {pair[1]:g}, which is the one applied"
    )


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
    from toolkit.models import LAST_WEIGHTS

    weights = found.path / (LAST_WEIGHTS if meta.get("weights") == "last" else runs.WEIGHTS)
    if want and weights.is_file():
        have = runs.sha256_file(weights)
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
    min_agreement: float | None = None,
) -> VerifyReport:
    """Run ``path`` in its runtime and compare it with the eager model of its run.

    :param run: the run directory; default: the one named in the file's metadata.
    :param batch_sizes: the sweep; ``None`` or the default on a file exported with
        ``--static-batch N`` checks batch N only.
    :param atol: absolute tolerance (default: the one recorded with the run, else 1e-5).
    :param rtol: relative tolerance (default: the one recorded with the run, else 1e-4).
    :param trust: load a TorchScript or torch.export file that this tk installation
        did not export (loading it runs code).
    :param min_agreement: the least agreement with the eager model over the whole
        held-out split (default 1.0, or 0.99 for a quantized or float16 file).
    :returns: the report; ``report.passed`` / ``report.status`` / ``report.exit_code``.
    :raises ExportError: the file cannot be read or loaded (exit 3).
    :raises UsageError: no tk metadata, run not found, or different weights (exit 2).
    """
    path = runs.guard_path(path, runs_dir)  # runs/latest/model.onnx stays in the runs root
    check_min_agreement(min_agreement)
    for label, value in (("--atol", atol), ("--rtol", rtol)):
        if value is not None:
            check_number(label, value, 0)
    if not path.is_file():
        raise UsageError(f"{path} not found", "tk export")
    # The one gate: integrity, format, who may run code.
    cleared = clear(path, trust=trust, registry=registry)
    meta = cleared.metadata()
    if not meta:
        raise UsageError(
            f"{path} carries no tk metadata, so there is no eager model to compare with",
            "export it with tk export",
        )
    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()
    found = find_run(path, meta, run, runs_dir)
    runners = cleared.runners()
    return verify_loaded(
        runners,
        meta,
        found,
        path=str(path),
        batch_sizes=batch_sizes,
        atol=atol,
        rtol=rtol,
        registry=registry,
        min_agreement=min_agreement,
    )


def check_min_agreement(value: float | None) -> None:
    """A UsageError unless ``value`` is None or a fraction in [0, 1]."""
    if value is not None:
        check_number("--min-agreement", value, 0.0, high=1.0, hint="--min-agreement 0.99")


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
    min_agreement: float | None = None,
) -> VerifyReport:
    """The sweep and the held-out check for already-loaded runners (``tk export`` too).

    :param model: the eager reference (rebuilt from ``run`` when None).
    :param heldout: a :class:`HeldOut` split, ``"load"`` (from the run's dataset), or
        None (random and out-of-distribution inputs only; no held-out check).
    """
    from toolkit.models import rebuild_model

    start, notes = time.perf_counter(), []
    a, r = resolve_tolerance(meta, registry, atol, rtol, run.config, notes)
    sizes = _sweep_sizes(meta, batch_sizes, notes)
    if model is None:  # from the weights the file was made from (best, or last)
        model = rebuild_model(run, registry, meta.get("weights", "best"))
    scheme = quantization(meta)
    if isinstance(heldout, str):
        heldout = _load_heldout(run, registry, notes, path if scheme else None)
    if scheme:
        notes.append(f"{scheme} file: {NOT_JUDGED}")
    task, reference = meta.get("task") or run.config.get("task", "regression"), eager_runner(model)
    checks = run_checks(
        runners,
        reference,
        input_shape=[int(d) for d in meta["input"]["shape"][1:]],
        task=task,
        batch_sizes=sizes,
        atol=a,
        rtol=r,
        heldout=heldout.x[:SWEEP_ROWS] if isinstance(heldout, HeldOut) else heldout,
        output_names=[meta["output"]["name"]] if meta.get("output") else [],
        exact=scheme is None,
        reference64=float64_runner(model),  # re-judges failing out-of-distribution checks
        notes=notes,
    )
    _note_float64(checks, notes)
    return VerifyReport(
        *(path, meta.get("format", "?"), str(run.path), task, a, r, sizes),
        [x.name for x in runners],
        checks,
        notes,
        heldout=_heldout_reports(runners, model, heldout, meta, task, min_agreement),
        quantization=scheme,
        seconds=time.perf_counter() - start,
    )


def _note_float64(checks: Sequence[Any], notes: list[str]) -> None:
    """Say how many checks a float64 copy of the model judged, and why (none: nothing)."""
    n = sum(c.reference == FLOAT64 for c in checks)
    if n:
        notes.append(
            f"{n} out-of-distribution checks failed against float32 eager and were judged "
            "against a float64 copy of the model instead (float32 eager's own rounding)"
        )


def _heldout_reports(
    runners: Sequence[Runner],
    model: Any,
    heldout: Any,
    meta: dict[str, Any],
    task: str,
    min_agreement: float | None,
) -> list[TaskReport]:
    """Each runner over the whole held-out split against the eager outputs (none: [])."""
    if not isinstance(heldout, HeldOut) or not len(heldout):
        return []
    minimum = default_min_agreement(meta) if min_agreement is None else min_agreement
    static = static_batch(meta)
    eager = heldout.eager_outputs(model, static)
    return [check_heldout(x, eager, heldout, task, minimum, static) for x in runners]


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


def _load_heldout(
    run: runs.Run, registry: Registry, notes: list[str], quantized: str | None = None
) -> HeldOut | None:
    """The run's whole held-out split, or None (and a note) when its data is gone.

    A quantized file is judged on that split, so without it there is no verdict:
    ``quantized`` (its path) turns the note into a UsageError.
    """
    try:
        return load_heldout(run.config, registry)
    except Exception as exc:  # data gone (e.g. a --data-dir that moved): say so
        why = f"held-out samples unavailable ({one_line(exc, 160)})"
        if quantized:
            raise UsageError(
                f"{quantized} is quantized and is judged on its run's held-out split: {why}",
                "--run a run whose dataset loads",
            ) from None
        notes.append(why + ": random and out-of-distribution inputs only")
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
