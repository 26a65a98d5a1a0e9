"""One object per task kind: everything the loop, export, verify and predict ask of it.

``binary`` (one logit per row), ``multiclass`` (one logit per class) and
``regression`` (one value per target) differ in their loss, their metric, the
dtype of their targets, the words on the progress line and what an exported
file's output means. Those differences live here, once, instead of an
``if task == ...`` in every module.

Sums, not means: the loop adds per-batch sums and divides once, so batches of
unequal size add up exactly to the epoch's value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from toolkit.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import torch


class Task:
    """The behaviour of one task kind (subclasses below; use :func:`get_task`)."""

    name: ClassVar[str] = ""
    metric: ClassVar[str] = ""  # the metric's key in metrics rows: accuracy | mae
    output_name: ClassVar[str] = ""  # the output's name in exported graphs
    meaning: ClassVar[dict[str, Any]] = {}  # what an exported file's output means

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean loss of a batch (what is backpropagated)."""
        raise NotImplementedError

    def loss_sum(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The summed loss of a batch (evaluation adds these up)."""
        raise NotImplementedError

    def metric_sum(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The metric summed over a batch: correct rows, or absolute errors per row."""
        raise NotImplementedError

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """Targets as the loss wants them (dtype and shape), for any batch of labels."""
        raise NotImplementedError

    def check_targets(self, y: torch.Tensor, where: str) -> torch.Tensor:
        """:meth:`targets` for a whole split, refusing values the task cannot learn."""
        return self.targets(y)

    def show(self, value: float) -> str:
        """The metric as the progress line prints it."""
        return f"{value:.5f}"

    def decisions(self, rows: np.ndarray, tol: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Each row's decision, and whether it is decisive, for numpy outputs ``(n, k)``.

        Decisive: the margin exceeds ``tol`` (same shape as ``rows``), since a logit
        of 1e-7 may flip legitimately. None when the task decides nothing.
        """
        return None

    # Numpy-side views of whole batches of outputs ``(n, k)``: what predict prints
    # and what the held-out check of an exported file compares.
    def labels(self, out: np.ndarray) -> np.ndarray | None:
        """The predicted class of each row (int64), or None when the task has no classes."""
        return None

    def probabilities(self, out: np.ndarray) -> np.ndarray | None:
        """Per-class probabilities ``(n, classes)`` in float64, or None without classes."""
        return None

    def score(self, out: np.ndarray, y: np.ndarray) -> float:
        """:attr:`metric` of outputs against targets (accuracy, or mean absolute error)."""
        import numpy as np

        labels = self.labels(out)
        if labels is None:  # regression: the mean over rows and targets, as the loop reports
            return float(np.abs(out.reshape(len(y), -1) - y.reshape(len(y), -1)).mean())
        return float((labels == self.class_targets(y)).mean()) if len(y) else 0.0

    def class_targets(self, y: np.ndarray) -> np.ndarray:
        """Targets as class indices, comparable with :meth:`labels`."""
        return y.reshape(-1).astype("int64")


class Binary(Task):
    """One logit per row; a row is positive when its logit is above 0."""

    name = "binary"
    metric = "accuracy"
    output_name = "logits"
    meaning: ClassVar[dict[str, Any]] = {
        "meaning": "logits",
        "activation": "sigmoid",
        "decision": "probability > 0.5",
    }

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(out.reshape(y.shape), y)

    def loss_sum(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(out.reshape(y.shape), y, reduction="sum")

    def metric_sum(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((out.reshape(y.shape) > 0) == (y > 0.5)).sum()

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        import torch

        return y.reshape(-1).to(torch.float32)

    def show(self, value: float) -> str:
        return f"{100 * value:.2f}%"

    def decisions(self, rows: np.ndarray, tol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positive when the first logit is above 0; decisive when it is clear of ``tol``."""
        import numpy as np

        return rows[:, 0] > 0, np.abs(rows[:, 0]) > tol[:, 0]

    def labels(self, out: np.ndarray) -> np.ndarray:
        """1 where the logit is above 0 (the loop's decision), else 0."""
        return (out[:, 0] > 0).astype("int64")

    def probabilities(self, out: np.ndarray) -> np.ndarray:
        """``[1 - p, p]`` per row, ``p`` the sigmoid of the logit."""
        import numpy as np

        with np.errstate(over="ignore"):  # exp overflows to inf for large logits: p = 0
            p = 1.0 / (1.0 + np.exp(-out[:, 0].astype(np.float64)))
        return np.stack([1.0 - p, p], axis=1)

    def class_targets(self, y: np.ndarray) -> np.ndarray:
        """Targets above 0.5 are class 1."""
        return (y.reshape(-1) > 0.5).astype("int64")


class Multiclass(Task):
    """One logit per class; the prediction is the argmax."""

    name = "multiclass"
    metric = "accuracy"
    output_name = "logits"
    meaning: ClassVar[dict[str, Any]] = {
        "meaning": "logits",
        "activation": "softmax",
        "decision": "argmax",
    }

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(out, y)

    def loss_sum(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(out, y, reduction="sum")

    def metric_sum(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (out.argmax(dim=1) == y).sum()

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        import torch

        return y.reshape(-1).to(torch.int64)

    def check_targets(self, y: torch.Tensor, where: str) -> torch.Tensor:
        y = y.reshape(-1)
        if y.dtype.is_floating_point and not bool((y == y.round()).all()):
            raise UsageError(f"{where}: class labels must be integers")
        return self.targets(y)

    def show(self, value: float) -> str:
        return f"{100 * value:.2f}%"

    def decisions(self, rows: np.ndarray, tol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The argmax; decisive when the top two logits are over twice the row's ``tol`` apart."""
        import numpy as np

        if rows.shape[1] == 1:  # a single logit is decided by its sign, as in binary
            return TASKS["binary"].decisions(rows, tol)
        top2 = np.sort(rows, axis=1)[:, -2:]
        return rows.argmax(axis=1), (top2[:, 1] - top2[:, 0]) > 2 * tol.max(axis=1)

    def labels(self, out: np.ndarray) -> np.ndarray:
        """The argmax of each row (as the loop's accuracy counts it)."""
        return out.argmax(axis=1).astype("int64")

    def probabilities(self, out: np.ndarray) -> np.ndarray:
        """The softmax of each row, in float64."""
        import numpy as np

        z = out.astype(np.float64)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


class Regression(Task):
    """One value per target; mean squared error, reported as mean absolute error."""

    name = "regression"
    metric = "mae"
    output_name = "values"
    meaning: ClassVar[dict[str, Any]] = {"meaning": "values", "activation": None, "decision": None}

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.mse_loss(out.reshape(y.shape), y)

    def loss_sum(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        # Per row, averaged over the targets of a row, like the mean loss.
        return F.mse_loss(out.reshape(y.shape), y, reduction="sum") / y[0].numel()

    def metric_sum(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (out.reshape(y.shape) - y).abs().sum() / (y[0].numel())

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        import torch

        return y.reshape(y.shape[0], -1).to(torch.float32)


TASKS: dict[str, Task] = {t.name: t for t in (Binary(), Multiclass(), Regression())}


def get_task(name: str) -> Task:
    """The :class:`Task` of a kind name (``binary``, ``multiclass``, ``regression``)."""
    try:
        return TASKS[name]
    except KeyError:
        raise UsageError(
            f"unknown task {name!r}; choose one of {', '.join(TASKS)}", "tk list models"
        ) from None
