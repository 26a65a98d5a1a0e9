"""The shared training loop: the only place in tk with an optimizer step.

``train(config)`` resolves a :class:`TrainConfig` against the plugin registry,
checks that model and dataset fit *before* anything is written, runs :func:`fit`
and writes the run directory. ``fit`` is the loop itself, usable as a library.

The loop reads top to bottom in phases (the nanoGPT habit): data to the device
once, batches by index, metrics accumulated on the device and copied to the host
only at log points, so no step waits on a host sync.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import __version__, distributed, runs
from toolkit.checkpoint import TrainState, capture_rng, restore_rng
from toolkit.config import TrainConfig
from toolkit.data import Data, Split, prepare
from toolkit.distributed import DistContext
from toolkit.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, TkError, TrainingError, UsageError
from toolkit.registry import OPTIMIZERS, DatasetSpec, ModelSpec, Recipe, Registry

if TYPE_CHECKING:
    import torch

METRIC = {"binary": "accuracy", "multiclass": "accuracy", "regression": "mae"}


# --------------------------------------------------------------------------- plan
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

    r = mspec.recipe
    batch = config.batch_size if config.batch_size is not None else r.batch_size
    if isinstance(batch, str):
        if batch.strip().lower() == "full":
            batch = None
        else:
            try:
                batch = int(batch)
            except ValueError:
                raise UsageError(
                    f"--batch-size must be a number or 'full', got {batch!r}"
                ) from None
    recipe = Recipe(
        optimizer=(config.optimizer or r.optimizer).lower(),
        lr=r.lr if config.lr is None else config.lr,
        epochs=r.epochs if config.epochs is None else config.epochs,
        batch_size=batch,
        momentum=r.momentum if config.momentum is None else config.momentum,
        weight_decay=r.weight_decay if config.weight_decay is None else config.weight_decay,
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
    log_every = config.log_every or max(1, recipe.epochs // 10)
    if log_every < 1:
        raise UsageError(f"--log-every must be at least 1, got {log_every}")
    if run_dir is None:
        run_dir = runs.plan_run_dir(
            config.runs_dir, mspec.name, config.name, config.out, config.overwrite
        )
    return Plan(config, mspec, dspec, params, data_params, recipe, log_every, run_dir)


# ------------------------------------------------------------------ building parts
def select_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; an unavailable CUDA is a UsageError."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device '{name}'", "--device auto|cpu|cuda|cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("CUDA is not available on this machine", "--device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"no {name}: this machine has {torch.cuda.device_count()} CUDA device(s)",
                "--device cuda:0",
            )
    elif device.type != "cpu":
        raise UsageError(f"unsupported device '{name}'", "--device auto|cpu|cuda|cuda:N")
    return device


def build_model(spec: ModelSpec, params: dict[str, Any], seed: int) -> torch.nn.Module:
    """Build a model from its factory with torch seeded, so weights are reproducible."""
    import torch

    torch.manual_seed(seed)
    model = spec.build(**params)
    if not isinstance(model, torch.nn.Module):
        raise TrainingError(
            f"model '{spec.name}': build() returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def load_data(spec: DatasetSpec, params: dict[str, Any]) -> Data:
    """Run a dataset's loader and convert its output (CPU tensors)."""
    return prepare(spec, spec.load(**params))


def make_optimizer(model: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The optimizer named by the recipe."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
    # Fused Adam/AdamW: one kernel for all parameters instead of a Python loop of
    # small ops per parameter (scripts/bench.py: circle 1.13x -> 0.94x the plain loop).
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    extra = {"fused": True} if fused and params else {}
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay, **extra)
    return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay, **extra)


# Evaluation batches hold at most this many features (4 MB of float32), so a
# 60,000-image test pass never materializes a large float copy.
EVAL_ELEMENTS = 1 << 20


