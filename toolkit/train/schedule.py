"""Learning-rate schedules, all from ``torch.optim.lr_scheduler`` (none hand-written).

``step``, ``cosine`` and ``plateau`` step once per epoch, ``onecycle`` once per
optimizer step. ``warmup_epochs`` first ramps the rate linearly (``LinearLR``,
chained with ``SequentialLR``; ``onecycle`` uses it as its warm-up share and
``plateau`` starts watching after it). The state is in every checkpoint, so a
resumed run continues on the same curve.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from toolkit.registry import Recipe

if TYPE_CHECKING:
    import torch

    from toolkit.train.selection import Monitor

# step: the rate falls tenfold three times over the run (after the warm-up).
STEP_GAMMA = 0.1
STEP_DROPS = 3
# plateau: tenfold down after this many epochs without improvement.
PLATEAU_PATIENCE = 5


class Schedule:
    """The run's scheduler(s), stepped by the loop at the right moments."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        recipe: Recipe,
        steps_per_epoch: int,
        monitor: Monitor | None = None,
    ) -> None:
        self.kind = recipe.scheduler
        self.warmup = recipe.warmup_epochs
        self.optimizer = optimizer
        self.monitor = monitor
        self.per_step = self.kind == "onecycle"
        self.epochs_done = 0
        with warnings.catch_warnings():
            # SequentialLR steps its first scheduler at construction and warns about it.
            warnings.simplefilter("ignore", UserWarning)
            self.main, self.ramp = build(optimizer, recipe, steps_per_epoch, monitor)

    @property
    def lr(self) -> float:
        """The learning rate the next step uses."""
        return float(self.optimizer.param_groups[0]["lr"])

    def step_batch(self) -> None:
        """After each optimizer step (onecycle only)."""
        if self.per_step:
            self.main.step()

    def step_epoch(self, metrics: list[dict[str, float]] | None) -> None:
        """After each epoch; ``plateau`` reads the monitor from the last row of ``metrics``."""
        self.epochs_done += 1
        if self.per_step or self.main is None:
            return
        if self.kind != "plateau":
            self.main.step()
        elif self.ramp is not None and self.epochs_done <= self.warmup:
            self.ramp.step()
        elif metrics and self.monitor is not None:
            self.main.step(metrics[-1][self.monitor.key])

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (stored in checkpoints)."""
        return {
            "epochs_done": self.epochs_done,
            "main": self.main.state_dict() if self.main is not None else None,
            "ramp": self.ramp.state_dict() if self.ramp is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`state_dict` returned."""
        self.epochs_done = int(state.get("epochs_done", 0))
        if self.main is not None and state.get("main") is not None:
            self.main.load_state_dict(state["main"])
        if self.ramp is not None and state.get("ramp") is not None:
            self.ramp.load_state_dict(state["ramp"])


def build(
    optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int, monitor: Any
) -> tuple[Any, Any]:
    """(the scheduler the loop steps, the plateau's separate warm-up ramp or None)."""
    from torch.optim import lr_scheduler as S

    kind, warm, epochs = recipe.scheduler, recipe.warmup_epochs, recipe.epochs
    if kind == "none" and not warm:
        return None, None
    if kind == "onecycle":
        return S.OneCycleLR(
            optimizer,
            max_lr=[g["lr"] for g in optimizer.param_groups],  # --head-lr keeps its own
            total_steps=epochs * steps_per_epoch,
            pct_start=warm / epochs if warm else 0.3,
        ), None
    ramp = S.LinearLR(optimizer, start_factor=1 / (warm + 1), total_iters=warm) if warm else None
    if kind == "plateau":
        mode = monitor.mode if monitor is not None else "min"
        plateau = S.ReduceLROnPlateau(optimizer, mode=mode, patience=PLATEAU_PATIENCE)
        return plateau, ramp
    rest = epochs - warm
    main = {
        "none": lambda: S.ConstantLR(optimizer, factor=1.0, total_iters=0),
        "step": lambda: S.StepLR(optimizer, step_size=max(1, rest // STEP_DROPS), gamma=STEP_GAMMA),
        "cosine": lambda: S.CosineAnnealingLR(optimizer, T_max=max(1, rest)),
    }[kind]()
    if ramp is None:
        return main, None
    return S.SequentialLR(optimizer, [ramp, main], milestones=[warm]), None
