"""The steps of the conformance check: load, take the input, train, export, verify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.errors import one_line
from toolkit.formats import FORMATS
from toolkit.registry import ModelSpec, Registry
from toolkit.testing.report import Check

__all__ = ["FORMATS"]


def pick_dataset(spec: ModelSpec, registry: Registry, own: list[str]) -> str | None:
    if spec.default_dataset:
        return spec.default_dataset  # train() reports it if it does not exist
    # No default: the plugin's own datasets first, then the built-ins.
    for name in [*own, *sorted(set(registry.datasets) - set(own))]:
        d = registry.datasets[name]
        if d.inferred:
            continue  # needs the user's files (a CSV, a folder)
        task_fits = spec.task is None or d.target == spec.task
        # A model that sizes itself takes any shape; a fixed one, its own.
        if task_fits and (spec.input is None or tuple(d.feature_shape) == spec.input.shape):
            return name
    return None


def check_dataset(registry: Registry, name: str) -> Check:
    from toolkit.data import Split, prepare

    spec = registry.dataset(name)
    try:
        data = prepare(spec, spec.load(**spec.resolve_params({})))
    except Exception as exc:
        return Check("dataset", name, "load", False, one_line(exc, hint=True))
    sizes = ", ".join(
        f"{split} {len(value)} rows" + ("" if isinstance(value, Split) else " (Dataset)")
        for split, value in data.splits.items()
    )
    shape = "x".join(map(str, data.spec.feature_shape or ()))
    return Check("dataset", name, "load", True, f"{sizes}; features {shape}")


def check_input(spec: ModelSpec) -> Check:
    """Build the model and run it on random inputs of its declared shape (two batch sizes).

    Export uses the declared input spec to make its example inputs, so a model that
    cannot take it fails here with a clear message, before any training.
    """
    import torch

    from toolkit.models import build_model

    if spec.input is None:
        return Check("model", spec.name, "input", True, "sized from its dataset when trained")
    shape = tuple(spec.input.shape)
    try:
        model = build_model(spec, spec.resolve_params({}), seed=0).eval()
    except Exception as exc:
        return Check("model", spec.name, "build", False, one_line(exc, hint=True))
    outs = {}
    for batch in (1, 3):
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
        try:
            with torch.no_grad():
                out = model(x)
        except Exception as exc:
            return Check(
                "model",
                spec.name,
                "input",
                False,
                f"cannot take its declared input of shape (batch, "
                f"{', '.join(map(str, shape))}): {one_line(exc, hint=True)}",
            )
        if not isinstance(out, torch.Tensor) or out.ndim == 0 or out.shape[0] != batch:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            return Check(
                "model",
                spec.name,
                "input",
                False,
                f"for a batch of {batch} it returned {got}; expected a tensor with {batch} rows",
            )
        outs[batch] = tuple(out.shape[1:])
    if outs[1] != outs[3]:
        return Check(
            "model", spec.name, "input", False, f"output shape depends on the batch: {outs}"
        )
    dims = "x".join(map(str, shape))
    out_dims = f"(batch, {'x'.join(map(str, outs[1]))})" if outs[1] else "(batch,)"
    return Check("model", spec.name, "input", True, f"(batch, {dims}) -> {out_dims}")


def check_training(
    registry: Registry, spec: ModelSpec, dataset: str, epochs: int, runs_dir: Path
) -> tuple[Check, Path | None]:
    from toolkit.config import TrainConfig
    from toolkit.train import train

    out = runs_dir / spec.name
    config = TrainConfig(
        model=spec.name,
        dataset=dataset,
        epochs=epochs,
        device="cpu",  # the check must pass where the plugin's users run CI: no GPU
        runs_dir=str(runs_dir),
        out=str(out),
        overwrite=True,
        quiet=True,
    )
    try:
        result = train(config, registry=registry)
    except Exception as exc:
        return Check("model", spec.name, "train", False, one_line(exc, hint=True)), None
    figure = task_figure(result.summary, result.history.last)
    detail = f"{epochs} epochs on {dataset} in {result.history.seconds:.2f} s ({figure})"
    return Check("model", spec.name, "train", True, detail), result.run_dir


def task_figure(summary: dict[str, Any], last: dict[str, float]) -> str:
    """The task's own metric on the test split: ``test accuracy 97.5%`` or ``test MAE 0.12``.

    The summary's ``test`` entry (the selected weights, evaluated once) names the
    task's metric; the epoch rows key it by split (``val_accuracy`` when the dataset
    has a validation split), so the row is read for whichever split it holds.
    """
    found = [("test", summary.get("test") or {}, "")]
    found += [(split, last, f"{split}_") for split in ("test", "val")]
    for split, values, prefix in found:
        if f"{prefix}accuracy" in values:
            return f"{split} accuracy {100 * values[f'{prefix}accuracy']:.1f}%"
        if f"{prefix}mae" in values:
            return f"{split} MAE {values[f'{prefix}mae']:.4g}"
    return "no test metric"


def check_exports(
    registry: Registry, name: str, run_dir: Path, runs_dir: Path, formats: tuple[str, ...]
) -> list[Check]:
    """Export the trained run to each format and verify each file against the eager model."""
    if not formats:
        return []
    from toolkit.export import export_run
    from toolkit.verify import verify_file

    checks = []
    for fmt in formats:
        try:
            results = export_run(
                run=str(run_dir),
                formats=(fmt,),
                runs_dir=str(runs_dir),
                registry=registry,
                overwrite=True,
                # Verified below from the written file, as `tk verify FILE` does it.
                verify=False,
                echo=quiet,
                echo_err=quiet,
            )
        except Exception as exc:
            checks.append(Check("model", name, f"export {fmt}", False, one_line(exc, hint=True)))
            continue
        for result in results:
            path = Path(result.path)
            checks.append(Check("model", name, f"export {fmt}", True, path.name))
            try:
                report = verify_file(
                    path, run=str(run_dir), runs_dir=str(runs_dir), registry=registry
                )
            except Exception as exc:
                checks.append(
                    Check("model", name, f"verify {fmt}", False, one_line(exc, hint=True))
                )
                continue
            checks.append(Check("model", name, f"verify {fmt}", report.passed, report.summary()))
    return checks


def quiet(line: str) -> None:
    """Export's progress lines are replaced by the report's own."""