def _eval_rows(split: Any, batch: int) -> int:
    shape = getattr(getattr(split, "x", None), "shape", None)
    if shape is None:
        return batch
    return max(1, min(batch, EVAL_ELEMENTS // max(1, math.prod(shape[1:]))))


def check_fit(model: torch.nn.Module, mspec: ModelSpec, dspec: DatasetSpec, data: Data) -> None:
    """One dry batch: the dataset's features go in and the outputs the task needs come out.

    A mismatch is a UsageError naming both shapes, raised before any run directory exists.
    """
    import torch

    if tuple(mspec.input.shape) != tuple(dspec.feature_shape):
        raise UsageError(
            f"model '{mspec.name}' takes input of shape {tuple(mspec.input.shape)} but dataset "
            f"'{dspec.name}' has features of shape {tuple(dspec.feature_shape)}",
            "tk list datasets",
        )
    train = data.train
    if isinstance(train, Split):
        xb = data.features(train.x[:2])
    else:
        xb = data.features(torch.stack([train[i][0] for i in range(min(2, len(train)))]))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(xb)
    except RuntimeError as exc:
        raise UsageError(
            f"model '{mspec.name}' cannot take dataset '{dspec.name}' features of shape "
            f"{tuple(xb.shape[1:])}: {' '.join(str(exc).split())[:200]}"
        ) from None
    finally:
        model.train(was_training)
    want = dspec.outputs
    got = tuple(out.shape)
    ok = got == (len(xb), want) or (want == 1 and got == (len(xb),))
    if not ok:
        what = {"binary": "1 logit", "multiclass": f"{want} logits ({want} classes)"}.get(
            dspec.target, f"{want} value(s)"
        )
        raise UsageError(
            f"model '{mspec.name}' outputs shape {got[1:]} per sample but dataset "
            f"'{dspec.name}' needs {what} per sample",
            "--param to change the model's outputs, or another --dataset",
        )


# --------------------------------------------------------------------------- loop
def _loss_fn(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    import torch.nn.functional as F

    if task == "binary":
        return lambda out, y: F.binary_cross_entropy_with_logits(out.reshape(y.shape), y)
    if task == "multiclass":
        return F.cross_entropy
    return lambda out, y: F.mse_loss(out.reshape(y.shape), y)


def _metric_sum(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Sums, not means: batches of unequal size add up exactly to the epoch's value.
    if task == "binary":
        return ((out.reshape(y.shape) > 0) == (y > 0.5)).sum()
    if task == "multiclass":
        return (out.argmax(dim=1) == y).sum()
    return (out.reshape(y.shape) - y).abs().sum() / (y[0].numel())


def _targets(y: torch.Tensor, task: str) -> torch.Tensor:
    import torch

    if task == "binary":
        return y.reshape(-1).to(torch.float32)
    if task == "multiclass":
        return y.reshape(-1).to(torch.int64)
    return y.reshape(y.shape[0], -1).to(torch.float32)


@dataclass
class History:
    """Per-epoch metrics of one ``fit`` call."""

    task: str
    epochs: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    samples: int = 0
    steps: int = 0

    @property
    def last(self) -> dict[str, float]:
        """The final epoch's metrics."""
        return self.epochs[-1] if self.epochs else {}


class StopFlag:
    """Set by a signal handler; the loop stops after the current step when it is set."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def request(self, signum: int) -> None:
        """Ask the loop to stop (a second request changes nothing)."""
        if self.signum is None:
            self.signum = signum


class Interrupted(TkError):
    """Training stopped on SIGINT/SIGTERM after writing a checkpoint."""

    def __init__(self, signum: int, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        import signal

        self.exit_code = EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED


def _batches(
    split: Any,
    data: Data,
    bs: int,
    gen: Any,
    device: Any,
    task: str,
    start: int = 0,
    shard: tuple[int, int] = (0, 1),
    local_full: Split | None = None,
    epoch: int = 0,
):
    """Yield ``(x, y, rows in the global batch)``; each rank gets a disjoint shard."""
    import torch

    rank, world = shard
    if isinstance(split, Split):
        n = len(split)
        if bs >= n:
            # Full batch: no gather, no shuffle (the order of one batch does not matter).
            if start == 0:
                local = local_full if local_full is not None else split
                yield data.features(local.x), local.y, n
            return
        # Every rank draws the same permutation (same seed) and takes its stride of
        # each global batch, so shards are disjoint and cover the batch.
        perm = torch.randperm(n, generator=gen, device=split.x.device)
        for idx in perm.split(bs)[start:]:
            local_idx = idx if world == 1 else idx[rank::world]
            # index_select: about 3x cheaper than advanced indexing for a row gather.
            yield (
                data.features(split.x.index_select(0, local_idx)),
                split.y.index_select(0, local_idx),
                len(idx),
            )
        return
    # Data that does not fit in memory: a DataLoader, pinned memory, async copies.
    loader_gen = torch.Generator()
    loader_gen.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
    if world > 1:
        sampler = torch.utils.data.DistributedSampler(
            split, num_replicas=world, rank=rank, shuffle=True, seed=int(loader_gen.initial_seed())
        )
        sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            split,
            batch_size=max(1, bs // world),
            sampler=sampler,
            pin_memory=device.type == "cuda",
        )
    else:
        loader = torch.utils.data.DataLoader(
            split,
            batch_size=bs,
            shuffle=True,
            generator=loader_gen,
            pin_memory=device.type == "cuda",
        )
    for i, (xb, yb) in enumerate(loader):
        if i < start:
            continue
        xb = xb.to(device, non_blocking=True)
        yield data.features(xb), _targets(yb.to(device, non_blocking=True), task), len(yb) * world


def evaluate(
    model: torch.nn.Module, data: Data, split: Any, task: str, device: Any, batch: int = 8192
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Sum of loss, sum of metric and row count over a split, on the device, no sync."""
    import torch
    import torch.nn.functional as F

    loss_sum = torch.zeros((), device=device)
    metric_sum = torch.zeros((), device=device)
    n = 0
    model.eval()
    with torch.inference_mode():
        for xb, yb in _eval_batches(split, data, _eval_rows(split, batch), device, task):
            out = model(xb)
            if task == "binary":
                loss = F.binary_cross_entropy_with_logits(
                    out.reshape(yb.shape), yb, reduction="sum"
                )
            elif task == "multiclass":
                loss = F.cross_entropy(out, yb, reduction="sum")
            else:
                loss = F.mse_loss(out.reshape(yb.shape), yb, reduction="sum") / yb[0].numel()
            loss_sum += loss
            metric_sum += _metric_sum(task, out, yb)
            n += len(yb)
    return loss_sum, metric_sum, n


def _eval_batches(split: Any, data: Data, bs: int, device: Any, task: str):
    import torch

    if isinstance(split, Split):
        if len(split) <= bs:
            yield data.features(split.x), split.y
            return
        for i in range(0, len(split), bs):
            yield data.features(split.x[i : i + bs]), split.y[i : i + bs]
        return
    loader = torch.utils.data.DataLoader(split, batch_size=bs, pin_memory=device.type == "cuda")
    for xb, yb in loader:
        yb = _targets(yb.to(device, non_blocking=True), task)
        yield data.features(xb.to(device, non_blocking=True)), yb


PRECISIONS = ("fp32", "bf16", "fp16")


def _autocast(precision: str, device: Any) -> Any:
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def check_precision(precision: str, device: Any) -> None:
    """Refuse precisions the device cannot train in, with the flag that works."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise UsageError(
            "fp16 mixed precision needs a CUDA device (its GradScaler is CUDA-only)",
            "--precision bf16 on the CPU",
        )


def _compiled(module: Any) -> Any:
    import torch

    try:
        return torch.compile(module)
    except Exception as exc:  # e.g. a Python version torch.compile does not support
        print(
            f"tk: warning: --compile unavailable ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:120]}); training eagerly",
            file=sys.stderr,
        )
        return module


def fit(
    model: torch.nn.Module,
    data: Data,
    recipe: Recipe,
    *,
    task: str,
    device: Any = "cpu",
    seed: int = 42,
    log_every: int = 0,
    on_log: Callable[[list[dict[str, float]]], None] | None = None,
    on_epoch: Callable[[int], None] | None = None,
    grad_clip: float | None = None,
    checkpoint_every: int = 0,
    on_checkpoint: Callable[[TrainState], None] | None = None,
    resume: TrainState | None = None,
    stop: StopFlag | None = None,
    precision: str = "fp32",
    compile: bool = False,
    dist: DistContext | None = None,
) -> History:
    """Train ``model`` on ``data.train``, evaluating on ``data.test`` every epoch.

    :param recipe: optimizer, lr, epochs, batch size (None: full batch).
    :param task: ``binary``, ``multiclass`` or ``regression``; picks loss and metric.
    :param log_every: every N epochs the pending metrics are copied to the host and
        passed to ``on_log`` (0: only at the end).
    :param on_epoch: called after each epoch with its number (progress bars).
    :param grad_clip: clip the total gradient norm (a non-finite norm stops training).
    :param checkpoint_every: every N epochs ``on_checkpoint`` receives a TrainState.
    :param resume: a TrainState to continue from, bit for bit.
    :param stop: when its ``signum`` is set, the loop stops after the current step
        (after the current epoch in a distributed job), hands ``on_checkpoint`` a
        TrainState and raises :class:`Interrupted`.
    :param precision: ``fp32``, ``bf16`` (autocast) or ``fp16`` (autocast + GradScaler).
    :param compile: run the training forward through ``torch.compile``.
    :param dist: the distributed job this process belongs to (DDP, sharded batches,
        metrics reduced across ranks); None for one process.
    :returns: the per-epoch history; the model is trained in place and left in eval().
    :raises TrainingError: a non-finite loss (checked every step before the
        optimizer step, so the weights stay finite) or gradient norm.
    """
    import torch

    # -- phase 1: everything on the device, once
    device = torch.device(device)
    check_precision(precision, device)
    model.to(device)
    data = data.to(device)
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    train_split, test_split = data.train, data.test
    n_train = len(train_split)
    bs = n_train if recipe.batch_size is None else min(recipe.batch_size, n_train)
    local_full = None
    if world > 1 and isinstance(train_split, Split):
        # Disjoint shards, cut once: full-batch steps and evaluation need no gather.
        if bs >= n_train:
            local_full = Split(
                train_split.x[rank::world].contiguous(), train_split.y[rank::world].contiguous()
            )
        if isinstance(test_split, Split):
            test_split = Split(
                test_split.x[rank::world].contiguous(), test_split.y[rank::world].contiguous()
            )
    gen = torch.Generator(device=device if isinstance(train_split, Split) else "cpu")
    gen.manual_seed(seed)
    optimizer = make_optimizer(model, recipe)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    loss_fn = _loss_fn(task)
    metric = METRIC[task]
    keys = ("train_loss", f"train_{metric}", "test_loss", f"test_{metric}")
    params = [p for p in model.parameters() if p.requires_grad]
    train_model: Any = model
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
        train_model = DistributedDataParallel(model, device_ids=ids)
    if compile:
        train_model = _compiled(train_model)
    # A host sync per step costs nothing on the CPU; on CUDA the check waits for
    # log points so the GPU is never stalled (checkpoints are checked before writing).
    check_every_step = device.type == "cpu"

    history = History(task)
    start_epoch, step, skip, partial = 1, 0, 0, None
    if resume is not None:
        model.load_state_dict(resume.model_state)
        optimizer.load_state_dict(resume.optimizer_state)
        if scaler is not None and resume.scaler_state:
            scaler.load_state_dict(resume.scaler_state)
        history.epochs = [dict(r) for r in resume.history]
        restore_rng(resume)
        start_epoch, step = resume.epoch + 1, resume.step
        if resume.batch_index:
            gen.set_state(resume.epoch_gen_state)
            skip, partial = resume.batch_index, resume.partial
        elif resume.gen_state is not None:
            gen.set_state(resume.gen_state)
    pending: list[torch.Tensor] = []
    first_pending = start_epoch

    def flush(upto: int) -> None:
        nonlocal pending, first_pending
        if not pending:
            return
        sums = torch.stack(pending)
        if dist is not None:
            dist.all_reduce_sum(sums)  # one collective per log interval
        values = sums.tolist()  # the one host sync per log interval
        rows = [
            {
                "epoch": first_pending + i,
                keys[0]: v[0] / v[2],
                keys[1]: v[1] / v[2],
                keys[2]: v[3] / v[5],
                keys[3]: v[4] / v[5],
            }
            for i, v in enumerate(values)
        ]
        for row in rows:
            bad = [k for k in keys if not math.isfinite(row[k])]
            if bad:
                raise TrainingError(
                    f"{bad[0].replace('_', ' ')} became {row[bad[0]]} at epoch {row['epoch']}",
                    "a lower --lr, or --grad-clip",
                )
        history.epochs.extend(rows)
        pending = []
        first_pending = upto + 1
        if on_log is not None:
            on_log(rows)

    def snapshot(
        epoch_done: int, batch_index: int, sums: list[float], reason: str, epoch_gen: Any
    ) -> TrainState:
        state = TrainState(
            epoch=epoch_done,
            step=step,
            batch_index=batch_index,
            partial=sums,
            history=list(history.epochs),
            model_state=model.state_dict(),
            optimizer_state=optimizer.state_dict(),
            gen_state=gen.get_state(),
            epoch_gen_state=epoch_gen,
            reason=reason,
            scaler_state=scaler.state_dict() if scaler is not None else None,
        )
        capture_rng(state)
        return state

    def stop_requested() -> bool:
        if stop is None:
            return False
        if dist is None:
            return stop.signum is not None
        # Ranks agree before stopping, or one would wait forever in a collective.
        flag = torch.tensor([stop.signum or 0], device=device)
        return bool(dist.all_reduce_max(flag).item())

    autocast = _autocast(precision, device)
    start = time.perf_counter()
    for epoch in range(start_epoch, recipe.epochs + 1):
        # -- phase 2: one pass over the training split
        model.train()
        epoch_gen = gen.get_state()
        loss_sum = torch.zeros((), device=device)
        metric_sum = torch.zeros((), device=device)
        seen = 0
        if partial is not None:
            loss_sum += partial[0]
            metric_sum += partial[1]
            seen = int(partial[2])
        first_batch, skip, partial = skip, 0, None
        batches = _batches(
            train_split, data, bs, gen, device, task, first_batch, (rank, world), local_full, epoch
        )
        for bi, (xb, yb, n_global) in enumerate(batches, start=first_batch):
            with autocast:
                out = train_model(xb)
                loss = loss_fn(out, yb)
            # DDP averages gradients over ranks; weighting each rank's mean by its
            # share makes the result the global batch's mean even for uneven shards.
            scaled = loss if len(yb) * world == n_global else loss * (len(yb) * world / n_global)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(scaled).backward()
            else:
                scaled.backward()
            if grad_clip is not None:
                if scaler is not None:
                    scaler.unscale_(optimizer)
                norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
                if check_every_step and not math.isfinite(norm.item()):
                    raise TrainingError(
                        f"gradient norm became {norm.item()} at epoch {epoch} step {step + 1}",
                        "a lower --lr",
                    )
            if check_every_step:
                value = loss.item()
                if not math.isfinite(value):
                    raise TrainingError(
                        f"loss became {value} at epoch {epoch} step {step + 1}; "
                        "the weights were not updated with it",
                        "a lower --lr, or --grad-clip",
                    )
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            step += 1
            # Metrics of the pre-step outputs, as the seed notes compute them.
            with torch.no_grad():
                loss_sum += loss.detach().float() * len(yb)
                metric_sum += _metric_sum(task, out.detach().float(), yb)
            seen += len(yb)
            history.samples += len(yb)
            if dist is None and stop is not None and stop.signum is not None:
                flush(epoch - 1)
                sums = [float(loss_sum), float(metric_sum), float(seen)]
                state = snapshot(epoch - 1, bi + 1, sums, "interrupt", epoch_gen)
                if on_checkpoint is not None:
                    on_checkpoint(state)
                raise Interrupted(stop.signum, f"interrupted at epoch {epoch} step {step}")
        history.steps = step

        # -- phase 3: held-out evaluation, no autograd
        test_loss, test_metric, n_test = evaluate(model, data, test_split, task, device)
        pending.append(
            torch.stack(
                [
                    loss_sum,
                    metric_sum,
                    loss_sum.new_tensor(float(seen)),
                    test_loss,
                    test_metric,
                    test_loss.new_tensor(float(n_test)),
                ]
            )
        )

        # -- phase 4: report and checkpoint at their intervals only
        last = epoch == recipe.epochs
        want_ckpt = on_checkpoint is not None and (
            last or (checkpoint_every and epoch % checkpoint_every == 0)
        )
        if (log_every and epoch % log_every == 0) or last or want_ckpt:
            flush(epoch)
        if want_ckpt:
            on_checkpoint(
                snapshot(epoch, 0, [0.0, 0.0, 0.0], "final" if last else "periodic", None)
            )
        if on_epoch is not None:
            on_epoch(epoch)
        if not last and stop_requested():
            flush(epoch)
            if on_checkpoint is not None and not want_ckpt:
                on_checkpoint(snapshot(epoch, 0, [0.0, 0.0, 0.0], "interrupt", None))
            raise Interrupted(stop.signum or 2, f"interrupted after epoch {epoch}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    history.steps = step
    history.seconds = time.perf_counter() - start
    model.eval()
    return history


# ------------------------------------------------------------------------ output
def format_line(row: dict[str, float], task: str) -> str:
    """The seed notes' progress line for one epoch."""
    e = int(row["epoch"])
    if task == "regression":
        return (
            f"Epoch: {e} | Loss: {row['train_loss']:.5f}, MAE: {row['train_mae']:.5f} | "
            f"Test loss: {row['test_loss']:.5f}, Test MAE: {row['test_mae']:.5f}"
        )
    return (
        f"Epoch: {e} | Loss: {row['train_loss']:.5f}, Accuracy: {100 * row['train_accuracy']:.2f}% "
        f"| Test loss: {row['test_loss']:.5f}, Test acc: {100 * row['test_accuracy']:.2f}%"
    )


class _Reporter:
    """Plain lines when stdout is not a terminal; a rich progress bar when it is."""

    def __init__(self, total: int, task: str, quiet: bool) -> None:
        self.task = task
        self.quiet = quiet
        self.progress = None
        self.total = total
        self.last_update = 0.0
        if not quiet and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self.progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=True,
                refresh_per_second=8,
            )
            self.task_id = self.progress.add_task("epochs", total=total)
            self.progress.start()

    def log(self, rows: list[dict[str, float]]) -> None:
        if self.quiet:
            return
        line = format_line(rows[-1], self.task)
        if self.progress is not None:
            self.progress.console.print(line)
        else:
            print(line, flush=True)

    def epoch(self, epoch: int) -> None:
        if self.progress is None:
            return
        # Bounded update rate: a 1000-epoch run must not pay for 1000 redraws.
        now = time.perf_counter()
        if now - self.last_update > 0.1 or epoch == self.total:
            self.progress.update(self.task_id, completed=epoch)
            self.last_update = now

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@dataclass
class TrainResult:
    """What ``train`` returns: the run directory, its history and the trained model."""

    run_dir: Path
    history: History
    summary: dict[str, Any]
    model: Any = None


def _state_dict_bytes(model: torch.nn.Module, metadata: dict[str, str]) -> bytes:
    from safetensors.torch import save

    # Clone: safetensors refuses tensors that share storage (tied weights).
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return save(tensors, metadata=metadata)


def _versions(registry: Registry, plan: Plan) -> dict[str, Any]:
    import torch

    msrc = registry.source("model", plan.model.name)
    dsrc = registry.source("dataset", plan.dataset.name)
    return {
        "tk": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model_plugin": {
            "distribution": msrc.distribution,
            "version": msrc.version,
            "entry_point": msrc.entry_point,
        },
        "dataset_plugin": {
            "distribution": dsrc.distribution,
            "version": dsrc.version,
            "entry_point": dsrc.entry_point,
        },
    }


def run_config(plan: Plan, device: Any, registry: Registry) -> dict[str, Any]:
    """The fully resolved ``config.json`` of a run."""
    m, d = plan.model, plan.dataset
    return {
        "model": m.name,
        "params": plan.params,
        "dataset": d.name,
        "data_params": plan.data_params,
        "task": m.task,
        "input": m.input.to_json(),
        "outputs": d.outputs,
        "class_names": list(d.class_names) if d.class_names else None,
        "feature_scale": d.feature_scale,
        "recipe": plan.recipe.to_json(),
        "seed": plan.config.seed,
        "device": str(device),
        "log_every": plan.log_every,
        "tolerance": {"atol": m.tolerance.atol, "rtol": m.tolerance.rtol},
        "versions": _versions(registry, plan),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _resume_source(resume: str, runs_dir: str) -> tuple[Path, Path]:
    """The run directory and the checkpoint file that ``--resume`` names."""
    from toolkit import checkpoint

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


def _stored_config(run_dir: Path) -> dict[str, Any]:
    try:
        stored = json.loads((run_dir / runs.CONFIG).read_text())
    except json.JSONDecodeError:
        stored = None
    required = ("model", "dataset", "recipe", "seed")
    if not isinstance(stored, dict) or any(k not in stored for k in required):
        raise UsageError(f"{run_dir / runs.CONFIG} is incomplete; cannot resume this run")
    return stored


def _resume_config(config: TrainConfig, stored: dict[str, Any]) -> TrainConfig:
    """The stored run's config with the values given on this command line on top."""
    recipe = stored["recipe"]
    batch = recipe["batch_size"]
    return replace(
        config,
        model=config.model or stored["model"],
        dataset=config.dataset or stored["dataset"],
        params={**stored.get("params", {}), **config.params},
        data_params={**stored.get("data_params", {}), **config.data_params},
        epochs=config.epochs if config.epochs is not None else recipe["epochs"],
        batch_size=config.batch_size if config.batch_size is not None else batch,
        lr=config.lr if config.lr is not None else recipe["lr"],
        optimizer=config.optimizer or recipe["optimizer"],
        momentum=config.momentum if config.momentum is not None else recipe["momentum"],
        weight_decay=(
            config.weight_decay if config.weight_decay is not None else recipe["weight_decay"]
        ),
        seed=config.seed if config.seed is not None else stored["seed"],
        grad_clip=config.grad_clip if config.grad_clip is not None else stored.get("grad_clip"),
    )


def _config_diff(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    changes = []
    for key in ("model", "dataset", "params", "data_params", "seed", "grad_clip"):
        if stored.get(key) != new.get(key):
            changes.append(f"{key} {stored.get(key)!r} -> {new.get(key)!r}")
    for key, old in stored["recipe"].items():
        if key != "epochs" and new["recipe"].get(key) != old:
            changes.append(f"{key} {old!r} -> {new['recipe'].get(key)!r}")
    return changes


def _agree_on_run(config: TrainConfig, dctx: DistContext, registry: Registry) -> TrainConfig:
    """Rank 0 decides the run directory (new, or resumed after a restart); all ranks use it."""
    decision: dict[str, Any] | None = None
    if dctx.is_main:
        try:
            decision = _main_rank_decision(config, dctx, registry)
        except TkError as exc:
            decision = {"error": str(exc), "code": exc.exit_code}
    decision = dctx.broadcast_object(decision)
    assert decision is not None  # broadcast always delivers rank 0's dict
    if "error" in decision:
        raise distributed.WorkerError(decision["error"], decision["code"])
    if "resume" in decision:
        return replace(config, resume=decision["resume"], out=None, name=None)
    return replace(config, out=decision["run_dir"], name=None, overwrite=True)


def _main_rank_decision(
    config: TrainConfig, dctx: DistContext, registry: Registry
) -> dict[str, Any]:
    from toolkit import checkpoint

    if config.resume:
        _, ckpt = _resume_source(config.resume, config.runs_dir)
        return {"resume": str(ckpt)}
    if dctx.restart_count > 0:
        # torchrun restarted every worker: continue from the last checkpoint.
        prev = distributed.store_get(dctx.store, distributed.RUN_DIR_KEY) or config.out
        if prev and Path(prev).is_dir():
            checkpoint.cleanup(prev)
            listed = checkpoint.list_checkpoints(prev)
            if listed:
                return {"resume": str(listed[-1])}
            return {"run_dir": prev}
    if not config.model:
        raise UsageError("no model given", "tk train MODEL, or tk train --resume RUN")
    plan = resolve(config, registry)
    dctx.store.set(distributed.RUN_DIR_KEY, str(plan.run_dir))
    return {"run_dir": str(plan.run_dir)}


class _Signals:
    """SIGINT/SIGTERM set a StopFlag instead of raising, for the duration of training."""

    def __init__(self, stop: StopFlag) -> None:
        self.stop = stop
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return self

        def handler(signum: int, frame: Any) -> None:
            if self.stop.signum is None:
                print(
                    "\ntk: stopping after this step and writing a checkpoint...",
                    file=sys.stderr,
                    flush=True,
                )
            self.stop.request(signum)

        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        for sig, old in self.previous.items():
            # After a stop, a repeated Ctrl-C/SIGTERM must not kill the process
            # halfway through its exit: ignore them from here on.
            signal.signal(sig, signal.SIG_IGN if self.stop.signum is not None else old)


def train(
    config: TrainConfig, registry: Registry | None = None, echo: Callable[[str], None] = print
) -> TrainResult:
    """Train a registered model on a registered dataset and write its run directory.

    Validation (names, parameters, data, one dry batch) happens before the run
    directory is created, so a bad command leaves nothing behind. With
    ``config.resume`` the run continues from its newest valid checkpoint, exactly.
    """
    from toolkit import checkpoint

    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()

    dctx = None
    if distributed.requested():
        import torch

        cuda = config.device.startswith("cuda") or (
            config.device == "auto" and torch.cuda.is_available()
        )
        dctx = distributed.init_from_env("cuda" if cuda else "cpu")
        if cuda:
            config = replace(config, device=f"cuda:{dctx.local_rank}")
        try:
            config = _agree_on_run(config, dctx, registry)
        except TkError:
            dctx.close()
            raise
    main = dctx is None or dctx.is_main
    if not main:
        config = replace(config, quiet=True)

    # -- what to run: a new run, or a stored one continued
    resume_state = None
    stored: dict[str, Any] | None = None
    if config.resume:
        run_dir, ckpt_path = _resume_source(config.resume, config.runs_dir)
        # The checkpoint is checked first: a file that is not a tk checkpoint (a
        # pickle, say) is refused before anything else is read.
        resume_state = checkpoint.load(ckpt_path)
        stored = _stored_config(run_dir)
        config = _resume_config(config, stored)
        plan = resolve(config, registry, run_dir=run_dir)
    else:
        if not config.model:
            raise UsageError("no model given", "tk train MODEL, or tk train --resume RUN")
        plan = resolve(config, registry)
    seed = config.seed_value

    import torch

    device = select_device(config.device)
    data = load_data(plan.dataset, plan.data_params)
    model = build_model(plan.model, plan.params, seed)
    check_fit(model, plan.model, plan.dataset, data)
    if config.init_weights:
        state = checkpoint.load_weights_file(config.init_weights)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise UsageError(
                f"{config.init_weights} does not fit model '{plan.model.name}': "
                f"{' '.join(str(exc).split())[:200]}"
            ) from None

    cfg = run_config(plan, device, registry)
    cfg["seed"] = seed
    cfg["grad_clip"] = config.grad_clip
    if stored is not None:
        changes = _config_diff(stored, cfg)
        if changes and not config.allow_config_change:
            raise UsageError(
                f"resuming {plan.run_dir} with a changed config: {'; '.join(changes)}",
                "drop those options, or --allow-config-change",
            )
        if plan.recipe.epochs < resume_state.epoch:
            raise UsageError(
                f"--epochs {plan.recipe.epochs} is lower than the {resume_state.epoch} epochs "
                f"already done in {plan.run_dir}",
                f"--epochs {resume_state.epoch} or more",
            )
        cfg["resumed_from"] = ckpt_path.resolve().relative_to(plan.run_dir.resolve()).as_posix()
        cfg["created"] = stored.get("created", cfg["created"])

    check_precision(config.precision, device)
    cfg["precision"] = config.precision
    cfg["compile"] = config.compile
    cfg["world_size"] = dctx.world_size if dctx is not None else 1
    run_dir = plan.run_dir
    if main:
        if stored is None:
            if run_dir.exists() and config.overwrite:
                import shutil

                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True)
        runs.atomic_write_json(run_dir / runs.CONFIG, cfg)

    task = plan.model.task
    reporter = _Reporter(plan.recipe.epochs, task, config.quiet)
    metric_rows: list[dict[str, float]] = list(resume_state.history) if resume_state else []
    saved: list[Path] = []

    def on_log(rows: list[dict[str, float]]) -> None:
        metric_rows.extend(rows)
        reporter.log(rows)

    def on_checkpoint(state: TrainState) -> None:
        if not main:
            return
        bad = [k for k, v in state.model_state.items() if not bool(torch.isfinite(v).all())]
        if bad:
            raise TrainingError(f"parameter '{bad[0]}' is not finite; no checkpoint written")
        saved.append(checkpoint.save(run_dir, state, keep=config.keep_checkpoints))
        _write_metrics(run_dir, state.history)

    if not config.quiet:
        bs = plan.recipe.batch_size or "full"
        verb = f"Resuming {run_dir} at epoch {resume_state.epoch + 1}: " if resume_state else ""
        echo(
            f"{verb}Training {plan.model.name} on {plan.dataset.name} ({device}): "
            f"{plan.recipe.optimizer} lr={plan.recipe.lr} epochs={plan.recipe.epochs} "
            f"batch={bs} seed={seed}"
        )
    stop = StopFlag()
    try:
        with _Signals(stop):
            history = fit(
                model,
                data,
                plan.recipe,
                task=task,
                device=device,
                seed=seed,
                log_every=plan.log_every,
                on_log=on_log,
                on_epoch=reporter.epoch,
                grad_clip=config.grad_clip,
                checkpoint_every=config.checkpoint_every,
                on_checkpoint=on_checkpoint,
                resume=resume_state,
                stop=stop,
                precision=config.precision,
                compile=config.compile,
                dist=dctx,
            )
    except Interrupted as exc:
        reporter.close()
        where = saved[-1] if saved else None
        exc.message = f"{exc.message}; checkpoint saved: {where}"
        exc.hint = f"tk train --resume {run_dir}"
        raise
    except TrainingError as exc:
        reporter.close()
        if main:
            _write_metrics(run_dir, metric_rows)
        valid = checkpoint.newest_valid_checkpoint(run_dir)
        if valid is not None:
            exc.message += f"; last good checkpoint: {valid}"
            exc.hint = f"tk train --resume {run_dir} --lr SMALLER --allow-config-change"
        raise
    finally:
        reporter.close()

    # One metadata key only: safetensors keeps metadata in a hash map, so several
    # keys come out in random order and the same weights would hash differently.
    weights = _state_dict_bytes(model, {"format": "pt"})
    rank_hashes = [runs.sha256_bytes(weights)]
    if dctx is not None:
        rank_hashes = dctx.all_gather_object(rank_hashes[0])
    if not main:
        # Wait until rank 0 has written everything: torchrun ends the whole job
        # (and would restart it) as soon as any worker exits abnormally.
        dctx.barrier()
        return TrainResult(run_dir, history, {}, model)
    _write_metrics(run_dir, history.epochs)
    runs.atomic_write_bytes(run_dir / runs.WEIGHTS, weights)
    checkpoint.record(run_dir, run_dir / runs.WEIGHTS, runs.sha256_bytes(weights))
    summary = {
        "model": plan.model.name,
        "dataset": plan.dataset.name,
        "epochs": len(history.epochs),
        "steps": history.steps,
        "seconds": round(history.seconds, 4),
        "samples_per_second": round(history.samples / max(history.seconds, 1e-9), 1),
        "final": history.last,
        "weights_sha256": runs.sha256_bytes(weights),
        "torch_threads": torch.get_num_threads(),
        "world_size": len(rank_hashes),
        "rank_weights_sha256": rank_hashes,
    }
    runs.atomic_write_json(run_dir / runs.SUMMARY, summary)
    runs.set_latest(config.runs_dir, run_dir)
    if not config.quiet:
        last = history.last
        metric = METRIC[task]
        if metric == "accuracy":
            fig = (
                f"train acc {100 * last['train_accuracy']:.2f}% | "
                f"test acc {100 * last['test_accuracy']:.2f}%"
            )
        else:
            fig = f"train MAE {last['train_mae']:.5f} | test MAE {last['test_mae']:.5f}"
        echo(
            f"Done: {len(history.epochs)} epochs in {history.seconds:.2f} s | {fig} | "
            f"run: {run_dir}"
        )
    if dctx is not None:
        dctx.barrier()
    return TrainResult(run_dir, history, summary, model)


def _write_metrics(run_dir: Path, rows: list[dict[str, float]]) -> None:
    if not rows:
        return
    runs.atomic_write_text(
        run_dir / runs.METRICS_JSONL, "".join(json.dumps(r) + "\n" for r in rows)
    )
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join(repr(r[k]) for k in keys) for r in rows]
    runs.atomic_write_text(run_dir / runs.METRICS_CSV, "\n".join(lines) + "\n")


def rebuild_model(run: runs.Run, registry: Registry | None = None) -> torch.nn.Module:
    """The eager model of a run: built through the registry, weights loaded, in eval()."""
    from safetensors.torch import load_file

    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()
    cfg = run.config
    spec = registry.model(cfg["model"])
    model = build_model(spec, spec.resolve_params(cfg.get("params", {})), cfg.get("seed", 0))
    if not run.weights.is_file():
        raise UsageError(f"{run.path} has no {runs.WEIGHTS} (the run did not finish)")
    from toolkit.checkpoint import check_file

    check_file(run.weights)  # refuses weights that no longer match the run's manifest
    state = load_file(str(run.weights))  # safetensors: no pickle, no code runs
    model.load_state_dict(state)
    return model.eval()
