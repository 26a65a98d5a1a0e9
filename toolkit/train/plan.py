"""Planning: a config resolved against the registry, before anything is built or written.

Every problem a user can cause in the names, parameters, recipe or model selection
settings is found here as a UsageError (exit 2) naming the fix, so a bad command
leaves no run directory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from toolkit import runs
from toolkit.augment import Augmentation, parse
from toolkit.config import TrainConfig, check_config, check_value, flag, given
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
    augment: Augmentation | None = None  # training batches only


FREEZE = ("backbone",)


def resolve(config: TrainConfig, registry: Registry, run_dir: Path | None = None) -> Plan:
    """Check names, parameters, the recipe and selection; decide the run directory.

    ``run_dir`` is an existing run being resumed (no new directory is planned).
    Creates nothing. Every problem is a UsageError (exit 2) naming the fix.
    """
    config = check_config(config)  # types and ranges of every option, whoever built it
    # Not given (and not a resumed run's): the defaults, decided here and not earlier so
    # that --resume can tell them from values given on the command line.
    config = replace(
        config, precision=given(config.precision, "fp32"), compile=given(config.compile, False)
    )
    mspec = registry.model(config.model)
    dname = config.dataset or mspec.default_dataset
    if dname is None:
        raise UsageError(
            f"model '{mspec.name}' has no default dataset", f"tk train {mspec.name} --dataset NAME"
        )
    dspec = registry.dataset(dname)
    check_task(mspec, dspec)
    params = mspec.resolve_params(_with_pretrained(config, mspec))
    data_params = dspec.resolve_params(config.data_params)
    recipe = resolve_recipe(config, mspec.recipe)
    selection = resolve_selection(config, mspec.task or dspec.target)
    log_every = config.log_every or max(1, recipe.epochs // 10)
    check_finetune(config, recipe)
    augment = parse(config.augment)
    if run_dir is None:
        if config.out is not None and Path(config.out).exists() and not Path(config.out).is_dir():
            raise UsageError(f"--out {config.out} is a file, not a run directory", "another --out")
        run_dir = runs.plan_run_dir(
            config.runs_dir, mspec.name, config.name, config.out, config.overwrite
        )
        check_writable(run_dir)
    return Plan(
        config, mspec, dspec, params, data_params, recipe, log_every, run_dir, selection, augment
    )


def _with_pretrained(config: TrainConfig, mspec: ModelSpec) -> dict[str, Any]:
    """``--pretrained [NAME]`` is the model's ``pretrained`` parameter, when it has one."""
    if not config.pretrained:
        return dict(config.params)
    if "pretrained" not in {p.name for p in mspec.params}:
        raise UsageError(
            f"model '{mspec.name}' has no pretrained weights",
            "tk list models (the torchvision zoo and timm/* models have them)",
        )
    return {**config.params, "pretrained": config.pretrained}


def check_finetune(config: TrainConfig, recipe: Recipe) -> None:
    """``--freeze``, ``--unfreeze-at``, ``--head-lr`` and ``--threads``, each checked."""
    if config.freeze is not None and config.freeze not in FREEZE:
        raise UsageError(
            f"--freeze {config.freeze!r}: choose {' or '.join(FREEZE)}", "--freeze backbone"
        )
    if config.unfreeze_at is not None:
        if config.freeze is None:
            raise UsageError("--unfreeze-at needs --freeze backbone", "--freeze backbone")
        if not (2 <= config.unfreeze_at <= recipe.epochs):
            raise UsageError(
                f"--unfreeze-at must be an epoch in [2, {recipe.epochs}], got {config.unfreeze_at}"
            )
    if config.head_lr is not None and not (config.head_lr > 0 and math.isfinite(config.head_lr)):
        raise UsageError(f"--head-lr must be a positive number, got {config.head_lr}")
    if config.threads is not None and config.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {config.threads}", "--threads 1")


def check_writable(run_dir: Path) -> None:
    """The run directory can be made: its nearest existing folder takes a new entry.

    Tried for real (a folder made and removed at once), because permission bits
    do not tell: root ignores them, and a read-only mount has none to read.
    """
    import os
    import tempfile

    base = run_dir if run_dir.is_dir() else run_dir.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tk-probe-", dir=base))
    except OSError as exc:
        why = "a file" if base.is_file() else f"not writable ({exc.strerror or exc})"
        raise UsageError(
            f"cannot create run directory {run_dir}: {base} is {why}",
            "another --out or --runs-dir",
        ) from None


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

    recipe = Recipe(
        optimizer=given(config.optimizer, default.optimizer).lower(),
        lr=given(config.lr, default.lr),
        epochs=given(config.epochs, default.epochs),
        batch_size=_batch_size(config.batch_size, default.batch_size),
        momentum=given(config.momentum, default.momentum),
        weight_decay=given(config.weight_decay, default.weight_decay),
        scheduler=given(config.scheduler, default.scheduler).lower(),
        warmup_epochs=given(config.warmup_epochs, default.warmup_epochs),
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
    # A recipe's own values (a plugin's defaults) are held to the options' rules.
    for name in ("epochs", "lr", "momentum", "weight_decay", "warmup_epochs", "batch_size"):
        if getattr(recipe, name) is not None:  # batch_size None: the whole split
            check_value(name, getattr(recipe, name), flag(name))
    if recipe.warmup_epochs >= recipe.epochs:
        raise UsageError(
            f"--warmup-epochs must be in [0, epochs), got {recipe.warmup_epochs} "
            f"for {recipe.epochs} epochs"
        )


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
    monitor = monitor_for(name, task) if task is not None else None
    return Selection(fraction, name, monitor, config.early_stop, given(config.min_delta, 0.0))


def _batch_size(value: int | str | None, default: int | None) -> int | None:
    """``None`` is full batch; the CLI's string ``"full"`` means the same."""
    if value is None:
        return default
    if not isinstance(value, str):
        return value
    if value.strip().lower() == "full":
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--batch-size must be a whole number or 'full', got {value!r}") from None
