"""``train(config)``: plan -> build -> (resume) -> fit -> select -> test once -> write.

Validation (names, parameters, data, one dry batch) happens before the run
directory is created, so a bad command leaves nothing behind. The validation
split selects the epoch; the test split is evaluated once, on that epoch's weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import checkpoint
from toolkit.config import TrainConfig, tracker_options
from toolkit.data import Split
from toolkit.errors import TrainingError, one_line
from toolkit.registry import Registry
from toolkit.runs.lock import released_on_exit
from toolkit.tasks import get_task
from toolkit.train import build
from toolkit.train.callbacks import Callback
from toolkit.train.job import join
from toolkit.train.loop import fit
from toolkit.train.metrics import History, test_metrics
from toolkit.train.prepare import Built, Start, build_run, config_json, fit_extras, start
from toolkit.train.progress import Reporter
from toolkit.train.selection import BestWeights, EarlyStopping
from toolkit.train.signals import Interrupted, Signals, StopFlag
from toolkit.train.state import FitOptions
from toolkit.train.trackers import TrackerCallback, tracker_callback
from toolkit.train.writer import RunWriter

if TYPE_CHECKING:
    from toolkit.distributed import DistContext


@dataclass
class TrainResult:
    """What ``train`` returns: the run directory, its history and the trained model."""

    run_dir: Path
    history: History
    summary: dict[str, Any]
    model: Any = None


def train(
    config: TrainConfig,
    registry: Registry | None = None,
    echo: Callable[[str], None] = print,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train a registered model on a registered dataset and write its run directory.

    Validation (names, parameters, data, one dry batch) happens before the run
    directory is created, so a bad command leaves nothing behind. With
    ``config.resume`` the run continues from its newest valid checkpoint, exactly.
    ``callbacks`` run after tk's own (``tk tune``'s pruning reporter is one).
    """
    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()
    # The run directory's lock is given back when training ends, however it ends (a
    # process that dies gives it back too: the kernel drops flock locks).
    with released_on_exit():
        return _train(config, registry, echo, callbacks)


