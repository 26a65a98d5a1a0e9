"""The validation split at its edges: each test kills mutants of ``toolkit/splits.py``
(``make mutate MODULES=splits``; tests/test_sampling.py holds toolkit/sampling.py to
scikit-learn's arrays). Expected rows and notes follow from the rules stated in the
module: ``round(fraction * n)`` rows held out, at least 5 on each side, sorted.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolkit.data import prepare
from toolkit.errors import UsageError
from toolkit.registry import DatasetSpec
from toolkit.splits import MIN_VAL_ROWS, _indices, carve_validation, check_fraction


def _data(n, target="multiclass", val=False, classes=3, dataset=None):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)  # row i holds 2i, 2i+1
    y = (np.arange(n) % classes).astype(np.float32 if target == "regression" else np.int64)
    spec = DatasetSpec(
        name="d", load=lambda: None, feature_shape=(2,), target=target,
        num_classes=classes if target == "multiclass" else None,
        splits=("train", "val", "test") if val else ("train", "test"),
    )  # fmt: skip
    raw = {"train": dataset if dataset is not None else (x, y), "test": (x[:3], y[:3])}
    if val:
        raw["val"] = (x[:6], y[:6])
    return prepare(spec, raw)


def test_check_fraction_takes_zero_to_a_half():
    assert check_fraction(0.5) == 0.5 and check_fraction(1e-9) == 1e-9
    for bad in (0.0, -0.1, 0.5000001, 1.0):
        with pytest.raises(UsageError) as info:
            check_fraction(bad)
        assert info.value.message == f"--val-fraction must be in (0, 0.5], got {bad}"
        assert info.value.hint == "--val-fraction 0.1"


def test_a_declared_validation_split_is_kept():
    data = _data(30, val=True)
    assert carve_validation(data, 0.2, 0) is data


@pytest.mark.parametrize(
    ("n", "fraction", "carved"),
    [(50, 0.1, 5), (49, 0.1, 5), (44, 0.1, None), (10, 0.5, 5), (9, 0.6, None)],
)
def test_at_least_five_rows_on_each_side_or_train_is_validation(n, fraction, carved):
    data = _data(n)
    out = carve_validation(data, fraction, 0)
    if carved is None:
        assert out.val is data.train and out.train is data.train
        assert out.notes[-1] == (
            f"validation = training split: {n} training rows are too few to hold some out"
        )
        return
    assert MIN_VAL_ROWS == 5
    assert len(out.val) == carved and len(out.train) == n - carved


def test_carved_rows_are_disjoint_sorted_and_stratified_with_a_note():
    data = _data(60, classes=3)
    out = carve_validation(data, 0.25, 3)  # 15 rows: 5 of each class
    train_rows = (out.train.x[:, 0] / 2).long().tolist()
    val_rows = (out.val.x[:, 0] / 2).long().tolist()
    assert train_rows == sorted(train_rows) and val_rows == sorted(val_rows)
    assert sorted(train_rows + val_rows) == list(range(60))
    assert torch.equal(out.val.y, torch.as_tensor(val_rows) % 3)  # rows kept whole
    assert np.bincount(out.val.y.numpy()).tolist() == [5, 5, 5]
    assert (
        out.notes[-1] == "validation: 15 of 60 training rows held out (stratified by class, seed 3)"
    )
    assert out.test is data.test
    again = carve_validation(data, 0.25, 3)
    assert torch.equal(again.val.x, out.val.x)  # seeded
    other = carve_validation(data, 0.25, 4)
    assert not torch.equal(other.val.x, out.val.x)


def test_regression_rows_are_held_out_at_random():
    out = carve_validation(_data(40, target="regression"), 0.25, 0)
    assert len(out.val) == 10
    assert out.notes[-1] == "validation: 10 of 40 training rows held out (random, seed 0)"


def test_a_class_too_small_to_stratify_falls_back_to_random():
    labels = np.array([0] * 19 + [1])
    keep, held, how = _indices(20, 5, labels, 0)
    assert how == "random; a class has too few rows to stratify"
    assert len(held) == 5 and sorted([*keep, *held]) == list(range(20))
    assert list(held) == sorted(held) and list(keep) == sorted(keep)
    assert _indices(20, 5, None, 0)[2] == "random"
    assert _indices(20, 4, np.arange(20) % 2, 0)[2] == "stratified by class"


class Targets(torch.utils.data.Dataset):
    """A streamed split that says its labels (``targets``, as torchvision's do)."""

    def __init__(self, n, targets=True):
        self.n = n
        if targets:
            self.targets = [i % 2 for i in range(n)]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor([float(i), 0.0]), i % 2


def test_a_streamed_split_is_carved_by_row_indices():
    out = carve_validation(_data(40, classes=2, dataset=Targets(40)), 0.25, 0)
    assert isinstance(out.val, torch.utils.data.Subset) and len(out.val) == 10
    assert sorted(out.val.indices + out.train.indices) == list(range(40))
    assert [out.val.dataset.targets[i] for i in out.val.indices].count(0) == 5
    assert "stratified by class" in out.notes[-1]
    plain = carve_validation(_data(40, classes=2, dataset=Targets(40, targets=False)), 0.25, 0)
    assert "(random, seed 0)" in plain.notes[-1]


# ------------------------------------------------------ toolkit.sampling at its edges
def test_generator_defaults_and_label_dtype_are_scikit_learns():
    from sklearn import datasets

    from toolkit import sampling

    for ours, theirs in (
        (sampling.make_circles(), datasets.make_circles(100, factor=0.8, random_state=0)),
        (sampling.make_moons(), datasets.make_moons(100, random_state=0)),
    ):
        np.testing.assert_array_equal(ours[0], theirs[0])
        np.testing.assert_array_equal(ours[1], theirs[1])
        assert ours[1].dtype == np.intp


def test_split_sizes_at_their_bounds():
    from toolkit.sampling import split_indices

    assert [len(p) for p in split_indices(5, 1, seed=0)] == [4, 1]  # one test row
    assert [len(p) for p in split_indices(5, 4, seed=0)] == [1, 4]  # one training row
    for n_test in (0, 5):
        with pytest.raises(ValueError) as info:
            split_indices(5, n_test, seed=0)
        assert str(info.value) == f"cannot split 5 rows into {5 - n_test} and {n_test}"


def test_stratification_bounds_are_scikit_learns():
    from sklearn.model_selection import train_test_split

    from toolkit.sampling import split_indices
    from toolkit.sampling import train_test_split as ours

    y = np.array([0] * 2 + [1] * 8)  # a class of exactly two rows may be stratified
    x = np.arange(10)
    for a, b in zip(ours(x, y, test_size=4, seed=1, stratify=y),
                    train_test_split(x, y, test_size=4, random_state=1, stratify=y),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    three = np.arange(12) % 3
    assert len(split_indices(12, 3, seed=0, stratify=three)[1]) == 3  # test rows == classes
    assert len(split_indices(12, 9, seed=0, stratify=three)[0]) == 3  # train rows == classes
    for n_test in (2, 10):  # fewer test (or training) rows than classes
        with pytest.raises(ValueError) as info:
            split_indices(12, n_test, seed=0, stratify=three)
        assert str(info.value) == "a class has too few rows to stratify"


def test_the_fallback_split_is_seeded():
    labels = np.array([0] * 19 + [1])
    first, again = _indices(20, 5, labels, 7), _indices(20, 5, labels, 7)
    assert np.array_equal(first[1], again[1])
