"""Fine-tuning: a frozen backbone that may thaw at an epoch, and the head's own rate.

``--freeze backbone`` trains the head only (a pretrained model's new last layer,
else the model's last linear layer); ``--unfreeze-at E`` trains everything from
epoch E on. The optimizer holds every parameter from the start (frozen ones get
no gradient, so no step and no weight decay touches them), so thawing needs no new
optimizer and a resume at any epoch restores exactly. ``--head-lr`` gives the head
its own parameter group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from toolkit.train.callbacks import Callback

if TYPE_CHECKING:
    import torch

    from toolkit.train.state import Loop


@dataclass(frozen=True)
class Finetune:
    """Which parameters are the head, whether the rest starts frozen, the epoch it thaws
    (None: never) and the head's learning rate (None: the recipe's)."""

    head: tuple[str, ...]
    freeze: bool = False
    unfreeze_at: int | None = None
    head_lr: float | None = None

    def callback(self) -> FreezeBackbone | None:
        """The loop callback that freezes and thaws (None: nothing frozen)."""
        return FreezeBackbone(self) if self.freeze else None


class FreezeBackbone(Callback):
    """Backbone parameters stop needing gradients until ``unfreeze_at``; derived from the
    epoch alone, so there is no state to checkpoint."""

    def __init__(self, freeze: Finetune) -> None:
        self.freeze = freeze

    def _set(self, loop: Loop, frozen: bool) -> None:
        head = set(self.freeze.head)
        for name, p in loop.model.named_parameters():
            if name not in head:
                p.requires_grad_(not frozen)

    def on_fit_start(self, loop: Loop) -> None:
        """Frozen unless the run starts (or resumes) at or after the thaw epoch."""
        at = self.freeze.unfreeze_at
        self._set(loop, at is None or loop.start_epoch < at)

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        """Thaw before epoch ``unfreeze_at``."""
        if self.freeze.unfreeze_at is not None and epoch + 1 == self.freeze.unfreeze_at:
            self._set(loop, False)


def head_of(model: torch.nn.Module) -> tuple[str, ...]:
    """The parameter names of the model's head (see ``toolkit.pretrained.head_names``)."""
    from toolkit.pretrained import head_names

    return tuple(head_names(model))


def param_groups(
    model: torch.nn.Module, head: tuple[str, ...] | None, head_lr: float | None
) -> list[Any]:
    """The optimizer's parameters: one list, or (backbone, head) groups for ``--head-lr``."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if head is None or head_lr is None:
        return [p for _, p in params]
    names = set(head)
    return [
        {"params": [p for n, p in params if n not in names]},
        {"params": [p for n, p in params if n in names], "lr": head_lr},
    ]