def _train(
    config: TrainConfig,
    registry: Registry,
    echo: Callable[[str], None],
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    config, dctx = join(config, registry)
    main = dctx is None or dctx.is_main

    # -- plan: a new run, or a stored one continued
    begun = start(config, registry, main=main)
    # -- build: device, data and validation rows, the model sized to them (nothing written)
    device = build.select_device(begun.plan.config.device)
    built = build_run(begun.plan, resuming=begun.resume is not None)
    cfg = config_json(begun, built, device, registry, dctx)
    threads = built.plan.config.threads
    build.set_threads(threads, built.model, built.data, device, built.plan.recipe.batch_size)

    # -- write the config, then train with checkpoints as they come
    plan = built.plan
    history0 = begun.resume.history if begun.resume else []
    writer = RunWriter(plan.run_dir, main=main, keep=plan.config.keep_checkpoints, history=history0)
    writer.create(
        cfg,
        new=begun.stored is None,
        overwrite=plan.config.overwrite,
        runs_dir=plan.config.runs_dir,
    )
    if not plan.config.quiet:
        for line in [_banner(begun, built, device, cfg["world_size"]), *built.data.notes]:
            echo(line)
    best, stopper = _selectors(built)
    trackers = tracker_callback(
        plan.config.trackers,
        registry,
        tracker_options(plan.config),
        plan.run_dir,
        main=main,
        runs_dir=plan.config.runs_dir,
    )
    every = [best, stopper, writer, trackers, *callbacks]
    history = _fit(begun, built, device, every, writer, dctx)

    # -- results: the selected weights, tested once; files written by rank 0
    return _finish(built, history, (best, stopper), (writer, trackers), device, dctx, echo)


def _selectors(built: Built) -> tuple[BestWeights, EarlyStopping | None]:
    """The best-epoch keeper, and early stopping when ``--early-stop`` asks for it."""
    sel = built.plan.selection
    assert sel.monitor is not None  # build_run fills it in once the task is known
    stopper = None
    if sel.patience is not None:
        stopper = EarlyStopping(sel.monitor, sel.patience, sel.min_delta)
    return BestWeights(sel.monitor), stopper


def _banner(begun: Start, built: Built, device: Any, nproc: int) -> str:
    plan, r = built.plan, built.plan.recipe
    verb = ""
    if begun.resume is not None:
        verb = f"Resuming {plan.run_dir} at epoch {begun.resume.epoch + 1}: "
    sched = f" scheduler={r.scheduler}" if r.scheduler != "none" or r.warmup_epochs else ""
    return (
        f"{verb}Training {plan.model.name} on {plan.dataset.name} ({device}): "
        f"{r.optimizer} lr={r.lr} epochs={r.epochs} "
        f"batch={r.batch_size or 'full'}{sched} seed={plan.config.seed_value} nproc={nproc}"
        + (f" augment={plan.augment.spec}" if plan.augment else "")
    )


def _fit(
    begun: Start,
    built: Built,
    device: Any,
    callbacks: list[Any],
    writer: RunWriter,
    dctx: DistContext | None,
) -> History:
    """The loop, with signals turned into a checkpoint and a resume hint (the trackers
    close themselves: ``TrackerCallback.on_exception``)."""
    plan, config = built.plan, built.plan.config
    reporter = Reporter(plan.recipe.epochs, get_task(plan.model.task), config.quiet)
    stop = StopFlag()
    try:
        with Signals(stop):
            return fit(
                built.model,
                built.data,
                plan.recipe,
                task=plan.model.task,
                device=device,
                seed=config.seed_value,
                log_every=plan.log_every,
                callbacks=[*callbacks, reporter],
                checkpoint_every=config.checkpoint_every,
                resume=begun.resume,
                options=_options(built, stop, dctx),
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


def _options(built: Built, stop: StopFlag, dctx: DistContext | None) -> FitOptions:
    config = built.plan.config
    return FitOptions(
        grad_clip=config.grad_clip,
        stop=stop,
        precision=config.precision,
        compile=config.compile,
        dist=dctx,
        monitor=built.plan.selection.monitor,
        workers=config.workers,
        **fit_extras(built),
    )


def _finish(
    built: Built,
    history: History,
    selectors: tuple[BestWeights, EarlyStopping | None],
    outputs: tuple[RunWriter, TrackerCallback | None],
    device: Any,
    dctx: DistContext | None,
    echo: Callable[[str], None],
) -> TrainResult:
    from toolkit import runs
    from toolkit.models import LAST_WEIGHTS
    from toolkit.weights import state_dict_bytes

    plan, model, data = built.plan, built.model, built.data
    best, stopper = selectors
    writer, trackers = outputs
    last = state_dict_bytes(model)
    if best.weights:
        model.load_state_dict(best.weights)
    weights = state_dict_bytes(model)
    hashes = [runs.sha256_bytes(weights)]
    if dctx is not None:
        hashes = dctx.all_gather_object(hashes[0])
    if dctx is not None and not dctx.is_main:
        # Wait until rank 0 has written everything: torchrun ends the whole job
        # (and would restart it) as soon as any worker exits abnormally.
        dctx.barrier()
        return TrainResult(plan.run_dir, history, {}, model)
    task = get_task(plan.model.task)
    test = data.test
    if isinstance(test, Split):  # the loop moved its own copy; this one is still on the CPU
        test = Split(test.x.to(device), test.y.to(device))
    extra = {
        "selected": _selected(best, history),
        "test": test_metrics(model, data, test, task, device),
        "stopped_early": stopper.reason() if stopper and stopper.stopped_at else None,
        "world_size": len(hashes),
        "rank_weights_sha256": hashes,
        "compile": build.compile_stats() if plan.config.compile else None,
    }
    # hashes[0]: this rank's (rank 0's) digest, computed once above
    summary = writer.finish((weights, hashes[0]), last, history, plan, extra)
    if trackers is not None:
        trackers.close(summary, [plan.run_dir / runs.WEIGHTS, plan.run_dir / LAST_WEIGHTS])
    model.eval()
    if not plan.config.quiet:
        echo(_done_line(history, summary, task, plan.run_dir))
    if dctx is not None:
        dctx.barrier()
    return TrainResult(plan.run_dir, history, summary, model)


def _selected(best: BestWeights, history: History) -> dict[str, Any]:
    """The selected epoch, why, and its metrics (what ``tk runs`` shows as the run's
    validation figure: the epoch whose weights the run keeps, not the last one)."""
    selected = best.describe()
    row = next((r for r in history.epochs if r.get("epoch") == selected["epoch"]), None)
    if row is not None:
        selected["metrics"] = {k: v for k, v in row.items() if k != "epoch"}
    return selected


def _done_line(history: History, summary: dict[str, Any], task: Any, run_dir: Path) -> str:
    sel, test = summary["selected"], summary["test"]
    if task.metric == "accuracy":
        fig = f"test acc {task.show(test['accuracy'])}"
    else:
        fig = f"test MAE {test['mae']:.5f}, R2 {test['r2']:.4f}"
    stopped = " (stopped early)" if summary.get("stopped_early") else ""
    return (
        f"Done: {len(history.epochs)} epochs{stopped} in {history.seconds:.2f} s | selected "
        f"epoch {sel['epoch']} ({sel['monitor']} {sel['value']:.5g}) | {fig} | run: {run_dir}"
    )
