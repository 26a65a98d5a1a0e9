"""The numpy ports in toolkit.sampling give scikit-learn's arrays, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import datasets
from sklearn.model_selection import train_test_split

from toolkit import sampling


@pytest.mark.parametrize("n, noise, seed", [(1000, 0.03, 42), (101, None, 0), (7, 0.5, 3)])
def test_generators_match_sklearn(n, noise, seed):
    for ours, theirs in (
        (sampling.make_circles(n, noise=noise, factor=0.8, seed=seed),
         datasets.make_circles(n, noise=noise, factor=0.8, random_state=seed)),
        (sampling.make_moons(n, noise=noise, seed=seed),
         datasets.make_moons(n, noise=noise, random_state=seed)),
    ):  # fmt: skip
        np.testing.assert_array_equal(ours[0], theirs[0])
        np.testing.assert_array_equal(ours[1], theirs[1])


@pytest.mark.parametrize("test_size", [0.2, 0.1, 37])
@pytest.mark.parametrize("classes", [None, 2, 3, 10])
def test_splits_match_sklearn(test_size, classes):
    rng = np.random.default_rng(0)
    x = np.arange(503, dtype=np.float32)
    y = None if classes is None else rng.integers(0, classes, size=503)
    labels = np.zeros(503) if y is None else y
    ours = sampling.train_test_split(x, labels, test_size=test_size, seed=42, stratify=y)
    theirs = train_test_split(x, labels, test_size=test_size, random_state=42, stratify=y)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_class_too_small_to_stratify_is_refused():
    y = np.array([0, 0, 0, 0, 0, 1])
    with pytest.raises(ValueError, match="too few"):
        sampling.split_indices(6, 2, seed=0, stratify=y)
    with pytest.raises(ValueError):
        train_test_split(np.arange(6), test_size=2, stratify=y, random_state=0)
