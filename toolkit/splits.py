"""The validation split: carved from the training rows, seeded, stratified by class.

Model selection (the best epoch, early stopping, a plateau schedule) looks at the
validation split only; the test split is evaluated once, at the end, on the model
selected. A dataset that declares a ``val`` split keeps it. A training split so
small that holding rows out would leave next to nothing (the seed experiments'
handful of rows) is used as its own validation split, and the run says so.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from toolkit.data import Data, Split
from toolkit.errors import UsageError

DEFAULT_FRACTION = 0.1
# Fewer validation rows than this are no measurement: validate on the training rows.
MIN_VAL_ROWS = 5


def check_fraction(fraction: float) -> float:
    """``--val-fraction`` must be in (0, 0.5]."""
    if not (0 < fraction <= 0.5):
        raise UsageError(
            f"--val-fraction must be in (0, 0.5], got {fraction}", "--val-fraction 0.1"
        )
    return fraction


def carve_validation(data: Data, fraction: float, seed: int) -> Data:
    """``data`` with a ``val`` split: declared, carved from train, or train itself."""
    if data.val is not None:
        return data
    train = data.train
    n = len(train)
    n_val = round(fraction * n)
    if n_val < MIN_VAL_ROWS or n - n_val < MIN_VAL_ROWS:
        note = f"validation = training split: {n} training rows are too few to hold some out"
        return replace(data, splits={**data.splits, "val": train}, notes=[*data.notes, note])
    labels = _labels(train) if data.spec.target != "regression" else None
    keep, held, how = _indices(n, n_val, labels, seed)
    name = data.spec.splits[0]
    splits = {**data.splits, name: _take(train, keep), "val": _take(train, held)}
    note = f"validation: {n_val} of {n} training rows held out ({how}, seed {seed})"
    return replace(data, splits=splits, notes=[*data.notes, note])


def _labels(split: Any) -> Any:
    """Class labels of a split as a numpy array, or None when a Dataset does not say."""
    import numpy as np

    if isinstance(split, Split):
        return split.y.cpu().numpy()
    targets = getattr(split, "targets", None)
    return None if targets is None else np.asarray(targets)


def _indices(n: int, n_val: int, labels: Any, seed: int) -> tuple[Any, Any, str]:
    """(kept rows, held-out rows, how) — sorted, so the rows keep their order."""
    import numpy as np

    from toolkit.sampling import split_indices

    how = "stratified by class"
    try:
        keep, held = split_indices(n, n_val, seed=seed, stratify=labels)
    except ValueError:  # a class too small to stratify: a plain seeded split
        keep, held = split_indices(n, n_val, seed=seed)
        how = "random; a class has too few rows to stratify"
    if labels is None:
        how = "random"
    return np.sort(keep), np.sort(held), how


def _take(split: Any, rows: Any) -> Any:
    import torch

    if isinstance(split, Split):
        idx = torch.as_tensor(rows, dtype=torch.int64, device=split.x.device)
        return Split(split.x.index_select(0, idx), split.y.index_select(0, idx))
    return torch.utils.data.Subset(split, rows.tolist())
