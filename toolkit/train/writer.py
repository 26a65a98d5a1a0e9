"""Writing a run directory: config first, checkpoints as they come, results last.

Only rank 0 writes, holding the run directory's lock (``toolkit.runs.lock``). Every
file is written atomically (``toolkit.runs``), and the config, weights and
checkpoints are listed in the manifest once they are complete.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import __version__, checkpoint, runs
from toolkit.errors import TrainingError
from toolkit.integrity import record
from toolkit.models import LAST_WEIGHTS
from toolkit.registry import Registry
from toolkit.runs.lock import lock_run
from toolkit.runs.replace import create_run_dir
from toolkit.train.callbacks import Callback
from toolkit.train.plan import Plan

if TYPE_CHECKING:
    from toolkit.checkpoint import TrainState
    from toolkit.train.metrics import History
    from toolkit.train.state import Loop


def run_config(plan: Plan, device: Any, registry: Registry) -> dict[str, Any]:
    """The fully resolved ``config.json`` of a run."""
    m, d = plan.model, plan.dataset
    return {
        "model": m.name,
        "params": plan.params,
        "dataset": d.name,
        "data_params": plan.data_params,
        "task": m.task,
        "input": m.input.to_json(),
        "outputs": d.outputs,
        "class_names": list(d.class_names) if d.class_names else None,
        "feature_scale": d.feature_scale,
        "recipe": plan.recipe.to_json(),
        "seed": plan.config.seed,
        "device": str(device),
        "log_every": plan.log_every,
        "tolerance": {"atol": m.tolerance.atol, "rtol": m.tolerance.rtol},
        "versions": versions(registry, plan),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def versions(registry: Registry, plan: Plan) -> dict[str, Any]:
    """tk, torch and Python versions, and the plugins that gave the model and dataset."""
    import torch

    def plugin(kind: str, name: str) -> dict[str, str]:
        src = registry.source(kind, name)
        return {
            "distribution": src.distribution,
            "version": src.version,
            "entry_point": src.entry_point,
        }

    return {
        "tk": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model_plugin": plugin("model", plan.model.name),
        "dataset_plugin": plugin("dataset", plan.dataset.name),
    }


def write_metrics(run_dir: Path, rows: list[dict[str, float]]) -> None:
    """``metrics.jsonl`` and ``metrics.csv``: one row per epoch."""
    if not rows:
        return
    runs.atomic_write_text(
        run_dir / runs.METRICS_JSONL, "".join(json.dumps(r) + "\n" for r in rows)
    )
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join(repr(r[k]) for k in keys) for r in rows]
    runs.atomic_write_text(run_dir / runs.METRICS_CSV, "\n".join(lines) + "\n")


class RunWriter(Callback):
    """The run directory of one training: rank 0 writes, other ranks only pass through."""

    def __init__(self, run_dir: Path, *, main: bool, keep: int, history: list[Any]) -> None:
        self.run_dir = run_dir
        self.main = main
        self.keep = keep
        self.rows: list[dict[str, float]] = list(history)  # every row logged so far
        self.saved: list[Path] = []

    def create(
        self, cfg: dict[str, Any], *, new: bool, overwrite: bool, runs_dir: str | Path
    ) -> None:
        """Lock the directory (making it, or replacing a run with ``overwrite``), write
        ``config.json`` (listed in the manifest like every file) and point ``latest`` here.

        The lock is held until training ends (``train`` gives it back); ``latest``
        moves now, so a run cut off by Ctrl-C is the one ``--resume latest`` continues.
        """
        if not self.main:
            return
        if new:
            create_run_dir(self.run_dir, overwrite=overwrite, runs_dir=runs_dir)
        else:
            lock_run(self.run_dir, "tk train --resume")
        runs.atomic_write_json(self.run_dir / runs.CONFIG, cfg)
        record(self.run_dir, self.run_dir / runs.CONFIG)
        runs.write_status(self.run_dir, "running", resumed=not new)
        runs.set_latest(runs_dir, self.run_dir)

    def ended(self, status: str, error: str | None = None) -> None:
        """Training stopped: ``interrupted`` or ``failed`` (with the one-line reason)."""
        if self.main:
            runs.write_status(self.run_dir, status, error=error)

    def on_log(self, loop: Loop, rows: list[dict[str, float]]) -> None:
        """Remember the rows, so a failed run still leaves its metrics."""
        self.rows.extend(rows)

    def on_checkpoint(self, loop: Loop, state: TrainState) -> None:
        """Write the checkpoint (never one with non-finite weights) and the metrics."""
        if not self.main:
            return
        import torch

        bad = [k for k, v in state.model_state.items() if not bool(torch.isfinite(v).all())]
        if bad:
            raise TrainingError(f"parameter '{bad[0]}' is not finite; no checkpoint written")
        self.saved.append(checkpoint.save(self.run_dir, state, keep=self.keep))
        write_metrics(self.run_dir, state.history)

    def failed(self) -> None:
        """Training failed: keep the metrics logged so far."""
        if self.main:
            write_metrics(self.run_dir, self.rows)

    def finish(
        self,
        weights: tuple[bytes, str],
        last: bytes,
        history: History,
        plan: Plan,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        """The selected weights (bytes, sha256) and the last weights, metrics and
        ``summary.json`` (which records both sha256s: a check when the manifest is gone)."""
        import torch

        run_dir = self.run_dir
        weights, digest = weights
        last_digest = runs.sha256_bytes(last)
        write_metrics(run_dir, history.epochs)
        runs.atomic_write_bytes(run_dir / runs.WEIGHTS, weights)
        record(run_dir, run_dir / runs.WEIGHTS, digest)
        same = run_dir / runs.WEIGHTS if last_digest == digest else None
        checkpoint.write_or_link(run_dir / LAST_WEIGHTS, last, same)
        record(run_dir, run_dir / LAST_WEIGHTS, last_digest)
        summary = {
            "model": plan.model.name,
            "dataset": plan.dataset.name,
            "epochs": len(history.epochs),
            "steps": history.steps,
            "seconds": round(history.seconds, 4),
            "samples_per_second": round(history.samples / max(history.seconds, 1e-9), 1),
            "final": history.last,
            **extra,
            "weights_sha256": digest,
            "last_weights_sha256": last_digest,
            "torch_threads": torch.get_num_threads(),
        }
        runs.atomic_write_json(run_dir / runs.SUMMARY, summary)
        runs.write_status(run_dir, "finished")
        return summary
