"""Pictures of a finished run, written as PNG files into its run directory.

``plot_run(run_dir)`` always draws the loss and metric curves, and then whatever
fits the run's data:

- ``curves.png``: train and test loss, and accuracy (%) or MAE, per epoch;
- ``decision_boundary.png``: 2-D classification, the model's regions with the
  train and test points (as in the PyTorch workflow notes);
- ``fit.png``: 1-D regression, the data and the fitted line or curve;
- ``samples.png``: image classification, a 3x3 grid of test images with their
  true and predicted labels (wrong ones in red).

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

if TYPE_CHECKING:
    import torch

    from toolkit.data import Data
    from toolkit.registry import Registry

CURVES = "curves.png"
BOUNDARY = "decision_boundary.png"
FIT = "fit.png"
SAMPLES = "samples.png"
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
    else:
        written.append(_plot_samples(run, model, data))
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
    return None


def _figure(ncols: int = 1, nrows: int = 1, width: float = 6.0, height: float = 4.5):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig: Any, path: Path) -> Path:
    # Render to memory, then write atomically: a half-written PNG never lands.
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    runs.atomic_write_bytes(path, buf.getvalue())
    return path


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
    fig, axes = _figure(ncols=2, width=5.5, height=4.0)
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
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(_model_title(run))
    return _save(fig, run.path / CURVES)


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

    fig, axes = _figure(ncols=len(panels), width=5.0, height=4.5)
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
    return _save(fig, run.path / BOUNDARY)


# ------------------------------------------------------------------ 1-D regression
def _plot_fit(run: runs.Run, model: torch.nn.Module, data: Data) -> Path:
    """The data points and the model's line or curve over their x range."""
    import numpy as np
    import torch

    fig, axes = _figure(width=6.0, height=4.5)
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
    return _save(fig, run.path / FIT)


# --------------------------------------------------------------------- image grid
def _plot_samples(run: runs.Run, model: torch.nn.Module, data: Data, n: int = 3) -> Path:
    """An n x n grid of test images, titled ``true / predicted`` (red when wrong)."""
    import numpy as np
    import torch

    task = run.config["task"]
    names = run.config.get("class_names") or None
    split = data.test
    rng = np.random.default_rng(0)  # the same images every time, for comparing runs
    idx = rng.choice(len(split), size=min(n * n, len(split)), replace=False)
    idx_t = torch.from_numpy(np.sort(idx))
    x = data.features(split.x[idx_t])
    pred = _labels(task, _predict(model, x)).numpy()
    true = split.y[idx_t].long().numpy()

    def name(i: int) -> str:
        return names[i] if names and 0 <= i < len(names) else str(i)

    fig, axes = _figure(ncols=n, nrows=n, width=2.2, height=2.4)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k >= len(x):
            continue
        img = x[k].numpy()
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0.0, vmax=1.0)
        else:
            ax.imshow(np.clip(img.transpose(1, 2, 0), 0.0, 1.0))
        ok = pred[k] == true[k]
        ax.set_title(
            f"{name(int(true[k]))} / {name(int(pred[k]))}",
            color="black" if ok else "red",
            fontsize=9,
        )
    fig.suptitle(f"{_model_title(run)}: true / predicted (test)")
    return _save(fig, run.path / SAMPLES)
