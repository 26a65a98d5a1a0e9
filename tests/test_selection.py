"""Honest model selection: validation picks the epoch, the test split is read once at the end.

Schedules come from torch.optim.lr_scheduler, early stopping keeps the best weights,
and a SIGKILLed run with both resumes to the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from toolkit import DatasetSpec, ModelSpec, Recipe
from toolkit.checkpoint import list_checkpoints, load
from toolkit.config import TrainConfig
from toolkit.registry import InputSpec, Registry, Source
from toolkit.runs import sha256_file
from toolkit.testing import popen_tk, wait_for_checkpoint
from toolkit.train import fit, train


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


# ------------------------------------------------------- the test split, read once
def test_the_test_split_is_never_read_before_the_final_evaluation(tmp_path):
    import torch
    from torch import nn

    class Recorded(torch.utils.data.Dataset):
        """Writes down when each of its rows was read."""

        def __init__(self, x, y, log: list[float]):
            self.x, self.y, self.log = x, y, log

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            self.log.append(time.monotonic())
            return self.x[i], self.y[i]

    train_reads: list[float] = []
    test_reads: list[float] = []

    def load():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(300, 2, generator=g)
        y = (x[:, 0] * x[:, 1] > 0).float()
        return {
            "train": Recorded(x[:240], y[:240], train_reads),
            "test": Recorded(x[240:], y[240:], test_reads),
        }

    def build():
        return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))

    registry = Registry()
    src = Source("spy", "spy", "0")
    recipe = Recipe(optimizer="adam", lr=0.05, epochs=8, batch_size=32)
    registry.add(ModelSpec("m", build, InputSpec((2,)), "binary", recipe=recipe), src)
    registry.add(DatasetSpec("spy", load, feature_shape=(2,), target="binary"), src)
    cfg = TrainConfig(model="m", dataset="spy", runs_dir=str(tmp_path), quiet=True)
    result = train(cfg, registry=registry)
    # Validation rows come out of the training Dataset, so they count as train reads.
    assert len(train_reads) == 8 * (216 + 24) + 2  # 8 epochs of train + val, the dry batch
    assert len(test_reads) == 60  # the whole test split, exactly once
    assert min(test_reads) > max(train_reads)
    assert result.summary["test"]["rows"] == 60


# ----------------------------------------------------------------- schedules
def _circle_data():
    from toolkit.models import load_data
    from toolkit.plugins import get_registry

    spec = get_registry().dataset("circles")
    return load_data(spec, spec.resolve_params({}))


def _circle_model():
    import torch

    from toolkit.plugins import get_registry

    torch.manual_seed(0)
    return get_registry().model("circle").build()


def _by_hand(kind: str, warmup: int, epochs: int, steps: int, lr: float) -> list[float]:
    """The same schedule from torch.optim.lr_scheduler, stepped by hand."""
    import torch
    from torch.optim import lr_scheduler as S

    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    rest = epochs - warmup
    if kind == "onecycle":
        sched = S.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps, pct_start=warmup / epochs)
    else:
        main = {
            "step": lambda: S.StepLR(opt, step_size=max(1, rest // 3), gamma=0.1),
            "cosine": lambda: S.CosineAnnealingLR(opt, T_max=rest),
        }[kind]()
        ramp = S.LinearLR(opt, start_factor=1 / (warmup + 1), total_iters=warmup)
        sched = S.SequentialLR(opt, [ramp, main], milestones=[warmup])
    trace = []
    for _ in range(epochs):
        trace.append(opt.param_groups[0]["lr"])
        for _ in range(steps if kind == "onecycle" else 1):
            opt.step()
            if kind == "onecycle":
                sched.step()
        if kind != "onecycle":
            sched.step()
    return trace


@pytest.mark.parametrize("kind", ["step", "cosine", "onecycle"])
def test_each_schedule_is_torchs_own(kind):
    epochs, warmup, batch = 30, 3, 200  # 800 training rows: 4 steps per epoch
    recipe = Recipe(
        optimizer="adam", lr=0.02, epochs=epochs, batch_size=batch, scheduler=kind,
        warmup_epochs=warmup,
    )  # fmt: skip
    history = fit(_circle_model(), _circle_data(), recipe, task="binary", log_every=10)
    got = [row["lr"] for row in history.epochs]
    assert got == pytest.approx(_by_hand(kind, warmup, epochs, 4, 0.02), rel=1e-12, abs=0)


def test_plateau_lowers_the_rate_after_validation_stalls():
    import torch
    from torch.optim import lr_scheduler as S

    from toolkit.splits import carve_validation
    from toolkit.train.selection import monitor_for
    from toolkit.train.state import FitOptions

    data = carve_validation(_circle_data(), 0.1, 42)
    recipe = Recipe(optimizer="adam", lr=0.05, epochs=60, scheduler="plateau")
    monitor = monitor_for("val_loss", "binary")
    history = fit(_circle_model(), data, recipe, task="binary", options=FitOptions(monitor=monitor))
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    by_hand = S.ReduceLROnPlateau(opt, mode="min", patience=5)
    expected = []
    for row in history.epochs:
        expected.append(opt.param_groups[0]["lr"])
        by_hand.step(row["val_loss"])
    assert [r["lr"] for r in history.epochs] == expected


# ------------------------------------------------------------ early stopping
EARLY = [
    "train", "circle", "--dataset", "moons", "--data-param", "noise=0.4",
    "--data-param", "n_samples=2000", "--param", "hidden=32", "--epochs", "200",
    "--batch-size", "16", "--lr", "0.002", "--early-stop", "5", "--scheduler", "cosine",
    "--warmup-epochs", "2", "--checkpoint-every", "1", "--keep-checkpoints", "0", "-q",
]  # fmt: skip


@pytest.mark.slow
def test_early_stop_keeps_the_best_epochs_weights(tk):
    res = tk(*EARLY, "--name", "es")
    assert res.code == 0, res.err
    run = tk.cwd / "runs/circle/es"
    s = _summary(run)
    stopped = s["epochs"]
    assert stopped < 200 and s["stopped_early"].startswith(f"early stop at epoch {stopped}")
    best = s["selected"]["epoch"]
    assert best == stopped - 5  # no improvement in the 5 epochs after it
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert min(rows, key=lambda r: r["val_loss"])["epoch"] == best
    at_best = next(p for p in list_checkpoints(run) if p.name == f"epoch-{best:06d}.safetensors")
    weights = load_file(str(run / "model.safetensors"))
    state = load(at_best).model_state
    assert weights.keys() == state.keys()
    assert all(bool((weights[k] == state[k]).all()) for k in weights)
    last = load(list_checkpoints(run)[-1]).model_state
    assert any(
        not bool((load_file(str(run / "last.safetensors"))[k] == state[k]).all()) for k in last
    )


@pytest.mark.slow
def test_sigkill_mid_run_with_cosine_and_early_stop_resumes_bitwise(tk):
    assert tk(*EARLY, "--name", "ref").code == 0
    ref = tk.cwd / "runs/circle/ref"
    proc = popen_tk([*EARLY, "--name", "cut"], tk.cwd)
    run = tk.cwd / "runs/circle/cut"
    assert wait_for_checkpoint(run, proc, epoch=4), proc.poll()
    proc.kill()
    proc.wait()
    assert not (run / "summary.json").exists()  # killed before it finished
    res = tk("train", "--resume", str(run), "-q")
    assert res.code == 0, res.err
    for name in ("model.safetensors", "last.safetensors"):
        assert sha256_file(run / name) == sha256_file(ref / name)
    assert _summary(run)["selected"] == _summary(ref)["selected"]
    assert _summary(run)["stopped_early"] == _summary(ref)["stopped_early"]


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["circle", "--scheduler", "linear"], "none, step, cosine, onecycle, plateau"),
        (["circle", "--monitor", "val_f1"], "val_loss, val_acc"),
        (["linear-regression", "--monitor", "val_acc"], "val_loss or val_mae"),
        (["circle", "--monitor", "val_mae"], "val_loss or val_acc"),
        (["circle", "--val-fraction", "0"], "(0, 0.5]"),
        (["circle", "--val-fraction", "0.6"], "(0, 0.5]"),
        (["circle", "--early-stop", "0"], "at least 1"),
        (["circle", "--warmup-epochs", "1000"], "[0, epochs)"),
    ],
)
def test_bad_selection_options_exit_2_and_leave_nothing(tk, args, words):
    res = tk("train", *args)
    assert res.code == 2, res.err
    assert res.err.startswith("tk: error: ") and words in res.err
    assert len(res.err.strip().splitlines()) == 1
    assert not (tk.cwd / "runs").exists()


def test_info_and_config_show_the_selection_defaults(tk):
    res = tk("train", "circle", "--epochs", "5", "-q", "--name", "d")
    assert res.code == 0, res.err
    cfg = json.loads((tk.cwd / "runs/circle/d/config.json").read_text())
    assert cfg["selection"] == {
        "val_fraction": 0.1, "monitor": "val_loss", "early_stop": None, "min_delta": 0.0,
    }  # fmt: skip
    assert cfg["recipe"]["scheduler"] == "none"
    info = tk("info", "digits-cnn", "--json")
    assert json.loads(info.out)["recipe"]["scheduler"] == "cosine"


def test_export_takes_the_selected_weights_unless_told_last(tk):
    from toolkit.trust import read_metadata

    assert tk("train", "circle", "-q", "--name", "w").code == 0  # selects epoch 594 of 1000
    run = tk.cwd / "runs/circle/w"
    s = _summary(run)
    assert s["weights_sha256"] != s["last_weights_sha256"]  # the best epoch was not the last
    assert tk("export", str(run), "--out", "best.onnx").code == 0
    res = tk("export", str(run), "--weights", "last", "--out", "last.onnx")
    assert res.code == 0, res.err
    best, last = read_metadata(tk.cwd / "best.onnx"), read_metadata(tk.cwd / "last.onnx")
    assert (best["weights"], best["weights_sha256"]) == ("best", s["weights_sha256"])
    assert (last["weights"], last["weights_sha256"]) == ("last", s["last_weights_sha256"])
    assert tk("verify", "last.onnx").code == 0  # against the last epoch's eager model
    bad = tk("export", str(run), "--weights", "newest", "--out", "x.onnx")
    assert bad.code == 2 and "--weights must be best or last" in bad.err
