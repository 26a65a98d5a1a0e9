"""Pictures: `tk plot` / `tk train --plot` write the PNGs that fit each kind of run,
headless, without pyplot, and never import matplotlib unless asked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from toolkit import DatasetSpec, InputSpec, ModelSpec, Recipe
from toolkit.config import TrainConfig
from toolkit.errors import UsageError
from toolkit.plot import plot_run
from toolkit.plugins import get_registry
from toolkit.registry import Registry, Source
from toolkit.train import train

PNG = b"\x89PNG\r\n\x1a\n"


def _train(tmp_path: Path, model: str, registry: Registry | None = None, **options):
    config = TrainConfig(model=model, quiet=True, runs_dir=str(tmp_path), device="cpu", **options)
    return train(config, registry=registry)


def _names(paths: list[Path]) -> list[str]:
    for p in paths:
        assert p.read_bytes()[:8] == PNG, p
        assert p.stat().st_size > 5000, p  # a drawn figure, not an empty canvas
    return [p.name for p in paths]


@pytest.mark.parametrize(
    ("model", "options", "expected"),
    [
        ("xor-mlp", {"epochs": 200}, ["curves.png", "decision_boundary.png", "confusion.png"]),
        ("linear-regression", {"epochs": 100}, ["curves.png", "fit.png"]),
        ("digits-mlp", {"epochs": 1}, ["curves.png", "confusion.png", "samples.png"]),
        # 4 features: no picture of the data, the confusion matrix of any classifier
        ("softmax-classifier", {"epochs": 20}, ["curves.png", "confusion.png"]),
    ],
)
def test_plot_run_draws_what_fits_the_run(tmp_path, model, options, expected):
    result = _train(tmp_path, model, **options)
    # The object API only: no pyplot state, no backend switched for the caller. Another
    # test in this process may have imported pyplot: forget it while plot_run runs.
    earlier = sys.modules.pop("matplotlib.pyplot", None)
    try:
        # Rebuilt from the run directory alone, as `tk plot RUN` does.
        paths = plot_run(result.run_dir)
        assert "matplotlib.pyplot" not in sys.modules
    finally:
        if earlier is not None:
            sys.modules["matplotlib.pyplot"] = earlier
    assert _names(paths) == expected
    assert all(p.parent == result.run_dir for p in paths)


def test_decision_boundary_for_held_out_data_and_many_classes(tmp_path):
    # A 2-D, 3-class problem with a real test split: two panels, argmax regions.
    def load():
        import numpy as np

        rng = np.random.default_rng(0)
        centers = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]], dtype="float32")
        y = rng.integers(0, 3, size=300)
        x = (centers[y] + rng.normal(scale=0.5, size=(300, 2))).astype("float32")
        return {"train": (x[:240], y[:240]), "test": (x[240:], y[240:])}

    def build():
        from torch import nn

        return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))

    registry = Registry()
    source = Source("blobs", "tk-test-blobs", "0")
    registry.add(
        DatasetSpec("blobs", load, feature_shape=(2,), target="multiclass", num_classes=3), source
    )
    registry.add(
        ModelSpec(
            "blob-mlp",
            build,
            InputSpec((2,)),
            "multiclass",
            default_dataset="blobs",
            recipe=Recipe(lr=0.05, epochs=50),
        ),
        source,
    )
    result = _train(tmp_path, "blob-mlp", registry=registry)
    paths = plot_run(result.run_dir, model=result.model, registry=registry)
    assert _names(paths) == ["curves.png", "decision_boundary.png", "confusion.png"]


def test_plot_refuses_a_directory_that_is_not_a_finished_run(tmp_path):
    with pytest.raises(UsageError, match="not a tk run directory"):
        plot_run(tmp_path)
    result = _train(tmp_path, "linear-regression", epochs=5)
    (result.run_dir / "metrics.jsonl").unlink()
    with pytest.raises(UsageError, match="did not finish"):
        plot_run(result.run_dir)
    assert get_registry().model("linear-regression")  # the registry is untouched


def test_train_with_plot_flag_and_tk_plot_command(tk):
    env = {"DISPLAY": ""}  # headless: no display to draw on
    res = tk("train", "linear-regression", "--epochs", "50", "--name", "p", "--plot", env=env)
    assert res.code == 0, res.err
    run = tk.cwd / "runs" / "linear-regression" / "p"
    plot_lines = [x for x in res.out.splitlines() if x.startswith("Plot: ")]
    assert [Path(x[len("Plot: ") :]).name for x in plot_lines] == ["curves.png", "fit.png"]
    assert (run / "fit.png").read_bytes()[:8] == PNG

    (run / "fit.png").unlink()
    res = tk("plot", env=env)  # latest run
    assert res.code == 0, res.err
    assert [Path(x).name for x in res.out.split()] == ["curves.png", "fit.png"]
    assert (run / "fit.png").is_file()

    res = tk("plot", "no-such-run")
    assert res.code == 2 and "not a tk run directory" in res.err
