"""Resuming: which run and checkpoint ``--resume`` names, and what may change on the way.

The stored ``config.json`` is the base; values given on the new command line go on
top. A changed model, dataset, parameter, seed or recipe value is refused with a
diff unless ``--allow-config-change``; raising ``--epochs`` is always allowed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from toolkit import checkpoint, runs
from toolkit.config import TrainConfig
from toolkit.errors import UsageError


def resume_source(resume: str, runs_dir: str) -> tuple[Path, Path]:
    """The run directory and the checkpoint file that ``--resume`` names."""
    p = Path(resume)
    if p.is_file():
        run_dir = p.parent.parent
        if not (run_dir / runs.CONFIG).is_file():
            raise UsageError(f"{p} is not inside a tk run directory")
        return run_dir, p
    run_dir = runs.resolve_run(None if resume == "latest" else resume, runs_dir)
    checkpoint.cleanup(run_dir)
    listed = checkpoint.list_checkpoints(run_dir)
    if not listed:
        raise UsageError(
            f"{run_dir} has no checkpoint to resume from", "tk train MODEL --checkpoint-every N"
        )
    return run_dir, listed[-1]


def stored_config(run_dir: Path) -> dict[str, Any]:
    """A run's ``config.json``, refused when it lacks what a resume needs."""
    try:
        stored = json.loads((run_dir / runs.CONFIG).read_text())
    except json.JSONDecodeError:
        stored = None
    required = ("model", "dataset", "recipe", "seed")
    if not isinstance(stored, dict) or any(k not in stored for k in required):
        raise UsageError(f"{run_dir / runs.CONFIG} is incomplete; cannot resume this run")
    return stored


def resume_config(config: TrainConfig, stored: dict[str, Any]) -> TrainConfig:
    """The stored run's config with the values given on this command line on top."""
    recipe = stored["recipe"]
    selection = stored.get("selection") or {}

    def given(value: Any, default: Any) -> Any:
        return value if value is not None else default

    return replace(
        config,
        model=config.model or stored["model"],
        dataset=config.dataset or stored["dataset"],
        params={**stored.get("params", {}), **config.params},
        data_params={**stored.get("data_params", {}), **config.data_params},
        epochs=given(config.epochs, recipe["epochs"]),
        batch_size=given(config.batch_size, recipe["batch_size"]),
        lr=given(config.lr, recipe["lr"]),
        optimizer=config.optimizer or recipe["optimizer"],
        momentum=given(config.momentum, recipe["momentum"]),
        weight_decay=given(config.weight_decay, recipe["weight_decay"]),
        seed=given(config.seed, stored["seed"]),
        grad_clip=given(config.grad_clip, stored.get("grad_clip")),
        scheduler=given(config.scheduler, recipe.get("scheduler")),
        warmup_epochs=given(config.warmup_epochs, recipe.get("warmup_epochs")),
        val_fraction=given(config.val_fraction, selection.get("val_fraction")),
        monitor=given(config.monitor, selection.get("monitor")),
        early_stop=given(config.early_stop, selection.get("early_stop")),
        min_delta=config.min_delta or selection.get("min_delta", 0.0),
    )


def config_diff(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key old -> new`` for every value a resume would change (epochs excepted)."""
    changes = []
    for key in ("model", "dataset", "params", "data_params", "seed", "grad_clip", "selection"):
        if key == "selection" and key not in stored:
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
