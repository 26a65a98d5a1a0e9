"""Joining a torchrun job: every rank agrees on one run directory before training.

Rank 0 decides (a new run, a ``--resume``, or the newest checkpoint after torchrun
restarted the workers), takes the run directory's lock (only rank 0 writes) and
broadcasts the decision; an error it finds is raised on
every rank with the same exit code, so no rank waits forever in a collective.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from toolkit import checkpoint, distributed
from toolkit.config import TrainConfig
from toolkit.distributed import DistContext
from toolkit.errors import TkError, UsageError
from toolkit.registry import Registry
from toolkit.runs.lock import lock_run
from toolkit.runs.replace import check_target
from toolkit.train.plan import resolve
from toolkit.train.resume import resume_source, stored_config

# Seconds a restarted rank 0 waits for the run's lock: torchrun stops the old workers
# before it starts new ones, so the lock is normally free at once.
RESTART_WAIT = 30.0


def join(config: TrainConfig, registry: Registry) -> tuple[TrainConfig, DistContext | None]:
    """Inside a torchrun worker: the process group and the agreed config; else (config, None)."""
    if not distributed.requested():
        return config, None
    import torch

    cuda = config.device.startswith("cuda") or (
        config.device == "auto" and torch.cuda.is_available()
    )
    dctx = distributed.init_from_env("cuda" if cuda else "cpu")
    if cuda:
        config = replace(config, device=f"cuda:{dctx.local_rank}")
    try:
        config = agree_on_run(config, dctx, registry)
    except TkError:
        dctx.close()
        raise
    if not dctx.is_main:
        config = replace(config, quiet=True)
    return config, dctx


def agree_on_run(config: TrainConfig, dctx: DistContext, registry: Registry) -> TrainConfig:
    """Rank 0 decides the run directory (new, or resumed after a restart); all ranks use it."""
    decision: dict[str, Any] | None = None
    if dctx.is_main:
        try:
            decision = _main_rank_decision(config, dctx, registry)
        except TkError as exc:
            decision = {"error": str(exc), "code": exc.exit_code}
    decision = dctx.broadcast_object(decision) or {}
    if "error" in decision:
        raise distributed.WorkerError(decision["error"], decision["code"])
    if "resume" in decision:
        return replace(config, resume=decision["resume"], out=None, name=None)
    return replace(config, out=decision["run_dir"], name=None, overwrite=True)


def _main_rank_decision(
    config: TrainConfig, dctx: DistContext, registry: Registry
) -> dict[str, Any]:
    if config.resume:
        run_dir, ckpt = resume_source(config.resume, config.runs_dir, epochs=config.epochs)
        stored_config(run_dir)  # an edited config.json is refused on every rank
        return {"resume": str(ckpt)}
    if dctx.restart_count > 0:
        # torchrun restarted every worker: continue from the last checkpoint. The dead
        # rank 0's lock went with its process; this one takes it over.
        prev = distributed.store_get(dctx.store, distributed.RUN_DIR_KEY) or config.out
        if prev and Path(prev).is_dir():
            lock_run(prev, "tk train (torchrun restart)", wait=RESTART_WAIT)
            checkpoint.cleanup(prev)
            listed = checkpoint.list_checkpoints(prev)
            if listed:
                return {"resume": str(listed[-1])}
            return {"run_dir": prev}
    if not config.model:
        raise UsageError("no model given", "tk train MODEL, or tk train --resume RUN")
    plan = resolve(config, registry)
    check_target(plan.run_dir, config.overwrite, config.runs_dir)
    dctx.store.set(distributed.RUN_DIR_KEY, str(plan.run_dir))
    return {"run_dir": str(plan.run_dir)}
