"""Run an exported file (or a run's eager model) on user data and say what it means.

``predict(target, input)``: ``target`` is an exported file (ONNX, TorchScript, pt2),
a run directory or ``latest``; the input is read by :mod:`toolkit.predict.reading`,
the outputs turned into labels, probabilities or values by
:mod:`toolkit.predict.meaning`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import runs
from toolkit.errors import UsageError
from toolkit.formats import static_batch
from toolkit.predict.meaning import Prediction, interpret
from toolkit.predict.reading import read_input

if TYPE_CHECKING:
    from toolkit.registry import Registry

__all__ = ["CHUNK", "Prediction", "interpret", "predict", "read_input"]

CHUNK = 4096  # rows per call into the runtime


def _target_meta(
    target: str | Path, runs_dir: str | Path, registry: Registry | None, trust: bool = False
) -> tuple[dict[str, Any], Callable[[], Any], str]:
    """(metadata, a function loading the runner, source) for a file or a run directory."""
    p = Path(target)
    if p.is_file():
        return _file_meta(p, trust)
    return _run_meta(target, runs_dir, registry)


def _file_meta(p: Path, trust: bool) -> tuple[dict[str, Any], Callable[[], Any], str]:
    """An exported file's metadata; its runtime is loaded only once the input is read."""
    from toolkit import integrity
    from toolkit.formats import read_metadata
    from toolkit.verify import load_runners

    integrity.check_file(p)
    meta = read_metadata(p)
    if not meta:
        raise UsageError(
            f"{p} carries no tk metadata (input spec, output meaning)",
            "export it with tk export",
        )
    integrity.check_export(p, meta.get("format", ""), meta.get("run"), trust)
    # Loaded only when called: bad input is reported before any runtime starts.
    return meta, lambda: load_runners(p, meta.get("format"))[0], str(p)


def _run_meta(
    target: str | Path, runs_dir: str | Path, registry: Registry | None
) -> tuple[dict[str, Any], Callable[[], Any], str]:
    """What a run directory's config says about its model, and its eager model."""
    from toolkit.models import rebuild_model
    from toolkit.tasks import get_task
    from toolkit.verify import eager_runner

    run = runs.open_run(None if str(target) == runs.LATEST else target, runs_dir)
    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()
    cfg = run.config
    task = cfg.get("task", "regression")
    meta = {
        "task": task,
        "input": cfg["input"],
        "output": get_task(task).meaning,
        "class_names": cfg.get("class_names"),
        "feature_scale": cfg.get("feature_scale"),
    }
    return meta, lambda: eager_runner(rebuild_model(run, registry)), str(run.path)


def predict(
    target: str | Path,
    input_path: str | Path,
    *,
    runs_dir: str | Path = "runs",
    registry: Registry | None = None,
    trust: bool = False,
) -> Prediction:
    """Predict with an exported file (ONNX, TorchScript, pt2) or a run's eager model.

    :param target: an exported file, a run directory, or ``latest``.
    :param input_path: ``.csv``, ``.npy`` or ``.json`` samples.
    :returns: a Prediction with one dict per row: ``label`` and ``probability`` (and
        ``class`` when names are known, ``probabilities`` for multiclass), or ``values``.
    """
    import numpy as np

    meta, load, source = _target_meta(target, runs_dir, registry, trust)
    shape = [int(d) for d in meta["input"]["shape"][1:]]
    x = read_input(input_path, shape, meta.get("feature_scale"))
    runner = load()
    static = static_batch(meta)  # a static-batch export takes exactly that many rows
    chunk = static if static is not None else CHUNK
    outs = []
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk]
        n = len(xb)
        if n < chunk and static is not None:  # pad to the static batch, drop after
            xb = np.concatenate([xb, np.zeros((chunk - n, *shape), np.float32)])
        outs.append(np.asarray(runner.run(xb)[0])[:n])
    y = np.concatenate(outs).astype(np.float64).reshape(len(x), -1)
    return Prediction(source, runner.name, meta["task"], interpret(y, meta))
