"""Before training: what to run (a new run or a resumed one) and everything it needs built.

Data is loaded and a validation split carved, a model that sizes itself is sized
to the data, preprocessing is fitted on the training rows, one dry batch runs, and
``config.json`` is composed: all before the run directory exists.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import checkpoint
from toolkit.config import TrainConfig
from toolkit.data import Data, Split, data_changes, data_files
from toolkit.errors import UsageError
from toolkit.inputs import inputs_json
from toolkit.models import build_model, load_data
from toolkit.registry import Registry
from toolkit.runs.replace import check_target
from toolkit.splits import carve_validation
from toolkit.train import build
from toolkit.train.plan import Plan, check_task, resolve
from toolkit.train.resume import check_resume, resume_config, resume_source, stored_config
from toolkit.train.selection import monitor_for
from toolkit.train.writer import run_config

if TYPE_CHECKING:
    import torch

    from toolkit.checkpoint import TrainState
    from toolkit.distributed import DistContext


@dataclass
class Start:
    """What to run: the plan, and for a resume the checkpoint and the stored config."""

    plan: Plan
    resume: TrainState | None = None
    stored: dict[str, Any] | None = None
    checkpoint: Path | None = None


@dataclass
class Built:
    """The parts of a run, built and checked: data, model and the preprocessing fitted."""

    plan: Plan  # with the model sized to the data and the dataset's inferred values
    data: Data
    model: torch.nn.Module
    preprocess: dict[str, Any] | None


def start(config: TrainConfig, registry: Registry, *, main: bool = True) -> Start:
    """A new run's plan, or a stored run's plan with this command line's values on top.

    ``main``: this process writes the run (rank 0); it checks what ``--overwrite``
    would replace, and locks a resumed run before cleaning it.
    """
    from toolkit.config import tracker_options
    from toolkit.train.trackers import check_trackers

    # Trackers are the command line's own (a resume may add or drop them).
    check_trackers(config.trackers, registry, tracker_options(config))
    if not config.resume:
        if not config.model:
            raise UsageError("no model given", "tk train MODEL, or tk train --resume RUN")
        plan = resolve(config, registry)
        if main:
            check_target(plan.run_dir, config.overwrite, config.runs_dir)
        return Start(plan)
    run_dir, ckpt_path = resume_source(
        config.resume, config.runs_dir, epochs=config.epochs, main=main
    )
    # The checkpoint is checked first: a file that is not a tk checkpoint (a
    # pickle, say) is refused before anything else is read.
    state = checkpoint.load(ckpt_path)
    stored = stored_config(run_dir, check=main)
    plan = resolve(resume_config(config, stored), registry, run_dir=run_dir)
    return Start(plan, state, stored, ckpt_path)


def build_run(plan: Plan, resuming: bool = False) -> Built:
    """Load the data, hold out validation rows, size and build the model, one dry batch.

    A new run with ``--pretrained`` loads the weights file here (a resume takes its
    checkpoint's weights instead), so a missing file leaves no run directory.
    """
    config = plan.config
    data = load_data(plan.dataset, plan.data_params)
    if data.info.skipped and config.strict_data:
        first = data.notes[0] if data.notes else ""
        raise UsageError(
            f"dataset '{data.spec.name}': {data.info.skipped} unreadable sample(s) ({first})",
            "fix or remove them, or drop --strict-data to skip them",
        )
    data = carve_validation(data, plan.selection.val_fraction, config.seed_value)
    check_task(plan.model, data.spec)
    mspec = plan.model.for_dataset(data.spec)
    selection = plan.selection
    if selection.monitor is None:  # the task was known only once the data was loaded
        selection = replace(selection, monitor=monitor_for(selection.monitor_name, mspec.task))
    if plan.augment is not None:
        from toolkit.augment import check

        spec = data.spec
        integer = spec.feature_scale is not None
        check(plan.augment, tuple(spec.feature_shape or ()), str(spec.target), integer)
    preprocess = _fit_preprocess(data)
    model = build_model(mspec, plan.params, config.seed_value, preprocess)
    build.check_fit(model, mspec, data.spec, data)
    params = _pretrained_weights(model, plan.params, load=not resuming)
    if config.init_weights:
        build.load_init_weights(model, config.init_weights, mspec.name)
    plan = replace(plan, model=mspec, dataset=data.spec, selection=selection, params=params)
    return Built(plan, data, model, preprocess)


def _pretrained_weights(model: Any, params: dict[str, Any], load: bool) -> dict[str, Any]:
    """Load a pretrained model's weights file; the params name the weights it resolved to
    (``default`` becomes e.g. ``IMAGENET1K_V1``), so config.json rebuilds the same model."""
    from toolkit.pretrained import Pretrained

    found = [m for m in model.modules() if isinstance(m, Pretrained)]
    if not found:
        return params
    if load:
        found[0].load_pretrained()
    return {**params, "pretrained": found[0].weights_name}


def _fit_preprocess(data: Data) -> dict[str, Any] | None:
    """Standardization statistics of the training rows, when the dataset asks for them."""
    info = data.info
    # A plugin may give its feature indices as any sequence, a numpy array included
    # (whose truth value numpy refuses to guess).
    features = info.standardize if isinstance(info.standardize, bool) else list(info.standardize)
    if not (features or info.standardize_target):
        return None
    train = data.train
    if not isinstance(train, Split):
        raise UsageError(
            f"dataset '{data.spec.name}': standardization needs its training rows in memory"
        )
    from toolkit.preprocess import fit_stats

    target = info.standardize_target and data.spec.target == "regression"
    return fit_stats(data.features(train.x), train.y, features, target)


def config_json(
    start: Start, built: Built, device: Any, registry: Registry, dctx: DistContext | None
) -> dict[str, Any]:
    """``config.json``: the resolved run, checked against a resumed run's stored config."""
    plan, config = built.plan, built.plan.config
    cfg = run_config(plan, device, registry)
    cfg["seed"] = config.seed_value
    cfg["grad_clip"] = config.grad_clip
    cfg["selection"] = plan.selection.to_json()
    cfg.update(_data_record(built))
    cfg.update(_training_record(plan, dctx))
    if start.stored is not None and start.resume is not None and start.checkpoint is not None:
        # A run from before paths were recorded absolute holds them as typed.
        given = start.stored.get("data_params", {})
        stored = {**start.stored, "data_params": plan.dataset.resolve_params(given)}
        check_resume(stored, cfg, start.resume, plan, config.allow_config_change)
        _check_data(stored, cfg, plan, config.allow_config_change)
        where = start.checkpoint.resolve().relative_to(plan.run_dir.resolve())
        cfg["resumed_from"] = where.as_posix()
        cfg["created"] = start.stored.get("created", cfg["created"])
    build.check_precision(config.precision, device)
    cfg["precision"] = config.precision
    cfg["compile"] = config.compile
    cfg["world_size"] = dctx.world_size if dctx is not None else 1
    return cfg


def _check_data(stored: dict[str, Any], cfg: dict[str, Any], plan: Plan, allow: bool) -> None:
    """A resumed run continues on the data it started on, unless the user allows a change."""
    changes = data_changes(stored.get("data_files") or {}, cfg.get("data_files") or {})
    if changes and not allow:
        raise UsageError(
            f"resuming {plan.run_dir}: {changes[0]}", "restore it, or --allow-config-change"
        )


def fit_extras(built: Built) -> dict[str, Any]:
    """The FitOptions of augmentation and fine-tuning (``--augment``, ``--freeze``, ...)."""
    from toolkit.train.finetune import Finetune, head_of

    config = built.plan.config
    finetune = None
    if config.freeze or config.head_lr is not None:
        finetune = Finetune(
            head_of(built.model),
            freeze=config.freeze == "backbone",
            unfreeze_at=config.unfreeze_at,
            head_lr=config.head_lr,
        )
    return {"augment": built.plan.augment, "finetune": finetune}


def _training_record(plan: Plan, dctx: DistContext | None) -> dict[str, Any]:
    """Augmentation and fine-tuning, as config.json records them (a resume restores them)."""
    config = plan.config
    if config.freeze and dctx is not None and dctx.world_size > 1:
        raise UsageError(
            "--freeze is not supported with several processes (DDP fixes the trained "
            "parameters when it starts)",
            "drop --nproc, or --freeze",
        )
    finetune = None
    if config.freeze or config.head_lr is not None:
        finetune = {
            "freeze": config.freeze,
            "unfreeze_at": config.unfreeze_at,
            "head_lr": config.head_lr,
        }
    return {
        "augment": plan.augment.to_json() if plan.augment else None,
        "finetune": finetune,
    }


def _data_record(built: Built) -> dict[str, Any]:
    """What the data taught the run, for export, ``tk predict`` and a reader of the run."""
    info = built.data.info
    out: dict[str, Any] = {"data_notes": list(built.data.notes)}
    files = data_files(built.plan.dataset, built.plan.data_params)
    if files:  # found again from any directory, and a change since is named
        out["data_files"] = files
    if built.preprocess:
        out["preprocess"] = built.preprocess
    if info.feature_names:
        out["feature_names"] = list(info.feature_names)
    if info.inputs:
        out["inputs"] = inputs_json(info.inputs)
    if info.skipped:
        out["skipped_samples"] = info.skipped
    return out
