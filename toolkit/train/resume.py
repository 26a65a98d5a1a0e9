"""Resuming: which run and checkpoint ``--resume`` names, and what may change on the way.

The stored ``config.json`` (checked against the run's manifest) is the base; values
given on the new command line go on top. A changed model, dataset, parameter, seed
or recipe value is refused with a diff unless ``--allow-config-change``; raising
``--epochs`` is always allowed, and is the only way to continue a finished run.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from toolkit import checkpoint, runs
from toolkit.config import TrainConfig, given
from toolkit.errors import UsageError
from toolkit.integrity import MANIFEST, IntegrityError, check_file
from toolkit.runs.lock import lock_run


def resume_source(
    resume: str, runs_dir: str, *, epochs: int | None = None, main: bool = True
) -> tuple[Path, Path]:
    """The run directory and the checkpoint file that ``--resume`` names.

    ``resume`` goes through the one run resolver (``latest``, a run directory, a
    name under the runs root, a checkpoint file). The process that will write the
    run (``main``) locks it, refuses a finished run unless ``epochs`` extends it, and
    cleans what dead writers left, all before anything is read.
    """
    path = runs.locate(None if resume == runs.LATEST else resume, runs_dir)
    ckpt: Path | None = None
    if path.is_file():
        ckpt, path = path, path.parent.parent
    if not (path / runs.CONFIG).is_file():
        what = f"{ckpt} is not inside" if ckpt else f"{path} is not"
        raise UsageError(f"{what} a tk run directory (no {runs.CONFIG})", "tk train MODEL")
    if main:
        lock_run(path, "tk train --resume")  # given back when training ends
        refuse_finished(path, epochs)
    if not (path / MANIFEST).is_file():
        # Checked before cleaning: without a manifest every checkpoint looks unlisted.
        raise IntegrityError(
            f"{path / MANIFEST} is missing, so the run's checkpoints cannot be checked; "
            "refusing to resume",
            "tk train MODEL (a new run)",
        )
    if main:
        checkpoint.cleanup(path)
    if ckpt is not None:
        return path, ckpt
    listed = checkpoint.list_checkpoints(path)
    if not listed:
        raise UsageError(
            f"{path} has no checkpoint to resume from", "tk train MODEL --checkpoint-every N"
        )
    return path, listed[-1]


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def refuse_finished(run_dir: Path, epochs: int | None) -> None:
    """A finished run is continued only to extend it: ``--epochs`` other than the
    epochs it has (fewer are refused by :func:`check_resume`, naming both)."""
    status, summary = _read(run_dir / runs.STATUS), _read(run_dir / runs.SUMMARY)
    finished = status.get("status") == "finished" or (not status and bool(summary))
    done = summary.get("epochs")
    if not finished or (epochs is not None and epochs != done):
        return
    raise UsageError(
        f"{run_dir} is a finished run ({done} epochs); resuming it would rewrite it",
        f"tk train --resume {run_dir} --epochs N, with N above {done}, to extend it",
    )


def stored_config(run_dir: Path, *, check: bool = True) -> dict[str, Any]:
    """A run's ``config.json``, checked against the run's manifest (``check``: an
    edited file is named and refused), and refused when it lacks what a resume needs."""
    if check:
        check_file(run_dir / runs.CONFIG)
    try:
        stored = json.loads((run_dir / runs.CONFIG).read_text())
    except (OSError, ValueError):
        stored = None
    required = ("model", "dataset", "recipe", "seed")
    if not isinstance(stored, dict) or any(k not in stored for k in required):
        raise UsageError(f"{run_dir / runs.CONFIG} is incomplete; cannot resume this run")
    return stored


def resume_config(config: TrainConfig, stored: dict[str, Any]) -> TrainConfig:
    """The stored run's config with the values given on this command line on top."""
    recipe = stored["recipe"]
    selection = stored.get("selection") or {}
    augment = (stored.get("augment") or {}).get("spec")
    finetune = stored.get("finetune") or {}

    return replace(
        config,
        model=given(config.model, stored["model"]),
        dataset=given(config.dataset, stored["dataset"]),
        params={**stored.get("params", {}), **config.params},
        data_params={**stored.get("data_params", {}), **config.data_params},
        epochs=given(config.epochs, recipe["epochs"]),
        batch_size=given(config.batch_size, recipe["batch_size"]),
        lr=given(config.lr, recipe["lr"]),
        optimizer=given(config.optimizer, recipe["optimizer"]),
        momentum=given(config.momentum, recipe["momentum"]),
        weight_decay=given(config.weight_decay, recipe["weight_decay"]),
        seed=given(config.seed, stored["seed"]),
        grad_clip=given(config.grad_clip, stored.get("grad_clip")),
        scheduler=given(config.scheduler, recipe.get("scheduler")),
        warmup_epochs=given(config.warmup_epochs, recipe.get("warmup_epochs")),
        val_fraction=given(config.val_fraction, selection.get("val_fraction")),
        monitor=given(config.monitor, selection.get("monitor")),
        early_stop=given(config.early_stop, selection.get("early_stop")),
        min_delta=given(config.min_delta, selection.get("min_delta")),
        augment=given(config.augment, augment),
        freeze=given(config.freeze, finetune.get("freeze")),
        unfreeze_at=given(config.unfreeze_at, finetune.get("unfreeze_at")),
        head_lr=given(config.head_lr, finetune.get("head_lr")),
        precision=given(config.precision, stored.get("precision")),
        compile=given(config.compile, stored.get("compile")),
    )


def config_diff(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key old -> new`` for every value a resume would change (epochs excepted)."""
    changes = []
    keys = ("model", "dataset", "params", "data_params", "seed", "grad_clip", "selection")
    for key in (*keys, "augment", "finetune"):
        if key in ("selection", "augment", "finetune") and key not in stored:
            continue  # a run from before validation splits: nothing to compare
        if stored.get(key) != new.get(key):
            changes.append(f"{key} {stored.get(key)!r} -> {new.get(key)!r}")
    for key, old in stored["recipe"].items():
        if key != "epochs" and new["recipe"].get(key, old) != old:
            changes.append(f"{key} {old!r} -> {new['recipe'].get(key)!r}")
    return changes


def check_resume(
    stored: dict[str, Any], cfg: dict[str, Any], state: Any, plan: Any, allow: bool
) -> None:
    """Refuse a resume that changes the config (unless ``allow``) or lowers the epochs."""
    changes = config_diff(stored, cfg)
    if changes and not allow:
        raise UsageError(
            f"resuming {plan.run_dir} with a changed config: {'; '.join(changes)}",
            "drop those options, or --allow-config-change",
        )
    if plan.recipe.epochs < state.epoch:
        raise UsageError(
            f"--epochs {plan.recipe.epochs} is lower than the {state.epoch} epochs "
            f"already done in {plan.run_dir}",
            f"--epochs {state.epoch} or more",
        )
