"""tk-spirals' own tests: run `pytest` here once the package is installed."""

from tk_spirals import load_bars, load_spirals

from toolkit.testing import check_plugin


def test_spirals_are_balanced_and_float32():
    x, y = load_spirals(points_per_arm=50)["train"]
    assert x.dtype == "float32" and x.shape[1:] == (2,)
    assert sorted(set(y.tolist())) == [0, 1, 2]


def test_bars_are_uint8_images():
    x, _ = load_bars(n_samples=20)["train"]
    assert x.dtype == "uint8" and x.shape[1:] == (1, 16, 16)


def test_conformance(tmp_path):
    report = check_plugin("tk-spirals", workdir=tmp_path)
    assert report.ok, report.format()
