"""Pictures of a finished run, written as PNG files into its run directory.

``plot_run(run_dir)`` always draws the loss and metric curves, and then whatever
fits the run's data:

- ``curves.png``: train and test loss, and accuracy (%) or MAE, per epoch;
- ``decision_boundary.png``: 2-D classification, the model's regions with the
  train and test points (as in the PyTorch workflow notes);
- ``fit.png``: 1-D regression, the data and the fitted line or curve;
- ``confusion.png``: classification, the test split's confusion matrix (counts,
  class names on the axes);
- ``samples.png``: image classification, a 3x3 grid of test images with their
  true and predicted class names, mistakes first (in red).

The curves mark the selected epoch (the weights ``model.safetensors`` holds).

matplotlib is imported only inside these functions (``tk --help`` and ``tk list``
never pay for it), and only through ``matplotlib.figure.Figure``: no pyplot, no
global backend switch, no display needed; saving a PNG uses the Agg renderer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import runs
from toolkit.data import Split
from toolkit.errors import UsageError
from toolkit.runs.lock import lock_run

if TYPE_CHECKING:
    import torch

    from toolkit.data import Data
    from toolkit.registry import Registry

CURVES = "curves.png"
BOUNDARY = "decision_boundary.png"
FIT = "fit.png"
SAMPLES = "samples.png"
CONFUSION = "confusion.png"
DPI = 100


def plot_run(
    run_dir: str | Path,
    *,
    model: torch.nn.Module | None = None,
    registry: Registry | None = None,
) -> list[Path]:
    """Write the PNGs that fit this run into ``run_dir``; return their paths.

    :param run_dir: a finished run directory (``config.json``, ``metrics.jsonl``).
    :param model: the trained model, if the caller already holds it (saves a rebuild);
        it is moved to the CPU and put in eval mode.
    :param registry: where the run's model and dataset are looked up (default: plugins).
    :raises UsageError: not a run directory, or the run has no metrics yet.
    """
    run = runs.open_run(run_dir)
    with lock_run(run.path, "tk plot"):  # PNGs go into the run directory: one writer
        return _plot_all(run, model, registry)


def _plot_all(
    run: runs.Run, model: torch.nn.Module | None, registry: Registry | None
) -> list[Path]:
    rows = _read_metrics(run.path)
    written = [_plot_curves(run, rows)]

    kind = _data_plot_kind(run.config)
    if kind is None:
        return written
    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()
    if model is None:
        from toolkit.models import rebuild_model

        model = rebuild_model(run, registry)
    from toolkit.models import run_data

    data = run_data(run.config, registry)
    if not (isinstance(data.train, Split) and isinstance(data.test, Split)):
        return written  # streamed (out-of-memory) data: curves only
    model = model.cpu().eval()
    if kind == "boundary":
        written.append(_plot_boundary(run, model, data))
    elif kind == "fit":
        written.append(_plot_fit(run, model, data))
    if run.config["task"] in ("binary", "multiclass"):
        pred = _test_labels(run.config["task"], model, data)
        written.append(_plot_confusion(run, data, pred))
        if kind == "samples":
            written.append(_plot_samples(run, data, pred))
    return written


# ------------------------------------------------------------------------ helpers
def _read_metrics(path: Path) -> list[dict[str, float]]:
    metrics = path / runs.METRICS_JSONL
    if not metrics.is_file():
        raise UsageError(
            f"{path} has no {runs.METRICS_JSONL} (the run did not finish)", "tk train MODEL"
        )
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    if not rows:
        raise UsageError(f"{metrics} is empty (the run did not finish)", "tk train MODEL")
    return rows


def _data_plot_kind(cfg: dict[str, Any]) -> str | None:
    """Which data picture suits the run: ``boundary``, ``fit``, ``samples`` or None."""
    shape = [d for d in cfg["input"]["shape"] if d != "batch"]
    task = cfg["task"]
    if task in ("binary", "multiclass") and shape == [2]:
        return "boundary"
    if task == "regression" and shape == [1] and cfg.get("outputs", 1) == 1:
        return "fit"
    if task in ("binary", "multiclass") and len(shape) == 3 and shape[0] in (1, 3):
        return "samples"
    return "confusion" if task in ("binary", "multiclass") else None


def figure(ncols: int = 1, nrows: int = 1, width: float = 6.0, height: float = 4.5):
    """A matplotlib ``Figure`` and its grid of axes, without pyplot's global state."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_png(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path``, atomically (a half-written PNG never lands)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    runs.atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    import torch

    with torch.inference_mode():
        return model(x)


def _labels(task: str, out: torch.Tensor) -> torch.Tensor:
    # logits -> labels: sigmoid/round for binary (logit > 0), argmax for multiclass.
    if task == "binary":
        return (out.reshape(-1) > 0).long()
    return out.argmax(dim=1)


