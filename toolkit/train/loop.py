"""The shared training loop: the only place in tk with an optimizer step.

``fit`` reads top to bottom in phases (the nanoGPT habit): everything on the
device once, an optional exact resume, then per epoch one pass over the training
split, a held-out evaluation, and the end-of-epoch events (callbacks, log points,
checkpoints, a requested stop). Metrics stay on the device until a log point or a
callback asks for them, so no step waits on a host sync.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from toolkit.checkpoint import TrainState
from toolkit.data import Data, Split
from toolkit.errors import TrainingError
from toolkit.registry import Recipe
from toolkit.tasks import get_task
from toolkit.train import build
from toolkit.train.batches import Stream, eval_source, train_batches
from toolkit.train.callbacks import Callback, Callbacks
from toolkit.train.metrics import History, MetricBuffer, accumulate, evaluate
from toolkit.train.schedule import Schedule
from toolkit.train.signals import Interrupted
from toolkit.train.state import FitOptions, Loop, restore, snapshot

if TYPE_CHECKING:
    import torch

    from toolkit.distributed import DistContext
    from toolkit.train.selection import Monitor


def fit(
    model: torch.nn.Module,
    data: Data,
    recipe: Recipe,
    *,
    task: str,
    device: Any = "cpu",
    seed: int = 42,
    log_every: int = 0,
    callbacks: Iterable[Callback] = (),
    checkpoint_every: int | None = None,
    resume: TrainState | None = None,
    options: FitOptions | None = None,
) -> History:
    """Train ``model`` on ``data.train``, evaluating ``data.val`` (else ``data.test``) each epoch.

    :param recipe: optimizer, lr, epochs, batch size (None: full batch), schedule.
    :param task: ``binary``, ``multiclass`` or ``regression``; picks loss and metric.
    :param log_every: every N epochs metrics go to the host and to ``on_log`` (0: at the end).
    :param callbacks: :class:`~toolkit.train.callbacks.Callback` objects, called in order.
    :param checkpoint_every: ``on_checkpoint`` every N epochs (0: the last only; None: never).
    :param resume: a TrainState to continue from, bit for bit.
    :param options: gradient clipping, precision, compile, a stop flag, the distributed
        job, the plateau monitor, DataLoader workers (:class:`~toolkit.train.state.FitOptions`).
    :returns: the per-epoch history; the model is trained in place and left in eval().
    :raises TrainingError: a non-finite loss (checked before each step) or gradient norm.
    :raises Interrupted: the stop flag was set (after a checkpoint when they are on).
    """
    # -- phase 1: model, data and optimizer on the device, once
    options = options or FitOptions()
    loop = setup(model, data, recipe, task, device, seed, options)
    thaw = options.finetune.callback() if options.finetune is not None else None
    loop.callbacks = Callbacks([thaw, *callbacks] if thaw is not None else callbacks)
    loop.log_every, loop.checkpoint_every = log_every, checkpoint_every

    # -- phase 2: continue a checkpoint exactly
    if resume is not None:
        restore(loop, resume)
    try:
        loop.callbacks.on_fit_start(loop)
        start = time.perf_counter()
        for epoch in loop.epochs():
            # -- phase 3: one pass over the training split (at the rate the schedule gives)
            lr = {"lr": loop.schedule.lr} if loop.schedule is not None else None
            train_sums = train_epoch(loop, epoch)
            # -- phase 4: held-out evaluation, no autograd
            held_out = evaluate(
                model, loop.data, loop.held_out, loop.task, loop.device, loop.workers
            )
            loop.buffer.add(epoch, train_sums, held_out, lr)
            # -- phase 5: callbacks, log points, checkpoints; stop when asked to
            if end_epoch(loop, epoch):
                break
        return finish(loop, start)
    except BaseException as exc:  # every callback hears of it (trackers close), then it goes on
        loop.callbacks.on_exception(loop, exc)
        raise


def setup(
    model: torch.nn.Module,
    data: Data,
    recipe: Recipe,
    task: str,
    device: Any,
    seed: int,
    options: FitOptions,
) -> Loop:
    """Phase 1: the model, the data and the optimizer on the device, the data order seeded."""
    import torch

    device = torch.device(device)
    dist, precision = options.dist, options.precision
    build.check_precision(precision, device)
    model.to(device)
    data = data.to(device)
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    train_split = data.train
    held_name, held_out = data.held_out
    n_train = len(train_split)
    bs = n_train if recipe.batch_size is None else min(recipe.batch_size, n_train)
    local_full, held_out = _shards(train_split, held_out, bs, rank, world)
    gen = torch.Generator(device=device if isinstance(train_split, Split) else "cpu")
    gen.manual_seed(seed)
    kind = get_task(task)
    loop = Loop(
        model=model,
        train_model=_train_model(model, device, dist, options.compile),
        data=data,
        recipe=recipe,
        task=kind,
        device=device,
        optimizer=_optimizer(model, recipe, options),
        # The CPU has a GradScaler too: fp16 runs here as it does on a GPU.
        scaler=torch.amp.GradScaler(device.type) if precision == "fp16" else None,
        schedule=None,
        gen=gen,
        batch_size=bs,
        train_split=train_split,
        held_out=eval_source(held_out, device, options.workers),
        buffer=MetricBuffer(kind.metric, held_name, dist),
        callbacks=Callbacks(),
        shard=(rank, world),
        local_full=local_full,
        grad_clip=options.grad_clip,
        stop=options.stop,
        workers=options.workers,
        # A host sync per step costs nothing on the CPU; on CUDA the check waits for
        # log points so the GPU is never stalled (checkpoints are checked before writing).
        check_every_step=device.type == "cpu",
        autocast=build.autocast(precision, device),
        dist=dist,
        # --freeze acts later (on_fit_start): a frozen parameter stays listed, and
        # clipping skips it while it has no gradient.
        params=[p for p in model.parameters() if p.requires_grad],
    )
    loop.schedule = make_schedule(loop, options.monitor)  # it needs the optimizer
    _training_data(loop, options, seed)
    return loop


def _training_data(loop: Loop, options: FitOptions, seed: int) -> None:
    """The augmenter of training batches, and the DataLoader of a streamed split."""
    in_memory = isinstance(loop.train_split, Split)
    per_sample = None
    if options.augment is not None:
        loop.augment, per_sample = _augmenter(options.augment, loop.data, seed, in_memory)
    if not in_memory:
        loop.stream = Stream(
            loop.train_split,
            loop.batch_size,
            loop.gen,
            loop.device,
            loop.shard,
            options.workers,
            per_sample,
        )


def _augmenter(aug: Any, data: Data, seed: int, in_memory: bool) -> tuple[Any, Any]:
    """The on-device batch augmenter, and for streamed data the workers' per-sample one."""
    from toolkit.augment import MIXING, BatchAugment, sample_transform

    spec = data.spec
    clamp = spec.feature_scale is not None  # pixels scaled from integers: [0, 1]
    shape = tuple(spec.feature_shape or ())
    if in_memory:
        return BatchAugment(aug, seed, spec.outputs, clamp), None
    transform = sample_transform(aug, shape)
    per_sample = (transform, seed) if transform is not None else None
    mixing = any(aug.has(k) for k in MIXING)
    batch = BatchAugment(aug, seed, spec.outputs, clamp, mixing_only=True) if mixing else None
    return batch, per_sample


