"""The provenance embedded in every exported file (``tk inspect`` prints it)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from toolkit import __version__
from toolkit.tasks import get_task

if TYPE_CHECKING:
    from toolkit import runs
    from toolkit.registry import Registry


def build_metadata(
    run: runs.Run,
    registry: Registry,
    fmt: str,
    exporter: str,
    opset: int | None,
    output_shape: Sequence[int],
    static_batch: int | None,
    weights_sha256: str,
) -> dict[str, Any]:
    """Provenance embedded in every exported file (``tk inspect`` prints it).

    tk and torch versions, the plugin that built the model, model name and params,
    task, input and output spec (batch symbolic unless static), class names, the
    run's final metrics, the weights' sha256, opset and exporter.
    """
    import torch

    cfg = run.config
    name = cfg["model"]
    from toolkit.models import run_model_spec

    spec = run_model_spec(cfg, registry)  # sized as trained, for a model that sizes itself
    src = registry.source("model", name)
    task = get_task(cfg.get("task", spec.task))
    batch: Any = static_batch if static_batch else "batch"
    inp = spec.input
    return {
        "schema": 1,
        "format": fmt,
        "exporter": exporter,
        "opset": opset,
        "tk_version": __version__,
        "torch_version": torch.__version__,
        "plugin": {"distribution": src.distribution, "version": src.version},
        "model": {"name": name, "params": cfg.get("params", {})},
        "dataset": {"name": cfg.get("dataset"), "params": cfg.get("data_params", {})},
        "task": task.name,
        "input": {"name": inp.name, "shape": [batch, *inp.shape], "dtype": inp.dtype},
        "output": {
            "name": task.output_name,
            "shape": [batch, *output_shape],
            "dtype": "float32",
            **task.meaning,
        },
        "class_names": cfg.get("class_names"),
        "feature_scale": cfg.get("feature_scale"),
        # Standardization is inside the graph: the file takes raw features. How tk
        # predict reads a user's file (CSV columns, image size) travels with it.
        "preprocess": "embedded in the graph" if cfg.get("preprocess") else None,
        "feature_names": cfg.get("feature_names"),
        "inputs": cfg.get("inputs"),
        "metrics": run.summary().get("final", {}),
        "weights_sha256": weights_sha256,
        "tolerance": cfg.get("tolerance") or asdict(spec.tolerance),  # as trained, not now
        "run": str(run.path.resolve()),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
