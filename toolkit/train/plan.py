"""Planning: a config resolved against the registry, before anything is built or written.

Every problem a user can cause in the names, parameters or recipe is found here as
a UsageError (exit 2) naming the fix, so a bad command leaves no run directory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit import runs
from toolkit.config import TrainConfig
from toolkit.errors import UsageError
from toolkit.registry import OPTIMIZERS, DatasetSpec, ModelSpec, Recipe, Registry


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


def resolve(config: TrainConfig, registry: Registry, run_dir: Path | None = None) -> Plan:
    """Check names, parameters and the recipe; decide the run directory.

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
    if mspec.task != dspec.target:
        raise UsageError(
            f"model '{mspec.name}' is a {mspec.task} model but dataset '{dspec.name}' "
            f"has {dspec.target} targets",
            "tk list datasets",
        )
    params = mspec.resolve_params(config.params)
    data_params = dspec.resolve_params(config.data_params)
    recipe = resolve_recipe(config, mspec.recipe)
    log_every = config.log_every or max(1, recipe.epochs // 10)
    if log_every < 1:
        raise UsageError(f"--log-every must be at least 1, got {log_every}")
    if run_dir is None:
        run_dir = runs.plan_run_dir(
            config.runs_dir, mspec.name, config.name, config.out, config.overwrite
        )
    return Plan(config, mspec, dspec, params, data_params, recipe, log_every, run_dir)


def resolve_recipe(config: TrainConfig, default: Recipe) -> Recipe:
    """The model's recipe with the config's values on top, each one checked."""
    recipe = Recipe(
        optimizer=(config.optimizer or default.optimizer).lower(),
        lr=default.lr if config.lr is None else config.lr,
        epochs=default.epochs if config.epochs is None else config.epochs,
        batch_size=_batch_size(config.batch_size, default.batch_size),
        momentum=default.momentum if config.momentum is None else config.momentum,
        weight_decay=default.weight_decay if config.weight_decay is None else config.weight_decay,
    )
    if recipe.optimizer not in OPTIMIZERS:
        raise UsageError(
            f"unknown optimizer '{recipe.optimizer}'; choose one of {', '.join(OPTIMIZERS)}"
        )
    if recipe.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {recipe.epochs}")
    if not (recipe.lr > 0 and math.isfinite(recipe.lr)):
        raise UsageError(f"--lr must be a positive number, got {recipe.lr}")
    if recipe.batch_size is not None and recipe.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1 or 'full', got {recipe.batch_size}")
    if recipe.momentum < 0 or recipe.weight_decay < 0:
        raise UsageError("--momentum and --weight-decay must not be negative")
    return recipe


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