def _optimizer(model: Any, recipe: Recipe, options: FitOptions) -> Any:
    ft = options.finetune
    if ft is None:
        return build.make_optimizer(model, recipe)
    return build.make_optimizer(model, recipe, ft.head, ft.head_lr)


def _shards(train: Any, held_out: Any, bs: int, rank: int, world: int) -> tuple[Any, Any]:
    """This rank's rows of a full-batch training split, and of the held-out split."""
    if world == 1 or not isinstance(train, Split):
        return None, held_out
    # Disjoint shards, cut once: full-batch steps and evaluation need no gather.
    local_full = train.shard(rank, world) if bs >= len(train) else None
    if isinstance(held_out, Split):
        held_out = held_out.shard(rank, world)
    return local_full, held_out


def steps_per_epoch(loop: Loop) -> int:
    """Optimizer steps in one epoch (global batches)."""
    n = len(loop.train_split)
    return 1 if loop.batch_size >= n else math.ceil(n / loop.batch_size)


def make_schedule(loop: Loop, monitor: Monitor | None) -> Schedule | None:
    """The recipe's learning-rate schedule on the loop's optimizer (None: a constant rate)."""
    r = loop.recipe
    if r.scheduler == "none" and not r.warmup_epochs:
        return None
    return Schedule(loop.optimizer, r, steps_per_epoch(loop), monitor)


