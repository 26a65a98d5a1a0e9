"""More settings observed by their effect: early stopping's --min-delta, the csv
dataset's header/test_fraction/standardize parameters and its 64-value one-hot
limit, and fp16 autocast with a GradScaler on the CPU. --compile is observed
through dynamo's counters in tests/test_distributed.py (compiling takes a minute).

As in test_effects_data.py, each expected value comes from an independent
computation (the rule applied by hand to the logged metrics, the file's own line
count, numpy statistics), never from a copied run output.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.small_data import quadrants as _quadrants

from toolkit.errors import UsageError
from toolkit.registry import Recipe
from toolkit.train import fit
from toolkit.train.callbacks import Callback
from toolkit.train.state import FitOptions


# ------------------------------------------------------------------ --min-delta
def _stop_epoch(values: list[float], patience: int, min_delta: float) -> int | None:
    """Early stopping by hand: the epoch (1-based) at which it stops, else None."""
    best, wait = None, 0
    for epoch, v in enumerate(values, 1):
        if best is None or v < best - min_delta:
            best, wait = v, 0
        else:
            wait += 1
        if wait >= patience:
            return epoch
    return None


def test_min_delta_stops_when_improvements_are_smaller_than_it(tk):
    res = tk("train", "circle", "--epochs", "300", "--early-stop", "4", "--min-delta", "0.001",
             "--monitor", "val_loss", "--name", "d", "-q")  # fmt: skip
    assert res.code == 0, res.err
    run = tk.cwd / "runs/circle/d"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    values = [r["val_loss"] for r in rows]
    expected = _stop_epoch(values, 4, 0.001)
    assert expected is not None and 20 < expected < 300  # it improved for a while first
    assert rows[-1]["epoch"] == expected  # it stopped exactly where the rule says
    # Ignoring --min-delta (0) would not have stopped by then: the option decided.
    assert _stop_epoch(values, 4, 0.0) is None


# ------------------------------------------------------------ the csv dataset
def _csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _load(**params):
    from tk_data.tabular import load_csv

    return load_csv(**params)


def test_header_none_reads_the_first_line_as_data(tmp_path):
    # A first line of text cells reads as a header under auto; as a row under none.
    lines = ["a,b,c"] + [f"k{i % 4},m{i % 3},{'x' if i % 2 else 'y'}" for i in range(40)]
    path = _csv(tmp_path / "t.csv", lines)
    auto = _load(path=str(path), target="c")
    n_auto = len(auto["train"][1]) + len(auto["test"][1])
    assert n_auto == len(lines) - 1
    none = _load(path=str(path), target="column_3", header="none")
    assert len(none["train"][1]) + len(none["test"][1]) == len(lines)
    assert none["info"].inputs.target == "column_3"
    assert none["info"].class_names == sorted({"x", "y", "c"})  # the first line's "c" is a label


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_test_fraction_sets_the_held_out_share(tmp_path, fraction):
    n = 200
    lines = ["u,v,label"] + [f"{i * 0.5},{(i * 7) % 11},{i % 2}" for i in range(n)]
    path = _csv(tmp_path / "f.csv", lines)
    out = _load(path=str(path), target="label", test_fraction=fraction)
    n_test, n_train = len(out["test"][1]), len(out["train"][1])
    assert n_test + n_train == n
    assert abs(n_test - fraction * n) <= 1  # two classes: each class's share within a row
    y = np.asarray(out["test"][1])
    assert abs(int((y == 1).sum()) - fraction * n / 2) <= 1


def test_standardize_uses_the_training_rows_of_numbers_only_and_off_means_raw(tmp_path):
    rng = np.random.default_rng(0)
    colours = ["red", "green", "blue"]
    lines = ["size,colour,weight,label"]
    for i in range(120):
        lines.append(f"{rng.normal(50, 10):.3f},{colours[i % 3]},{rng.normal(-3, 2):.3f},{i % 2}")
    path = _csv(tmp_path / "s.csv", lines)
    on = _load(path=str(path), target="label")
    names = on["info"].feature_names
    numeric = [i for i, n in enumerate(names) if n in ("size", "weight")]
    assert on["info"].standardize == numeric and len(names) == 5  # 2 numbers + 3 one-hot

    from toolkit.preprocess import fit_stats

    x, y = on["train"]
    import torch

    stats = fit_stats(torch.as_tensor(x), torch.as_tensor(y), on["info"].standardize, False)
    mean, std = np.asarray(stats["features"]["mean"]), np.asarray(stats["features"]["std"])
    raw = np.asarray(x, dtype=np.float64)
    np.testing.assert_allclose(mean[numeric], raw[:, numeric].mean(0), rtol=1e-9)
    np.testing.assert_allclose(std[numeric], raw[:, numeric].std(0), rtol=1e-9)
    onehot = [i for i in range(len(names)) if i not in numeric]
    assert mean[onehot].tolist() == [0.0] * 3 and std[onehot].tolist() == [1.0] * 3
    off = _load(path=str(path), target="label", standardize=False)
    assert off["info"].standardize is False
    assert fit_stats(torch.as_tensor(x), torch.as_tensor(y), False, False) is None


@pytest.mark.parametrize("distinct,ok", [(64, True), (65, False)])
def test_a_text_column_is_one_hot_up_to_64_values(tmp_path, distinct, ok):
    lines = ["city,n,label"] + [f"c{i % distinct},{i},{i % 2}" for i in range(2 * distinct)]
    path = _csv(tmp_path / "c.csv", lines)
    if ok:
        out = _load(path=str(path), target="label")
        assert len(out["info"].feature_names) == distinct + 1  # one column per value, plus n
        x = np.asarray(out["train"][0])
        assert set(np.unique(x[:, :distinct])) <= {0.0, 1.0}
    else:
        with pytest.raises(UsageError, match=r"65 distinct values.*at most 64"):
            _load(path=str(path), target="label")


# ------------------------------------------------------- fp16 with a GradScaler
def test_fp16_trains_on_the_cpu_with_a_grad_scaler_that_skips_overflowing_steps():
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
    with torch.no_grad():  # large output weights: the first scaled fp16 gradients overflow
        model[2].weight.mul_(100)
    seen: set[torch.dtype] = set()
    model[0].register_forward_hook(lambda m, i, out: seen.add(out.dtype) if m.training else None)
    scales: list[float] = []

    class Scales(Callback):
        key = "scales"

        def on_epoch_end(self, loop, epoch):
            assert loop.scaler.is_enabled()  # a CUDA scaler on the CPU disables itself
            scales.append(loop.scaler.get_scale())

    recipe = Recipe(optimizer="adam", lr=0.01, epochs=8, batch_size=32)
    # Clipping unscales the gradients first; an fp16 overflow there is the scaler's
    # business (the step is skipped, the scale halves), not a diverged run.
    history = fit(model, _quadrants(), recipe, task="binary", callbacks=[Scales()],
                  options=FitOptions(precision="fp16", grad_clip=1.0))  # fmt: skip
    assert seen == {torch.float16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert 2.0**8 <= scales[0] < 2.0**16  # the initial scale overflowed and was lowered
    losses = [row["train_loss"] for row in history.epochs]
    assert losses[-1] < 0.5 * losses[0]  # and training went on
