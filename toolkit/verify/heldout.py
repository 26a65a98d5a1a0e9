"""The held-out check: an exported file against the eager model over the run's whole test split.

The batch sweep (:mod:`toolkit.verify.compare`) asks whether the numbers match;
this asks what a person shipping the file asks next: is it as *good* as the eager
model on data it was not trained on? Both run over every row of the dataset's
test split (``toolkit.models.run_data(config).test``, features scaled as the loop
scales them), in batches, and the report gives each one's metric (accuracy, or
mean absolute error for regression), their agreement and the worst rows.

Agreement:

- classification: the fraction of rows whose predicted class is the same;
- regression: the fraction of rows whose every value is within
  ``REGRESSION_RTOL * (|eager value| + sd)`` of the eager value, ``sd`` being the
  standard deviation of that output over the split (so a value near zero is not
  held to a relative error it cannot have).

A file passes when the agreement is at least the minimum: 1.0 for a float32 file,
0.99 for a quantized or float16 one (its metadata says which), or ``--min-agreement``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from toolkit.errors import one_line
from toolkit.formats import quantization
from toolkit.tasks import get_task

if TYPE_CHECKING:
    import numpy as np

    from toolkit.data import Data
    from toolkit.formats import Runner
    from toolkit.registry import Registry

FP32_MIN_AGREEMENT = 1.0
QUANTIZED_MIN_AGREEMENT = 0.99
REGRESSION_RTOL = 0.01
BATCH = 512  # rows per call into each runtime
WORST = 5  # rows listed in the report


@dataclass
class HeldOut:
    """Every row of a run's held-out split: model input (float32) and targets."""

    x: np.ndarray
    y: np.ndarray
    split: str = "test"
    # Eager outputs per (model, static batch): ``tk export --format all`` or a derived
    # file checks several files against one model, which needs running only once.
    _eager: dict[tuple[int, int | None], tuple[Any, np.ndarray]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __len__(self) -> int:
        return len(self.x)

    def eager_outputs(self, model: Any, static: int | None) -> np.ndarray:
        """The eager model's outputs on every row (computed once per model and batch)."""
        from toolkit.formats.runtime import eager_runner

        key = (id(model), static)
        if key not in self._eager:  # the model is kept with them, so its id stays unique
            self._eager[key] = (model, outputs(eager_runner(model), self.x, static))
        return self._eager[key][1]


def load_heldout(config: dict[str, Any], registry: Registry) -> HeldOut:
    """The whole held-out split of the run's dataset, rebuilt from ``config.json``."""
    from toolkit.models import run_data

    return heldout_of(run_data(config, registry))


def heldout_of(data: Data) -> HeldOut:
    """Every row of a loaded dataset's held-out split, as numpy.

    Integer features are scaled exactly as the training loop does (``data.features``).
    """
    import torch

    from toolkit.data import Split

    name = data.spec.splits[-1]
    part = data.splits[name]
    if isinstance(part, Split):
        x, y = part.x, part.y
    else:  # a torch Dataset that does not fit in memory: every item, in order
        items = [part[i] for i in range(len(part))]
        x = torch.stack([item[0] for item in items])
        y = torch.as_tensor([item[1] for item in items])
    return HeldOut(data.features(x).cpu().numpy(), y.cpu().numpy(), name)


def default_min_agreement(meta: dict[str, Any]) -> float:
    """1.0 for a float32 file, 0.99 for one its metadata says is quantized or float16."""
    return QUANTIZED_MIN_AGREEMENT if quantization(meta) else FP32_MIN_AGREEMENT


@dataclass
class TaskReport:
    """One runtime over the whole held-out split, next to the eager model."""

    runtime: str
    task: str
    metric: str  # accuracy | mae
    split: str
    rows: int
    min_agreement: float
    eager: float | None = None  # the metric of the eager model
    export: float | None = None  # the metric of the file
    agreement: float | None = None
    worst: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """It ran, and the agreement is at least the minimum."""
        return self.error is None and (self.agreement or 0.0) >= self.min_agreement

    @property
    def rule(self) -> str:
        """How agreement is counted for this task."""
        if self.metric == "mae":
            return f"rows within {REGRESSION_RTOL:g} x (|eager| + sd) of eager"
        return "identical predicted labels"

    def summary(self) -> str:
        """One line: rows, agreement against the minimum, and both metrics."""
        where = f"held-out {self.split} split ({self.rows} rows, {self.runtime})"
        if self.error is not None:
            return f"{where}: {self.error}"
        kind = get_task(self.task)
        verdict = "at least" if self.passed else "below"
        what = "label agreement" if self.metric != "mae" else "agreement"
        return (
            f"{where}: {what} {_pct(self.agreement)} is {verdict} the minimum "
            f"{_pct(self.min_agreement)}; {self.metric} eager {kind.show(self.eager or 0.0)}, "
            f"export {kind.show(self.export or 0.0)}"
        )

    def to_json(self) -> dict[str, Any]:
        """All fields plus ``passed`` and the agreement ``rule``."""
        return {**self.__dict__, "passed": self.passed, "rule": self.rule}


def _pct(v: float | None) -> str:
    if v is None:
        return "-"
    text = f"{100 * v:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def outputs(runner: Runner, x: np.ndarray, static: int | None, batch: int = BATCH) -> np.ndarray:
    """The first output of ``runner`` on every row of ``x``, as float64 ``(n, k)``.

    A static-batch file gets exactly its batch: the last chunk is padded, the
    padding dropped.
    """
    import numpy as np

    chunk = static or batch
    outs = []
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk]
        n = len(xb)
        if static is not None and n < chunk:
            xb = np.concatenate([xb, np.zeros((chunk - n, *xb.shape[1:]), xb.dtype)])
        outs.append(np.asarray(runner.run(np.ascontiguousarray(xb))[0])[:n])
    y = outs[0] if len(outs) == 1 else np.concatenate(outs) if outs else np.zeros((0, 1))
    return y.astype(np.float64).reshape(len(x), -1)