def finish(loop: Loop, start: float) -> History:
    """After the last epoch: wait for the device, tell the callbacks, model in eval()."""
    import torch

    if loop.device.type == "cuda":
        torch.cuda.synchronize(loop.device)  # the time counts the queued work too
    seconds = time.perf_counter() - start
    loop.callbacks.on_fit_end(loop)
    loop.model.eval()
    moved = loop.counters
    return History(loop.task.name, loop.buffer.rows, seconds, moved.samples, moved.step)


def _train_model(model: Any, device: Any, dist: DistContext | None, compile: bool) -> Any:
    """What the training forward runs through: DDP in a distributed job, then compiled."""
    out = model
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
        out = DistributedDataParallel(model, device_ids=ids)
    return build.compiled(out) if compile else out


def train_epoch(loop: Loop, epoch: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Phase 3: one pass over the training split; returns its (loss, metric, rows) sums."""
    import torch

    loop.model.train()
    epoch_gen = loop.gen.get_state()
    loss_sum = metric_sum = None
    seen = 0
    moving = loop.counters
    if moving.partial is not None:  # resumed mid-epoch: the batches done so far count
        loss_sum = torch.tensor(moving.partial[0], device=loop.device)
        metric_sum = torch.tensor(moving.partial[1], device=loop.device)
        seen = int(moving.partial[2])
    first, moving.skip, moving.partial = moving.skip, 0, None
    batches = train_batches(
        loop.train_split,
        loop.data,
        loop.batch_size,
        loop.gen,
        loop.device,
        loop.task,
        start=first,
        shard=loop.shard,
        local_full=loop.local_full,
        stream=loop.stream,
        epoch=epoch,
    )
    for bi, (xb, yb, n_global) in enumerate(batches, start=first):
        target = yb  # what the loss sees: soft labels after MixUp/CutMix
        if loop.augment is not None:
            xb, target = loop.augment(xb, yb, epoch, bi, loop.shard[0])
        loss, out = train_step(loop, xb, target, n_global, epoch)
        # Metrics of the pre-step outputs, as the seed notes compute them.
        with torch.no_grad():
            n = len(yb)
            batch_loss = loss.detach().float()
            loss_sum = batch_loss * n if loss_sum is None else loss_sum.add_(batch_loss, alpha=n)
            metric_sum = accumulate(metric_sum, loop.task.metric_sum(out.detach().float(), yb))
        seen += n
        moving.samples += n
        if loop.callbacks.stepping:
            loop.callbacks.on_step(loop, epoch, bi + 1, steps_per_epoch(loop), batch_loss)
        if loop.dist is None and loop.stop is not None and loop.stop.signum is not None:
            _interrupt_mid_epoch(
                loop, epoch, bi + 1, [float(loss_sum), float(metric_sum), seen], epoch_gen
            )
    if loss_sum is None or metric_sum is None:  # this rank got no rows this epoch
        loss_sum = metric_sum = torch.zeros((), device=loop.device)
    return loss_sum, metric_sum, seen


def train_step(
    loop: Loop, xb: torch.Tensor, yb: torch.Tensor, n_global: int, epoch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward, checks and the optimizer step; returns (loss, outputs)."""
    import torch

    with loop.autocast:
        out = loop.train_model(xb)
        loss = loop.task.loss(out, yb)
    # DDP averages gradients over ranks; weighting each rank's mean by its share
    # makes the result the global batch's mean even for uneven shards.
    world = loop.shard[1]
    scaled = loss if len(yb) * world == n_global else loss * (len(yb) * world / n_global)
    opt, scaler = loop.optimizer, loop.scaler
    opt.zero_grad(set_to_none=True)
    (scaler.scale(scaled) if scaler is not None else scaled).backward()
    if loop.grad_clip is not None:
        if scaler is not None:
            scaler.unscale_(opt)
        norm = torch.nn.utils.clip_grad_norm_(loop.params, loop.grad_clip)
        # Under a GradScaler an overflowing fp16 gradient is expected: the scaler skips
        # the step and lowers its scale. Only an unscaled run has diverged here.
        if scaler is None and loop.check_every_step and not math.isfinite(norm.item()):
            raise TrainingError(
                f"gradient norm became {norm.item()} at epoch {epoch} step {loop.step + 1}",
                "a lower --lr",
            )
    if loop.check_every_step:
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingError(
                f"loss became {value} at epoch {epoch} step {loop.step + 1}; "
                "the weights were not updated with it",
                "a lower --lr, or --grad-clip",
            )
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    if loop.schedule is not None:
        loop.schedule.step_batch()
    loop.counters.step += 1
    return loss, out


def _interrupt_mid_epoch(
    loop: Loop, epoch: int, batches_done: int, sums: list[float], epoch_gen: Any
) -> None:
    loop.log()
    if loop.checkpoint_every is not None:
        state = snapshot(
            loop,
            epoch - 1,
            batch_index=batches_done,
            sums=sums,
            reason="interrupt",
            epoch_gen=epoch_gen,
        )
        loop.callbacks.on_checkpoint(loop, state)
    raise Interrupted(loop.stop.signum, f"interrupted at epoch {epoch} step {loop.step}")


def end_epoch(loop: Loop, epoch: int) -> bool:
    """Phase 5: callbacks, log point, checkpoint, stop requests. True ends training."""
    loop.callbacks.on_epoch_end(loop, epoch)
    if loop.schedule is not None:
        # Only a plateau schedule reads the monitor (a host sync each epoch).
        loop.schedule.step_epoch(loop.metrics() if loop.schedule.kind == "plateau" else None)
    last = epoch == loop.recipe.epochs or loop.stop_reason is not None
    every = loop.checkpoint_every
    want_ckpt = every is not None and (last or (every > 0 and epoch % every == 0))
    if (loop.log_every and epoch % loop.log_every == 0) or last or want_ckpt:
        loop.log()
    if want_ckpt:
        state = snapshot(loop, epoch, reason="final" if last else "periodic")
        loop.callbacks.on_checkpoint(loop, state)
    if not last and _stop_requested(loop):
        loop.log()
        if every is not None and not want_ckpt:
            loop.callbacks.on_checkpoint(loop, snapshot(loop, epoch, reason="interrupt"))
        signum = loop.stop.signum if loop.stop is not None else None
        raise Interrupted(signum or 2, f"interrupted after epoch {epoch}")
    return last


def _stop_requested(loop: Loop) -> bool:
    if loop.stop is None:
        return False
    if loop.dist is None:
        return loop.stop.signum is not None
    import torch

    # Ranks agree before stopping, or one would wait forever in a collective.
    flag = torch.tensor([loop.stop.signum or 0], device=loop.device)
    return bool(loop.dist.all_reduce_max(flag).item())