def _same_split(data: Data) -> bool:
    """True when "test" is the training rows again (the seed notes' small data sets)."""
    import torch

    a, b = data.train, data.test
    if a is b:
        return True
    return a.x.shape == b.x.shape and bool(torch.equal(a.x, b.x)) and bool(torch.equal(a.y, b.y))


def _model_title(run: runs.Run) -> str:
    return f"{run.config['model']} on {run.config['dataset']}"


# ------------------------------------------------------------------------- curves
def _plot_curves(run: runs.Run, rows: list[dict[str, float]]) -> Path:
    """Loss (left) and accuracy % or MAE (right), train and validation (or test), per epoch."""
    metric = "accuracy" if run.config["task"] in ("binary", "multiclass") else "mae"
    held = "val" if "val_loss" in rows[0] else "test"  # runs from before validation splits
    epochs = [r["epoch"] for r in rows]
    fig, axes = figure(ncols=2, width=5.5, height=4.0)
    left, right = axes[0]
    for split, style in (("train", "-"), (held, "--")):
        left.plot(epochs, [r[f"{split}_loss"] for r in rows], style, label=f"{split} loss")
        scale = 100.0 if metric == "accuracy" else 1.0
        values = [scale * r[f"{split}_{metric}"] for r in rows]
        right.plot(epochs, values, style, label=f"{split} {metric}")
    losses = [r[k] for r in rows for k in ("train_loss", f"{held}_loss")]
    # A loss that falls by orders of magnitude (regression from raw scores) reads on a log axis.
    if min(losses) > 0 and max(losses) / min(losses) > 100:
        left.set_yscale("log")
    left.set(xlabel="epoch", ylabel="loss", title="Loss")
    right.set(
        xlabel="epoch",
        ylabel="accuracy (%)" if metric == "accuracy" else "mean absolute error",
        title="Accuracy" if metric == "accuracy" else "MAE",
    )
    chosen = _selected_epoch(run.path)
    for ax in (left, right):
        if chosen is not None:
            ax.axvline(chosen, color="tab:red", linestyle=":", label=f"selected (epoch {chosen})")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(_model_title(run))
    return save_png(fig, run.path / CURVES)


def _selected_epoch(path: Path) -> int | None:
    """The epoch whose weights the run kept (summary.json), or None before it finished."""
    summary = path / runs.SUMMARY
    if not summary.is_file():
        return None
    selected = json.loads(summary.read_text()).get("selected") or {}
    return int(selected["epoch"]) if selected.get("epoch") else None


# ------------------------------------------------------------------ classification
def _test_labels(task: str, model: torch.nn.Module, data: Data) -> torch.Tensor:
    """The predicted class of every test row (in evaluation-sized chunks)."""
    import torch

    x = data.test.x
    step = max(1, (1 << 20) // max(1, x[0].numel()))
    parts = [
        _labels(task, _predict(model, data.features(x[i : i + step])))
        for i in range(0, len(x), step)
    ]
    return torch.cat(parts)


def _class_name(names: list[str] | None, i: int) -> str:
    return names[i] if names and 0 <= i < len(names) else str(i)


def _plot_confusion(run: runs.Run, data: Data, pred: torch.Tensor) -> Path:
    """Counts of (true, predicted) classes over the test split; the diagonal is right."""
    import numpy as np

    names = run.config.get("class_names") or None
    true = data.test.y.long().reshape(-1).numpy()
    k = int(run.config.get("outputs") or 1)
    k = 2 if run.config["task"] == "binary" else k
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (true, pred.numpy()), 1)
    side = min(12.0, 2.5 + 0.45 * k)
    fig, axes = figure(width=side, height=side)
    ax = axes[0][0]
    ax.imshow(counts, cmap="Blues")
    labels = [_class_name(names, i) for i in range(k)]
    ax.set_xticks(range(k), labels, rotation=90 if k > 6 else 0)
    ax.set_yticks(range(k), labels)
    if k <= 30:
        top = counts.max() or 1
        for (i, j), c in np.ndenumerate(counts):
            ax.text(j, i, str(c), ha="center", va="center", fontsize=8,
                    color="white" if c > top / 2 else "black")  # fmt: skip
    acc = float(np.trace(counts)) / max(1, counts.sum())
    ax.set(xlabel="predicted", ylabel="true", title=f"{_model_title(run)}: test, {100 * acc:.2f}%")
    return save_png(fig, run.path / CONFUSION)


