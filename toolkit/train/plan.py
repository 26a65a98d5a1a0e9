"""Planning: a config resolved against the registry, before anything is built or written.

Every problem a user can cause in the names, parameters, recipe or model selection
settings is found here as a UsageError (exit 2) naming the fix, so a bad command
leaves no run directory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit import runs
from toolkit.config import TrainConfig
from toolkit.errors import UsageError
from toolkit.registry import OPTIMIZERS, SCHEDULERS, DatasetSpec, ModelSpec, Recipe, Registry
from toolkit.splits import DEFAULT_FRACTION, check_fraction
from toolkit.train.selection import MONITORS, Selection


@dataclass
class Plan:
    """A config resolved against the registry: everything ``fit`` and the run need."""

    config: TrainConfig
    model: ModelSpec
    dataset: DatasetSpec
    params: dict[str, Any]
    data_params: dict[str, Any]
    recipe: Recipe
    log_every: int
    run_dir: Path
    selection: Selection


def resolve(config: TrainConfig, registry: Registry, run_dir: Path | None = None) -> Plan:
    """Check names, parameters, the recipe and selection; decide the run directory.

    ``run_dir`` is an existing run being resumed (no new directory is planned).
    Creates nothing. Every problem is a UsageError (exit 2) naming the fix.
    """
    mspec = registry.model(config.model)
    dname = config.dataset or mspec.default_dataset
    if dname is None:
        raise UsageError(
            f"model '{mspec.name}' has no default dataset", f"tk train {mspec.name} --dataset NAME"
        )
    dspec = registry.dataset(dname)
    check_task(mspec, dspec)
    params = mspec.resolve_params(config.params)
    data_params = dspec.resolve_params(config.data_params)
    recipe = resolve_recipe(config, mspec.recipe)
    selection = resolve_selection(config, mspec.task or dspec.target)
    log_every = config.log_every or max(1, recipe.epochs // 10)
    if log_every < 1:
        raise UsageError(f"--log-every must be at least 1, got {log_every}")
    if run_dir is None:
        run_dir = runs.plan_run_dir(
            config.runs_dir, mspec.name, config.name, config.out, config.overwrite
        )
    return Plan(config, mspec, dspec, params, data_params, recipe, log_every, run_dir, selection)


def check_task(mspec: ModelSpec, dspec: DatasetSpec) -> None:
    """A model made for one task cannot train on another task's targets."""
    if mspec.task is None or dspec.target is None or mspec.task == dspec.target:
        return
    raise UsageError(
        f"model '{mspec.name}' is a {mspec.task} model but dataset '{dspec.name}' "
        f"has {dspec.target} targets",
        "tk list datasets",
    )


def resolve_recipe(config: TrainConfig, default: Recipe) -> Recipe:
    """The model's recipe with the config's values on top, each one checked."""

    def pick(value: Any, fallback: Any) -> Any:
        return fallback if value is None else value

    recipe = Recipe(
        optimizer=(config.optimizer or default.optimizer).lower(),
        lr=pick(config.lr, default.lr),
        epochs=pick(config.epochs, default.epochs),
        batch_size=_batch_size(config.batch_size, default.batch_size),
        momentum=pick(config.momentum, default.momentum),
        weight_decay=pick(config.weight_decay, default.weight_decay),
        scheduler=(config.scheduler or default.scheduler).lower(),
        warmup_epochs=pick(config.warmup_epochs, default.warmup_epochs),
    )
    _check_recipe(recipe)
    return recipe


def _check_recipe(recipe: Recipe) -> None:
    if recipe.optimizer not in OPTIMIZERS:
        raise UsageError(
            f"unknown optimizer '{recipe.optimizer}'; choose one of {', '.join(OPTIMIZERS)}"
        )
    if recipe.scheduler not in SCHEDULERS:
        raise UsageError(
            f"unknown scheduler '{recipe.scheduler}'; choose one of {', '.join(SCHEDULERS)}"
        )
    if recipe.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {recipe.epochs}")
    if not (0 <= recipe.warmup_epochs < recipe.epochs):
        raise UsageError(
            f"--warmup-epochs must be in [0, epochs), got {recipe.warmup_epochs} "
            f"for {recipe.epochs} epochs"
        )
    if not (recipe.lr > 0 and math.isfinite(recipe.lr)):
        raise UsageError(f"--lr must be a positive number, got {recipe.lr}")
    if recipe.batch_size is not None and recipe.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1 or 'full', got {recipe.batch_size}")
    if recipe.momentum < 0 or recipe.weight_decay < 0:
        raise UsageError("--momentum and --weight-decay must not be negative")


def resolve_selection(config: TrainConfig, task: str | None) -> Selection:
    """Validation fraction, monitor and early stopping, checked against the task."""
    from toolkit.train.selection import monitor_for

    fraction = check_fraction(
        DEFAULT_FRACTION if config.val_fraction is None else config.val_fraction
    )
    name = (config.monitor or "val_loss").lower()
    if name not in MONITORS:
        raise UsageError(
            f"unknown monitor '{name}'; choose one of {', '.join(MONITORS)}", "--monitor val_loss"
        )
    if config.early_stop is not None and config.early_stop < 1:
        raise UsageError(
            f"--early-stop patience must be at least 1 epoch, got {config.early_stop}",
            "--early-stop 10",
        )
    if config.min_delta < 0:
        raise UsageError(f"--min-delta must not be negative, got {config.min_delta}")
    monitor = monitor_for(name, task) if task is not None else None
    return Selection(fraction, name, monitor, config.early_stop, config.min_delta)


def _batch_size(given: int | str | None, default: int | None) -> int | None:
    """``None`` is full batch; the CLI's string ``"full"`` means the same."""
    if given is None:
        return default
    if not isinstance(given, str):
        return given
    if given.strip().lower() == "full":
        return None
    try:
        return int(given)
    except ValueError:
        raise UsageError(f"--batch-size must be a number or 'full', got {given!r}") from None