def check_heldout(
    runner: Runner,
    eager: np.ndarray,
    heldout: HeldOut,
    task: str,
    min_agreement: float,
    static: int | None = None,
) -> TaskReport:
    """Run ``runner`` over the split and compare it with the eager outputs ``eager``."""
    start = time.perf_counter()
    kind = get_task(task)
    report = TaskReport(runner.name, task, kind.metric, heldout.split, len(heldout), min_agreement)
    try:
        got = outputs(runner, heldout.x, static)
    except Exception as exc:
        report.error = f"runtime error: {one_line(exc, 160)}"
        return report
    if got.shape != eager.shape:
        report.error = f"output shape {list(got.shape)}, eager {list(eager.shape)}"
        return report
    report.eager = kind.score(eager, heldout.y)
    report.export = kind.score(got, heldout.y)
    report.agreement, report.worst = _agreement(kind, eager, got, heldout.y)
    report.seconds = time.perf_counter() - start
    return report


def _agreement(
    kind: Any, eager: np.ndarray, got: np.ndarray, y: np.ndarray
) -> tuple[float, list[dict[str, Any]]]:
    """(agreement, the worst rows): label equality, or values within the regression rule."""
    import numpy as np

    n = len(eager)
    ref_labels, got_labels = kind.labels(eager), kind.labels(got)
    if ref_labels is not None:
        same = ref_labels == got_labels
        # Rows whose label differs first, then by how far the probabilities moved.
        diff = np.abs(kind.probabilities(got) - kind.probabilities(eager)).max(axis=1)
        score = diff + (~same)
        shown = (ref_labels, got_labels)
    else:
        sd = eager.std(axis=0, keepdims=True) if n else np.zeros((1, eager.shape[1]))
        tol = REGRESSION_RTOL * (np.abs(eager) + sd) + 1e-12
        score = (np.abs(got - eager) / tol).max(axis=1)
        same = score <= 1.0
        diff = np.abs(got - eager).max(axis=1)
        shown = (eager, got)
    worst = []
    for i in np.argsort(-score, kind="stable")[:WORST]:
        if diff[i] == 0:
            break
        worst.append(
            {
                "index": int(i),
                "eager": np.asarray(shown[0][i]).tolist(),
                "export": np.asarray(shown[1][i]).tolist(),
                "target": np.asarray(y[i]).tolist(),
                "difference": float(diff[i]),
                "agrees": bool(same[i]),
            }
        )
    return (float(same.mean()) if n else 1.0), worst
