"""``train(config)``: plan -> build -> (resume) -> fit -> write, the orchestration only.

Validation (names, parameters, data, one dry batch) happens before the run
directory is created, so a bad command leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import checkpoint
from toolkit.config import TrainConfig
from toolkit.errors import TrainingError, UsageError, one_line
from toolkit.models import build_model, load_data
from toolkit.registry import Registry
from toolkit.tasks import get_task
from toolkit.train import build
from toolkit.train.job import join
from toolkit.train.loop import fit
from toolkit.train.metrics import History
from toolkit.train.plan import Plan, resolve
from toolkit.train.progress import Reporter
from toolkit.train.resume import check_resume, resume_config, resume_source, stored_config
from toolkit.train.signals import Interrupted, Signals, StopFlag
from toolkit.train.writer import RunWriter, run_config

if TYPE_CHECKING:
    from toolkit.checkpoint import TrainState
    from toolkit.distributed import DistContext


@dataclass
class TrainResult:
    """What ``train`` returns: the run directory, its history and the trained model."""

    run_dir: Path
    history: History
    summary: dict[str, Any]
    model: Any = None


@dataclass
class _Start:
    """What to run: the plan, and for a resume the checkpoint and the stored config."""

    plan: Plan
    resume: TrainState | None = None
    stored: dict[str, Any] | None = None
    checkpoint: Path | None = None


def train(
    config: TrainConfig, registry: Registry | None = None, echo: Callable[[str], None] = print
) -> TrainResult:
    """Train a registered model on a registered dataset and write its run directory.

    Validation (names, parameters, data, one dry batch) happens before the run
    directory is created, so a bad command leaves nothing behind. With
    ``config.resume`` the run continues from its newest valid checkpoint, exactly.
    """
    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()
    config, dctx = join(config, registry)
    main = dctx is None or dctx.is_main

    # -- plan: a new run, or a stored one continued
    start = _start(config, registry)
    plan = start.plan
    # -- build: device, data, model, one dry batch (nothing written yet)
    device = build.select_device(config.device)
    data = load_data(plan.dataset, plan.data_params)
    model = build_model(plan.model, plan.params, config.seed_value)
    build.check_fit(model, plan.model, plan.dataset, data)
    if config.init_weights:
        build.load_init_weights(model, config.init_weights, plan.model.name)
    cfg = _config_json(start, config, device, registry, dctx)

    # -- write the config, then train with checkpoints as they come
    history0 = start.resume.history if start.resume else []
    writer = RunWriter(plan.run_dir, main=main, keep=config.keep_checkpoints, history=history0)
    writer.create(cfg, new=start.stored is None, overwrite=config.overwrite)
    if not config.quiet:
        echo(_banner(start, config, device))
    history = _fit(start, config, model, data, device, writer, dctx)

    # -- results: weights, metrics, summary (rank 0), after every rank agrees
    return _finish(start, config, model, history, writer, dctx, echo)


def _start(config: TrainConfig, registry: Registry) -> _Start:
    if not config.resume:
        if not config.model:
            raise UsageError("no model given", "tk train MODEL, or tk train --resume RUN")
        return _Start(resolve(config, registry))
    run_dir, ckpt_path = resume_source(config.resume, config.runs_dir)
    # The checkpoint is checked first: a file that is not a tk checkpoint (a
    # pickle, say) is refused before anything else is read.
    state = checkpoint.load(ckpt_path)
    stored = stored_config(run_dir)
    plan = resolve(resume_config(config, stored), registry, run_dir=run_dir)
    return _Start(plan, state, stored, ckpt_path)


def _config_json(
    start: _Start, config: TrainConfig, device: Any, registry: Registry, dctx: DistContext | None
) -> dict[str, Any]:
    plan = start.plan
    cfg = run_config(plan, device, registry)
    cfg["seed"] = plan.config.seed_value
    cfg["grad_clip"] = plan.config.grad_clip
    if start.stored is not None and start.resume is not None and start.checkpoint is not None:
        check_resume(start.stored, cfg, start.resume, plan, config.allow_config_change)
        where = start.checkpoint.resolve().relative_to(plan.run_dir.resolve())
        cfg["resumed_from"] = where.as_posix()
        cfg["created"] = start.stored.get("created", cfg["created"])
    build.check_precision(config.precision, device)
    cfg["precision"] = config.precision
    cfg["compile"] = config.compile
    cfg["world_size"] = dctx.world_size if dctx is not None else 1
    return cfg


def _banner(start: _Start, config: TrainConfig, device: Any) -> str:
    plan, r = start.plan, start.plan.recipe
    verb = ""
    if start.resume is not None:
        verb = f"Resuming {plan.run_dir} at epoch {start.resume.epoch + 1}: "
    return (
        f"{verb}Training {plan.model.name} on {plan.dataset.name} ({device}): "
        f"{r.optimizer} lr={r.lr} epochs={r.epochs} "
        f"batch={r.batch_size or 'full'} seed={plan.config.seed_value}"
    )


def _fit(
    start: _Start,
    config: TrainConfig,
    model: Any,
    data: Any,
    device: Any,
    writer: RunWriter,
    dctx: DistContext | None,
) -> History:
    """The loop, with signals turned into a checkpoint and a resume hint."""
    plan = start.plan
    reporter = Reporter(plan.recipe.epochs, get_task(plan.model.task), config.quiet)
    stop = StopFlag()
    try:
        with Signals(stop):
            return fit(
                model,
                data,
                plan.recipe,
                task=plan.model.task,
                device=device,
                seed=plan.config.seed_value,
                log_every=plan.log_every,
                callbacks=[writer, reporter],
                grad_clip=plan.config.grad_clip,
                checkpoint_every=config.checkpoint_every,
                resume=start.resume,
                stop=stop,
                precision=config.precision,
                compile=config.compile,
                dist=dctx,
            )
    except Interrupted as exc:
        reporter.close()
        where = writer.saved[-1] if writer.saved else None
        exc.message = f"{exc.message}; checkpoint saved: {where}"
        exc.hint = f"tk train --resume {plan.run_dir}"
        writer.ended("interrupted", exc.message)
        raise
    except TrainingError as exc:
        reporter.close()
        writer.failed()
        valid = checkpoint.newest_valid_checkpoint(plan.run_dir)
        if valid is not None:
            exc.message += f"; last good checkpoint: {valid}"
            exc.hint = f"tk train --resume {plan.run_dir} --lr SMALLER --allow-config-change"
        writer.ended("failed", exc.message)
        raise
    except BaseException as exc:  # a crash or Ctrl-C outside the loop's own handling
        writer.ended("failed", one_line(exc))
        raise
    finally:
        reporter.close()


def _finish(
    start: _Start,
    config: TrainConfig,
    model: Any,
    history: History,
    writer: RunWriter,
    dctx: DistContext | None,
    echo: Callable[[str], None],
) -> TrainResult:
    from toolkit import runs
    from toolkit.weights import state_dict_bytes

    plan = start.plan
    weights = state_dict_bytes(model)
    hashes = [runs.sha256_bytes(weights)]
    if dctx is not None:
        hashes = dctx.all_gather_object(hashes[0])
    if dctx is not None and not dctx.is_main:
        # Wait until rank 0 has written everything: torchrun ends the whole job
        # (and would restart it) as soon as any worker exits abnormally.
        dctx.barrier()
        return TrainResult(plan.run_dir, history, {}, model)
    summary = writer.finish(weights, history, plan, hashes)
    if not config.quiet:
        echo(_done_line(history, plan))
    if dctx is not None:
        dctx.barrier()
    return TrainResult(plan.run_dir, history, summary, model)


def _done_line(history: History, plan: Plan) -> str:
    task = get_task(plan.model.task)
    last, m = history.last, task.metric
    if m == "accuracy":
        fig = f"train acc {task.show(last['train_' + m])} | test acc {task.show(last['test_' + m])}"
    else:
        fig = f"train MAE {last['train_mae']:.5f} | test MAE {last['test_mae']:.5f}"
    return (
        f"Done: {len(history.epochs)} epochs in {history.seconds:.2f} s | {fig} | "
        f"run: {plan.run_dir}"
    )
