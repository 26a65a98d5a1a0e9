"""Metrics on the device: sums per epoch, copied to the host only when someone asks.

The loop adds each epoch's sums (loss, metric, rows) to a :class:`MetricBuffer`
without reading them; :meth:`MetricBuffer.flush` stacks everything pending and
copies it in one go, the only host sync of a log interval. Row counts stay Python
ints until then, and the first batch of a split is its own accumulator, so a
full-batch epoch (one step) pays for no extra tiny tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from toolkit.data import Data
from toolkit.errors import TrainingError
from toolkit.tasks import Task
from toolkit.train.batches import eval_batches, eval_rows

if TYPE_CHECKING:
    import torch

    from toolkit.distributed import DistContext


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


def accumulate(total: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    """``total + value`` in place; the first value is its own accumulator."""
    return value if total is None else total.add_(value)


def evaluate(
    model: torch.nn.Module, data: Data, split: Any, task: Task, device: Any, workers: int = 0
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Sum of loss, sum of metric and row count over a split, on the device, no sync."""
    import torch

    loss_sum = metric_sum = None
    n = 0
    model.eval()
    with torch.inference_mode():
        for xb, yb in eval_batches(split, data, eval_rows(split, 8192), device, task, workers):
            out = model(xb)
            loss_sum = accumulate(loss_sum, task.loss_sum(out, yb))
            metric_sum = accumulate(metric_sum, task.metric_sum(out, yb))
            n += len(yb)
    if loss_sum is None or metric_sum is None:  # an empty split (a shard, say)
        loss_sum = metric_sum = torch.zeros((), device=device)
    return loss_sum, metric_sum, n


class MetricBuffer:
    """Epoch sums waiting on the device, and the rows already copied to the host.

    :param metric: the task's metric key (``accuracy`` or ``mae``).
    :param held_out: the name of the evaluated split in the row keys (``test``).
    :param dist: a distributed job: sums are added up across ranks at flush time.
    """

    def __init__(self, metric: str, held_out: str = "test", dist: DistContext | None = None):
        self.keys = ("train_loss", f"train_{metric}", f"{held_out}_loss", f"{held_out}_{metric}")
        self.dist = dist
        self.rows: list[dict[str, float]] = []  # every epoch on the host, oldest first
        self._sums: list[torch.Tensor] = []
        self._counts: list[tuple[int, int]] = []
        self._epochs: list[int] = []
        self._extra: list[dict[str, float]] = []

    def add(
        self,
        epoch: int,
        train: tuple[torch.Tensor, torch.Tensor, int],
        held_out: tuple[torch.Tensor, torch.Tensor, int],
        extra: dict[str, float] | None = None,
    ) -> None:
        """Queue an epoch's ``(loss sum, metric sum, rows)`` of both splits (no sync)."""
        import torch

        self._sums.append(torch.stack([train[0], train[1], held_out[0], held_out[1]]))
        self._counts.append((train[2], held_out[2]))
        self._epochs.append(epoch)
        self._extra.append(extra or {})

    @property
    def pending(self) -> bool:
        """True while some epoch's sums are still on the device."""
        return bool(self._sums)

    def flush(self) -> list[dict[str, float]]:
        """Copy every pending epoch to the host (one sync); returns the new rows.

        :raises TrainingError: a loss or metric is not finite.
        """
        if not self._sums:
            return []
        import torch

        if self.dist is None:
            # One process: the counts are already on the host; one copy of the sums.
            stacked = self._sums[0][None] if len(self._sums) == 1 else torch.stack(self._sums)
            values = [v + list(c) for v, c in zip(stacked.tolist(), self._counts, strict=True)]
        else:
            sums = torch.stack(self._sums).float()
            counts = sums.new_tensor(self._counts)  # rows seen: Python ints until now
            sums = torch.cat([sums, counts], dim=1)
            self.dist.all_reduce_sum(sums)  # one collective per flush
            values = sums.tolist()
        pending = zip(self._epochs, values, self._extra, strict=True)
        new = [self._row(e, v, x) for e, v, x in pending]
        self._sums, self._counts, self._epochs, self._extra = [], [], [], []
        for row in new:
            _check_finite(row, self.keys)
        self.rows.extend(new)
        return new

    def _row(self, epoch: int, v: list[float], extra: dict[str, float]) -> dict[str, float]:
        k = self.keys
        return {
            "epoch": epoch,
            k[0]: v[0] / v[4],
            k[1]: v[1] / v[4],
            k[2]: v[2] / v[5],
            k[3]: v[3] / v[5],
            **extra,
        }


def _check_finite(row: dict[str, float], keys: tuple[str, ...]) -> None:
    bad = [k for k in keys if not math.isfinite(row[k])]
    if bad:
        raise TrainingError(
            f"{bad[0].replace('_', ' ')} became {row[bad[0]]} at epoch {row['epoch']}",
            "a lower --lr, or --grad-clip",
        )


def test_metrics(
    model: torch.nn.Module, data: Data, split: Any, task: Task, device: Any
) -> dict[str, float]:
    """The held-out test split, evaluated once: loss, the task's metric (and R² for
    regression, 1 - residual / total sum of squares over every target)."""
    import torch

    loss_sum, metric_sum, n = evaluate(model, data, split, task, device)
    out = {"loss": float(loss_sum) / n, task.metric: float(metric_sum) / n, "rows": n}
    if task.metric == "mae":
        ys, preds = [], []
        with torch.inference_mode():
            for xb, yb in eval_batches(split, data, eval_rows(split, 8192), device, task):
                ys.append(yb.double())
                preds.append(model(xb).reshape(yb.shape).double())
        y, p = torch.cat(ys), torch.cat(preds)
        total = float(((y - y.mean(0)) ** 2).sum())
        out["r2"] = 1.0 - float(((y - p) ** 2).sum()) / total if total > 0 else float("nan")
    return out
