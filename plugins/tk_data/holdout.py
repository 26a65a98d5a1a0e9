"""The held-out test split: seeded, stratified by class, the same for tables and images.

Written here rather than with scikit-learn's ``train_test_split``: a per-class
shuffle is all it takes, and on a million rows it costs a few milliseconds.
"""

from __future__ import annotations

from typing import Any

from toolkit import UsageError


def check_fraction(value: float, owner: str) -> float:
    """``test-fraction`` must leave rows on both sides: in (0, 1)."""
    if not (0 < value < 1):
        raise UsageError(
            f"{owner}: test-fraction must be in (0, 1), got {value}",
            "--data-param test-fraction=0.2",
        )
    return value


def split_rows(n: int, fraction: float, labels: Any, seed: int) -> tuple[Any, Any]:
    """(training rows, test rows), each sorted so rows keep the file's order.

    ``round(fraction * n)`` test rows (at least one). With ``labels`` they are
    shared out over the classes in proportion (largest remainders first), never
    taking a class's last training row; without, a seeded permutation. A split
    that would leave either side empty is a UsageError.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n_test = max(1, round(fraction * n))
    if labels is None:
        held = rng.permutation(n)[:n_test] if n_test < n else np.empty(0, np.int64)
    else:
        classes, labels = np.unique(np.asarray(labels), return_inverse=True)
        counts = np.bincount(labels, minlength=len(classes))
        quota = _quotas(counts, n_test)
        parts = []
        for k in range(len(classes)):
            rows = np.flatnonzero(labels == k)
            rng.shuffle(rows)
            parts.append(rows[: quota[k]])
        held = np.concatenate(parts)
    mask = np.zeros(n, dtype=bool)
    mask[held] = True
    if not mask.any() or mask.all():
        raise UsageError(
            f"{n} rows are too few to hold out a test split of {fraction:g}",
            "more rows, or another --data-param test-fraction",
        )
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _quotas(counts: Any, n_test: int) -> Any:
    """Test rows per class: proportional, summing to ``n_test`` where the classes allow."""
    import numpy as np

    room = np.maximum(counts - 1, 0)  # every class keeps at least one training row
    share = counts * (n_test / counts.sum())
    quota = np.minimum(np.floor(share).astype(np.int64), room)
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    for k in order:
        if quota.sum() >= n_test:
            break
        if quota[k] < room[k]:
            quota[k] += 1
    return quota
