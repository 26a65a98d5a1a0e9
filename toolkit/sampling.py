"""scikit-learn's ``make_circles``, ``make_moons`` and ``train_test_split``, in numpy.

Why: importing scikit-learn (scipy with it) costs about 1.6 s per process on this
machine, more than training ``circle`` takes. These ports draw from the same
``numpy.random.RandomState`` in the same order as scikit-learn 1.x, so the same
seed gives the same arrays; tests/test_sampling.py compares them with
scikit-learn's own, bit for bit.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def make_circles(
    n_samples: int = 100, *, noise: float | None = None, factor: float = 0.8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric circles, shuffled, with Gaussian noise: ``sklearn.datasets.make_circles``."""
    import numpy as np

    n_out = n_samples // 2
    n_in = n_samples - n_out
    rng = np.random.RandomState(seed)
    outer = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    inner = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    xs = np.append(np.cos(outer), np.cos(inner) * factor)
    ys = np.append(np.sin(outer), np.sin(inner) * factor)
    return _finish(np.vstack([xs, ys]).T, n_out, n_in, noise, rng)


def make_moons(
    n_samples: int = 100, *, noise: float | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles, shuffled, with noise: ``sklearn.datasets.make_moons``."""
    import numpy as np

    n_out = n_samples // 2
    n_in = n_samples - n_out
    rng = np.random.RandomState(seed)
    xs = np.append(np.cos(np.linspace(0, np.pi, n_out)), 1 - np.cos(np.linspace(0, np.pi, n_in)))
    ys = np.append(
        np.sin(np.linspace(0, np.pi, n_out)), 1 - np.sin(np.linspace(0, np.pi, n_in)) - 0.5
    )
    return _finish(np.vstack([xs, ys]).T, n_out, n_in, noise, rng)


def _finish(x: Any, n_out: int, n_in: int, noise: float | None, rng: Any) -> tuple[Any, Any]:
    """Labels, the shuffle (``sklearn.utils.shuffle``), then the noise, from one generator."""
    import numpy as np

    y = np.hstack([np.zeros(n_out, dtype=np.intp), np.ones(n_in, dtype=np.intp)])
    order = np.arange(len(x))
    rng.shuffle(order)
    x, y = x[order], y[order]
    if noise is not None:
        x += rng.normal(scale=noise, size=x.shape)
    return x, y


def split_indices(
    n: int, test_size: float | int, *, seed: int, stratify: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) as ``train_test_split`` draws them, stratified or not.

    :param test_size: a fraction of ``n`` (rounded up) or a row count.
    :param stratify: class labels: each class keeps its share in both parts.
    :raises ValueError: a class with fewer than two rows, or fewer test (or train)
        rows than classes, as scikit-learn refuses them.
    """
    import numpy as np

    n_test = math.ceil(test_size * n) if isinstance(test_size, float) else int(test_size)
    n_train = n - n_test
    if n_test < 1 or n_train < 1:
        raise ValueError(f"cannot split {n} rows into {n_train} and {n_test}")
    rng = np.random.RandomState(seed)
    if stratify is None:
        order = rng.permutation(n)
        return order[n_test:], order[:n_test]
    return _stratified(np.asarray(stratify), n_train, n_test, rng)


def _stratified(y: Any, n_train: int, n_test: int, rng: Any) -> tuple[Any, Any]:
    """``StratifiedShuffleSplit``'s first split."""
    import numpy as np

    classes, y_indices, counts = np.unique(y, return_inverse=True, return_counts=True)
    if counts.min() < 2 or n_train < len(classes) or n_test < len(classes):
        raise ValueError("a class has too few rows to stratify")
    by_class = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(counts)[:-1])
    n_i = _approximate_mode(counts, n_train, rng)
    t_i = _approximate_mode(counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(classes)):
        rows = by_class[i].take(rng.permutation(counts[i]), mode="clip")
        train.extend(rows[: n_i[i]])
        test.extend(rows[n_i[i] : n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def _approximate_mode(counts: Any, n_draws: int, rng: Any) -> Any:
    """Rows per class for ``n_draws`` draws: floors, then the largest remainders (ties random)."""
    import numpy as np

    continuous = counts / counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add = min(len(inds), need)
            floored[rng.choice(inds, size=add, replace=False)] += 1
            need -= add
            if need == 0:
                break
    return floored.astype(int)


def train_test_split(
    x: Any, y: Any, *, test_size: float | int, seed: int, stratify: Any = None
) -> tuple[Any, Any, Any, Any]:
    """``(x_train, x_test, y_train, y_test)`` exactly as scikit-learn's function returns them."""
    train, test = split_indices(len(x), test_size, seed=seed, stratify=stratify)
    return x[train], x[test], y[train], y[test]