# -------------------------------------------------------------- decision boundary
def _plot_boundary(run: runs.Run, model: torch.nn.Module, data: Data) -> Path:
    """Filled class regions over a grid, with the points on top (train | test)."""
    import numpy as np
    import torch

    task = run.config["task"]
    if _same_split(data):
        panels = [("Train (= test)", data.train)]
    else:
        panels = [("Train", data.train), ("Test", data.test)]
    points = torch.cat([data.features(split.x) for _, split in panels]).numpy()
    lo, hi = points.min(axis=0), points.max(axis=0)
    pad = np.maximum(0.1 * (hi - lo), 0.5)  # four XOR points still get a visible margin
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 201)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 201)
    gx, gy = np.meshgrid(xs, ys)
    grid = torch.from_numpy(np.c_[gx.ravel(), gy.ravel()].astype(np.float32))
    out = _predict(model, grid)
    if task == "binary":
        zz = torch.sigmoid(out.reshape(-1)).numpy().reshape(gx.shape)
        levels = np.linspace(0.0, 1.0, 11)
    else:
        zz = out.argmax(dim=1).numpy().reshape(gx.shape)
        n = int(run.config.get("outputs") or zz.max() + 1)
        levels = np.arange(n + 1) - 0.5

    fig, axes = figure(ncols=len(panels), width=5.0, height=4.5)
    for ax, (title, split) in zip(axes[0], panels, strict=True):
        ax.contourf(gx, gy, zz, levels=levels, cmap="RdYlBu", alpha=0.6)
        if task == "binary":
            ax.contour(gx, gy, zz, levels=[0.5], colors="k", linewidths=1)
        x = data.features(split.x).numpy()
        y = split.y.numpy()
        ax.scatter(x[:, 0], x[:, 1], c=y, cmap="RdYlBu", edgecolors="k", s=30)
        acc = float(
            (_labels(task, _predict(model, data.features(split.x))) == split.y).float().mean()
        )
        ax.set(title=f"{title}: {100 * acc:.2f}% accuracy", xlabel="x1", ylabel="x2")
    fig.suptitle(_model_title(run))
    return save_png(fig, run.path / BOUNDARY)


# ------------------------------------------------------------------ 1-D regression
def _plot_fit(run: runs.Run, model: torch.nn.Module, data: Data) -> Path:
    """The data points and the model's line or curve over their x range."""
    import numpy as np
    import torch

    fig, axes = figure(width=6.0, height=4.5)
    ax = axes[0][0]
    same = _same_split(data)
    x_all = torch.cat([data.features(data.train.x), data.features(data.test.x)]).numpy()
    lo, hi = float(x_all.min()), float(x_all.max())
    pad = 0.05 * (hi - lo or 1.0)
    grid = np.linspace(lo - pad, hi + pad, 300, dtype=np.float32).reshape(-1, 1)
    pred = _predict(model, torch.from_numpy(grid)).reshape(-1).numpy()
    ax.scatter(
        data.features(data.train.x).numpy().ravel(),
        data.train.y.numpy().ravel(),
        color="tab:blue",
        s=30,
        label="data" if same else "train",
    )
    if not same:
        ax.scatter(
            data.features(data.test.x).numpy().ravel(),
            data.test.y.numpy().ravel(),
            color="tab:green",
            s=30,
            marker="^",
            label="test",
        )
    ax.plot(grid.ravel(), pred, color="tab:red", label="model")
    ax.set(xlabel="x", ylabel="y", title=_model_title(run))
    ax.grid(alpha=0.3)
    ax.legend()
    return save_png(fig, run.path / FIT)


# --------------------------------------------------------------------- image grid
def _plot_samples(run: runs.Run, data: Data, pred: torch.Tensor, n: int = 3) -> Path:
    """An n x n grid of test images, mistakes first (red), titled with the true and the
    predicted class names."""
    import numpy as np

    names = run.config.get("class_names") or None
    split = data.test
    true = split.y.long().reshape(-1).numpy()
    guess = pred.numpy()
    wrong = np.flatnonzero(guess != true)
    right = np.flatnonzero(guess == true)
    rng = np.random.default_rng(0)  # the same images every time, for comparing runs
    idx = np.concatenate([wrong, rng.permutation(right)])[: n * n]
    x = data.features(split.x[idx]).numpy()
    fig, axes = figure(ncols=n, nrows=n, width=2.2, height=2.5)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k >= len(idx):
            continue
        img = x[k]
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0.0, vmax=1.0)
        else:
            ax.imshow(np.clip(img.transpose(1, 2, 0), 0.0, 1.0))
        t, g = int(true[idx[k]]), int(guess[idx[k]])
        ax.set_title(
            f"true: {_class_name(names, t)}\npred: {_class_name(names, g)}",
            color="black" if t == g else "red",
            fontsize=9,
        )
    fig.suptitle(f"{_model_title(run)}: test, {len(wrong)} of {len(true)} wrong (shown first)")
    return save_png(fig, run.path / SAMPLES)
