"""Standardization that travels with the model, statistic by statistic: each test kills
mutants of ``toolkit/preprocess.py`` and ``prepare._fit_preprocess`` (``make mutate
MODULES=preprocess``). Expected statistics are numpy's, in float64, of the training
rows; the wrapped model's output is computed by hand from them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolkit.data import prepare
from toolkit.errors import UsageError
from toolkit.preprocess import MIN_STD, Standardized, fit_stats, wrap
from toolkit.registry import DataInfo, DatasetSpec
from toolkit.train.prepare import _fit_preprocess


def _x(n=7, shape=(3,), seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy((rng.normal(size=(n, *shape)) * 3 + 1).astype(np.float32))


def test_nothing_to_standardize_is_none():
    x, y = _x(), torch.zeros(7)
    assert fit_stats(x, y, False, False) is None
    assert fit_stats(x, y, [], False) is None


def test_feature_statistics_are_numpys_population_ones_per_flattened_feature():
    x, y = _x(shape=(2, 3)), torch.zeros(7)
    stats = fit_stats(x, y, True, False)
    flat = x.numpy().reshape(7, -1).astype(np.float64)
    assert stats["shape"] == [2, 3] and "target" not in stats
    np.testing.assert_allclose(stats["features"]["mean"], flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats["features"]["std"], flat.std(0), rtol=1e-12)
    assert all(type(v) is float for v in stats["features"]["mean"])  # JSON-able


def test_only_the_chosen_features_move_and_a_constant_one_is_divided_by_min_std():
    x = _x(shape=(4,))
    x[:, 2] = 5.0  # a constant feature
    stats = fit_stats(x, torch.zeros(7), [0, 2], False)
    flat = x.numpy().astype(np.float64)
    mean, std = stats["features"]["mean"], stats["features"]["std"]
    assert mean[1] == 0.0 and mean[3] == 0.0 and std[1] == 1.0 and std[3] == 1.0
    assert mean[0] == pytest.approx(flat[:, 0].mean(), rel=1e-12)
    assert std[0] == pytest.approx(flat[:, 0].std(), rel=1e-12)
    assert mean[2] == 5.0 and std[2] == MIN_STD == 1e-12


def test_target_statistics_per_column_only_when_asked():
    x = _x()
    y = torch.tensor([[1.0, 7.0], [2.0, 7.0], [4.0, 7.0], [5.0, 7.0],
                      [0.0, 7.0], [3.0, 7.0], [6.0, 7.0]])  # fmt: skip
    stats = fit_stats(x, y, False, True)
    assert stats["features"] == {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    assert stats["target"]["mean"] == [3.0, 7.0]
    assert stats["target"]["std"] == [pytest.approx(2.0, rel=1e-12), 1e-12]
    flat = fit_stats(x, torch.arange(7.0), True, True)["target"]
    assert flat == {"mean": [3.0], "std": [2.0]}


def test_wrap_is_raw_features_in_and_target_units_out():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    x = _x()
    stats = fit_stats(x, torch.arange(7.0) * 10, True, True)
    model = wrap(net, stats)
    assert isinstance(model, Standardized) and model.net is net
    mean = torch.tensor(stats["features"]["mean"])
    std = torch.tensor(stats["features"]["std"])
    expected = net((x - mean) / std) * 20.0 + 30.0
    torch.testing.assert_close(model(x), expected)
    assert set(model.state_dict()) == {
        "mean", "std", "y_mean", "y_std", "net.weight", "net.bias"
    }  # fmt: skip
    assert all(model.state_dict()[k].dtype == torch.float32 for k in ("mean", "std"))


def test_wrap_without_a_target_or_a_shape():
    net = torch.nn.Identity()
    assert wrap(net, None) is net and wrap(net, {}) is net
    stats = {"features": {"mean": [2.0], "std": [4.0]}}  # one scalar feature, no shape
    model = wrap(net, stats)
    assert model.mean.shape == () and float(model.y_mean) == 0.0 and float(model.y_std) == 1.0
    torch.testing.assert_close(model(torch.tensor([6.0, -2.0])), torch.tensor([1.0, -1.0]))
    shaped = wrap(net, {"features": {"mean": [0.0] * 6, "std": [2.0] * 6}, "shape": [2, 3]})
    assert shaped.std.shape == (2, 3)
    stats64 = Standardized(net, *(torch.zeros(2, dtype=torch.float64),) * 2,
                           torch.zeros(1, dtype=torch.float64), torch.ones(1))  # fmt: skip
    assert {b.dtype for b in stats64.buffers()} == {torch.float32}


def _data(info: DataInfo, target="regression", integer=False, dataset=False):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 255, size=(20, 3)) if integer else rng.normal(size=(20, 3)) * 2 + 5
    x = x.astype(np.uint8 if integer else np.float32)
    y = rng.normal(size=20).astype(np.float32) if target == "regression" else (
        rng.integers(0, 2, size=20).astype(np.float32))  # fmt: skip
    spec = DatasetSpec(name="t", load=lambda: None, feature_shape=(3,), target=target,
                       feature_scale=0.5 if integer else None)  # fmt: skip
    train = (x[:15], y[:15])
    if dataset:
        train = torch.utils.data.TensorDataset(torch.from_numpy(x[:15]), torch.from_numpy(y[:15]))
    return prepare(spec, {"train": train, "test": (x[15:], y[15:]), "info": info}), x[:15], y[:15]


def test_the_run_fits_what_the_dataset_asks_for_on_its_training_rows():
    assert _fit_preprocess(_data(DataInfo())[0]) is None
    data, x, y = _data(DataInfo(standardize=True, standardize_target=True))
    stats = _fit_preprocess(data)
    np.testing.assert_allclose(stats["features"]["mean"], x.astype(np.float64).mean(0), 1e-12)
    assert stats["target"]["mean"] == [pytest.approx(float(y.astype(np.float64).mean()), 1e-12)]
    data, x, y = _data(DataInfo(standardize=[1]))
    stats = _fit_preprocess(data)
    assert "target" not in stats and stats["features"]["mean"][0] == 0.0
    assert stats["features"]["mean"][1] == pytest.approx(float(x[:, 1].mean()), rel=1e-6)
    from_numpy = _fit_preprocess(_data(DataInfo(standardize=np.array([1])))[0])
    assert from_numpy == stats  # a plugin's numpy array of indices, as a list
    assert _fit_preprocess(_data(DataInfo(standardize=np.array([], dtype=int)))[0]) is None
    target_only = _fit_preprocess(_data(DataInfo(standardize_target=True))[0])
    assert target_only["features"]["mean"] == [0.0] * 3 and "target" in target_only
    # a classifier's target is a label: never standardized
    data, x, _ = _data(DataInfo(standardize=True, standardize_target=True), target="binary")
    assert "target" not in _fit_preprocess(data)


def test_integer_features_are_scaled_before_their_statistics():
    data, x, _ = _data(DataInfo(standardize=True), integer=True)
    stats = _fit_preprocess(data)
    scaled = x.astype(np.float64) * 0.5
    np.testing.assert_allclose(stats["features"]["mean"], scaled.mean(0), rtol=1e-6)


def test_streamed_training_rows_cannot_be_standardized():
    data, _, _ = _data(DataInfo(standardize=True), dataset=True)
    with pytest.raises(UsageError) as info:
        _fit_preprocess(data)
    assert info.value.message == ("dataset 't': standardization needs its training rows in memory")
