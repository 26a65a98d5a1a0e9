"""``tk lr-find``: the learning-rate range test (Smith 2015; fastai's ``lr_find``).

A fresh model trains for a few hundred steps while the rate grows exponentially
from ``start_lr`` to ``end_lr``; the test stops once the smoothed loss diverges
(four times its lowest, or not finite). The suggestion is fastai's "valley" (the
middle of the longest stretch where the smoothed loss keeps falling) or the
steepest descent of the smoothed loss against log(lr). It trains through the
loop's own step (``toolkit.train.loop``) and writes no run directory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from toolkit.config import TrainConfig, given
from toolkit.errors import TrainingError, UsageError, check_number
from toolkit.registry import Registry

METHODS = ("valley", "steepest")
BETA = 0.9  # the loss's exponential smoothing, debiased (a window of about ten steps)
DIVERGED = 4.0  # the smoothed loss this many times its lowest: stop


@dataclass
class LrFind:
    """The range test's record and its suggestions."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    valley: float | None
    steepest: float | None
    method: str
    stopped: str  # why it ended: the last step, or the loss diverging

    @property
    def suggestion(self) -> float | None:
        """The suggested learning rate by ``method``."""
        return self.valley if self.method == "valley" else self.steepest

    def to_json(self) -> dict[str, Any]:
        """What ``tk lr-find --json`` prints."""
        return {
            "suggestion": self.suggestion,
            "method": self.method,
            "valley": self.valley,
            "steepest": self.steepest,
            "stopped": self.stopped,
            "steps": len(self.lrs),
            "lrs": self.lrs,
            "losses": self.losses,
        }


def lr_find(
    config: TrainConfig,
    registry: Registry | None = None,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 200,
    method: str = "valley",
) -> LrFind:
    """Run the range test on a fresh ``config.model`` (its data, optimizer and batch size)."""
    from toolkit.train import build
    from toolkit.train.plan import resolve
    from toolkit.train.prepare import build_run

    check_number("--start-lr", start_lr, 0, above=True)
    check_number("--end-lr", end_lr, start_lr, above=True)
    check_number("--steps", steps, 10)
    if method not in METHODS:
        raise UsageError(f"unknown method '{method}'; choose {', '.join(METHODS)}")
    if not config.model:
        raise UsageError("no model given", "tk lr-find MODEL")
    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()
    # No run directory is planned or made: the plan is given a placeholder it never uses.
    plan = resolve(config, registry, run_dir=Path("."))
    plan = replace(plan, recipe=replace(plan.recipe, scheduler="none", warmup_epochs=0))
    built = build_run(plan)
    device = build.select_device(config.device)
    lrs, losses, stopped = _sweep(built, device, config, (start_lr, end_lr, steps))
    smoothed = smooth(losses)
    return LrFind(
        lrs, losses, smoothed, valley(lrs, smoothed), steepest(lrs, smoothed), method, stopped
    )


def _sweep(
    built: Any, device: Any, config: TrainConfig, sweep: tuple[float, float, int]
) -> tuple[list[float], list[float], str]:
    """Train step by step at growing rates; the rates and losses until the loss diverged."""
    from toolkit.train.batches import train_batches
    from toolkit.train.loop import setup, train_step
    from toolkit.train.state import FitOptions

    start_lr, end_lr, steps = sweep
    plan = built.plan
    options = FitOptions(grad_clip=config.grad_clip, precision=given(config.precision, "fp32"))
    loop = setup(
        built.model, built.data, plan.recipe, plan.model.task, device, config.seed_value, options
    )
    loop.check_every_step = True  # a non-finite loss ends the test at that step
    loop.model.train()
    factor = (end_lr / start_lr) ** (1 / (steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    best, avg, epoch = math.inf, 0.0, 0
    while len(lrs) < steps:
        epoch += 1
        batches = train_batches(
            loop.train_split, loop.data, loop.batch_size, loop.gen, loop.device, loop.task,
            local_full=loop.local_full, stream=loop.stream,
        )  # fmt: skip
        for xb, yb, n in batches:
            lr = start_lr * factor ** len(lrs)
            for group in loop.optimizer.param_groups:
                group["lr"] = lr
            try:
                loss, _ = train_step(loop, xb, yb, n, epoch)
            except TrainingError:
                return lrs, losses, f"the loss became non-finite at lr {lr:.3g}"
            lrs.append(lr)
            losses.append(float(loss.detach()))
            avg = BETA * avg + (1 - BETA) * losses[-1]
            value = avg / (1 - BETA ** len(lrs))
            best = min(best, value)
            if len(lrs) > 1 and value > DIVERGED * best:
                return lrs, losses, f"the loss diverged at lr {lr:.3g}"
            if len(lrs) >= steps:
                break
    return lrs, losses, f"{steps} steps, up to lr {lrs[-1]:.3g}"


def smooth(losses: list[float]) -> list[float]:
    """The losses' debiased exponential moving average (what the suggestion reads)."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses, start=1):
        avg = BETA * avg + (1 - BETA) * loss
        out.append(avg / (1 - BETA**i))
    return out


def _descent(losses: list[float]) -> tuple[int, int] | None:
    """Where the smoothed loss falls: from a tenth of the way down to its lowest point
    (the plateau of rates too small to move the weights left out)."""
    low = min(range(len(losses)), key=losses.__getitem__)
    drop = losses[0] - losses[low]
    if len(losses) < 5 or drop <= 0:
        return None
    begin = next(i for i in range(low + 1) if losses[i] <= losses[0] - 0.1 * drop)
    return begin, low


def valley(lrs: list[float], losses: list[float]) -> float | None:
    """fastai's valley over the descent: the longest run of falling loss, and a rate
    half way along it (in steps, so in log(lr))."""
    found = _descent(losses)
    if found is None:
        return None
    begin, low = found
    part = losses[begin : low + 1]
    longest = [1] * len(part)
    start = end = 0
    for i in range(1, len(part)):
        for j in range(i):
            if part[i] < part[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[end] < longest[i]:
            end, start = i, i - longest[i] + 1
    sections = (end - start) / 3
    return lrs[begin + start + int(sections) + int(sections / 2)]


def steepest(lrs: list[float], losses: list[float]) -> float | None:
    """The rate where the smoothed loss falls fastest against log(lr), before its lowest."""
    found = _descent(losses)
    if found is None or found[1] < 2:
        return None
    low = found[1]
    logs = [math.log(lr) for lr in lrs]
    slopes = {
        i: (losses[i + 1] - losses[i - 1]) / (logs[i + 1] - logs[i - 1]) for i in range(1, low)
    }
    return lrs[min(slopes, key=slopes.__getitem__)]


def plot(result: LrFind, path: str | Path, title: str) -> Path:
    """Loss against lr (log axis): the raw and smoothed loss, the suggestions marked."""
    from toolkit.plot import figure, save_png

    fig, axes = figure()
    ax = axes[0][0]
    ax.plot(result.lrs, result.losses, color="0.75", lw=1, label="loss (per step)")
    ax.plot(result.lrs, result.smoothed, color="C0", lw=2, label="smoothed")
    for name, lr, color in (("valley", result.valley, "C2"), ("steepest", result.steepest, "C3")):
        if lr is not None:
            ax.axvline(lr, color=color, ls="--", lw=1, label=f"{name} {lr:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    low, high = min(result.smoothed), max(result.smoothed[0], min(result.smoothed) * DIVERGED)
    ax.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_png(fig, path)
