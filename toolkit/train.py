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

from toolkit import __version__, runs
from toolkit.config import TrainConfig
from toolkit.data import Data, Split, prepare
from toolkit.errors import TrainingError, UsageError
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


def resolve(config: TrainConfig, registry: Registry) -> Plan:
    """Check names, parameters and the recipe; decide the run directory.

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
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


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

    @property
    def last(self) -> dict[str, float]:
        """The final epoch's metrics."""
        return self.epochs[-1] if self.epochs else {}


def _batches(split: Any, data: Data, bs: int, gen: Any, device: Any, task: str):
    import torch

    if isinstance(split, Split):
        n = len(split)
        if bs >= n:
            # Full batch: no gather, no shuffle (the order of one batch does not matter).
            yield data.features(split.x), split.y
            return
        perm = torch.randperm(n, generator=gen, device=split.x.device)
        for idx in perm.split(bs):
            yield data.features(split.x[idx]), split.y[idx]
        return
    # Data that does not fit in memory: a DataLoader, pinned memory, async copies.
    loader = torch.utils.data.DataLoader(
        split,
        batch_size=bs,
        shuffle=True,
        generator=torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen))),
        pin_memory=device.type == "cuda",
    )
    for xb, yb in loader:
        xb = xb.to(device, non_blocking=True)
        yield data.features(xb), _targets(yb.to(device, non_blocking=True), task)


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
        for xb, yb in _eval_batches(split, data, batch, device, task):
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
        for i in range(0, len(split), bs):
            yield data.features(split.x[i : i + bs]), split.y[i : i + bs]
        return
    loader = torch.utils.data.DataLoader(split, batch_size=bs, pin_memory=device.type == "cuda")
    for xb, yb in loader:
        yb = _targets(yb.to(device, non_blocking=True), task)
        yield data.features(xb.to(device, non_blocking=True)), yb


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
) -> History:
    """Train ``model`` on ``data.train``, evaluating on ``data.test`` every epoch.

    :param recipe: optimizer, lr, epochs, batch size (None: full batch).
    :param task: ``binary``, ``multiclass`` or ``regression``; picks loss and metric.
    :param log_every: every N epochs the pending metrics are copied to the host and
        passed to ``on_log`` (0: only at the end). This is the loop's only host sync.
    :param on_epoch: called after each epoch with its number (progress bars).
    :returns: the per-epoch history; the model is trained in place and left in eval().
    """
    import torch

    # -- phase 1: everything on the device, once
    device = torch.device(device)
    model.to(device)
    data = data.to(device)
    train_split, test_split = data.train, data.test
    n_train = len(train_split)
    bs = n_train if recipe.batch_size is None else min(recipe.batch_size, n_train)
    gen = torch.Generator(device=device if isinstance(train_split, Split) else "cpu")
    gen.manual_seed(seed)
    optimizer = make_optimizer(model, recipe)
    loss_fn = _loss_fn(task)
    metric = METRIC[task]
    keys = ("train_loss", f"train_{metric}", "test_loss", f"test_{metric}")

    history = History(task)
    pending: list[torch.Tensor] = []
    first_pending = 1

    def flush(upto: int) -> None:
        nonlocal pending, first_pending
        if not pending:
            return
        values = torch.stack(pending).tolist()  # the one host sync per log interval
        rows = []
        for i, vals in enumerate(values):
            row = {"epoch": first_pending + i, **dict(zip(keys, vals, strict=True))}
            rows.append(row)
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

    start = time.perf_counter()
    for epoch in range(1, recipe.epochs + 1):
        # -- phase 2: one pass over the training split
        model.train()
        loss_sum = torch.zeros((), device=device)
        metric_sum = torch.zeros((), device=device)
        seen = 0
        for xb, yb in _batches(train_split, data, bs, gen, device, task):
            out = model(xb)
            loss = loss_fn(out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # Metrics of the pre-step outputs, as the seed notes compute them.
            with torch.no_grad():
                loss_sum += loss.detach() * len(yb)
                metric_sum += _metric_sum(task, out.detach(), yb)
            seen += len(yb)
        history.samples += seen

        # -- phase 3: held-out evaluation, no autograd
        test_loss, test_metric, n_test = evaluate(model, data, test_split, task, device)
        pending.append(
            torch.stack(
                [loss_sum / seen, metric_sum / seen, test_loss / n_test, test_metric / n_test]
            )
        )

        # -- phase 4: report at log points only
        if (log_every and epoch % log_every == 0) or epoch == recipe.epochs:
            flush(epoch)
        if on_epoch is not None:
            on_epoch(epoch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
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


def train(
    config: TrainConfig, registry: Registry | None = None, echo: Callable[[str], None] = print
) -> TrainResult:
    """Train a registered model on a registered dataset and write its run directory.

    Validation (names, parameters, data, one dry batch) happens before the run
    directory is created, so a bad command leaves nothing behind.
    """
    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()
    plan = resolve(config, registry)

    import torch

    device = select_device(config.device)
    data = load_data(plan.dataset, plan.data_params)
    model = build_model(plan.model, plan.params, config.seed)
    check_fit(model, plan.model, plan.dataset, data)

    run_dir = plan.run_dir
    if run_dir.exists() and config.overwrite:
        import shutil

        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    cfg = run_config(plan, device, registry)
    runs.atomic_write_json(run_dir / runs.CONFIG, cfg)

    task = plan.model.task
    reporter = _Reporter(plan.recipe.epochs, task, config.quiet)
    metric_rows: list[dict[str, float]] = []

    def on_log(rows: list[dict[str, float]]) -> None:
        metric_rows.extend(rows)
        reporter.log(rows)

    if not config.quiet:
        bs = plan.recipe.batch_size or "full"
        echo(
            f"Training {plan.model.name} on {plan.dataset.name} ({device}): "
            f"{plan.recipe.optimizer} lr={plan.recipe.lr} epochs={plan.recipe.epochs} "
            f"batch={bs} seed={config.seed}"
        )
    try:
        history = fit(
            model,
            data,
            plan.recipe,
            task=task,
            device=device,
            seed=config.seed,
            log_every=plan.log_every,
            on_log=on_log,
            on_epoch=reporter.epoch,
        )
    finally:
        reporter.close()
        _write_metrics(run_dir, metric_rows)

    # One metadata key only: safetensors keeps metadata in a hash map, so several
    # keys come out in random order and the same weights would hash differently.
    weights = _state_dict_bytes(model, {"format": "pt"})
    runs.atomic_write_bytes(run_dir / runs.WEIGHTS, weights)
    summary = {
        "model": plan.model.name,
        "dataset": plan.dataset.name,
        "epochs": len(history.epochs),
        "seconds": round(history.seconds, 4),
        "samples_per_second": round(history.samples / max(history.seconds, 1e-9), 1),
        "final": history.last,
        "weights_sha256": runs.sha256_bytes(weights),
        "torch_threads": torch.get_num_threads(),
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
    state = load_file(str(run.weights))  # safetensors: no pickle, no code runs
    model.load_state_dict(state)
    return model.eval()


def with_overrides(config: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of ``config`` with fields changed (None values are ignored)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})
