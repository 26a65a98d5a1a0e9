"""Runs side by side: the configuration keys that differ, the metrics, one picture.

matplotlib is imported only by :func:`plot_compare`, through ``matplotlib.figure``
(no pyplot, no display: the Agg renderer writes the PNG).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from toolkit import runs
from toolkit.errors import UsageError
from toolkit.runlog.scan import RunInfo

# Differ between any two runs and say nothing about them.
_IGNORED = ("created",)
_SUMMARY_KEYS = ("seconds", "samples_per_second")  # from summary.json


def flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested dicts as dotted keys: ``{"recipe": {"lr": 0.1}}`` -> ``("recipe.lr", 0.1)``."""
    if isinstance(obj, dict) and obj:
        for key, value in obj.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, obj


def config_diff(items: Sequence[RunInfo]) -> dict[str, list[Any]]:
    """Each config key whose value is not the same in every run, with each run's value."""
    flat = [dict(flatten(r.config)) for r in items]
    keys: list[str] = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    diff = {}
    for key in keys:
        if key in _IGNORED:
            continue
        values = [f.get(key) for f in flat]
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1:
            diff[key] = values
    return diff


def metrics_table(items: Sequence[RunInfo]) -> dict[str, list[Any]]:
    """Status, epochs, time and every metric, one value per run (None where absent)."""
    table: dict[str, list[Any]] = {
        "status": [r.status for r in items],
        "epochs": [r.epochs for r in items],
    }
    for key in _SUMMARY_KEYS:
        table[key] = [r.summary.get(key) for r in items]
    names: list[str] = []
    for r in items:
        names += [k for k in r.metrics if k not in names]
    for key in sorted(names, key=_metric_order):
        table[key] = [r.metrics.get(key) for r in items]
    selected = [r.summary.get("selected") for r in items]
    if any(selected):
        table["selected_epoch"] = [s.get("epoch") if s else None for s in selected]
    return table


def _metric_order(key: str) -> tuple[int, str]:
    # train, then val, then test; anything else (lr, ...) after them.
    split = key.split("_", 1)[0]
    return ({"train": 0, "val": 1, "test": 2}.get(split, 3), key)


def compare(items: Sequence[RunInfo]) -> dict[str, Any]:
    """What ``tk runs compare`` shows: run names, differing config, metrics."""
    if len(items) < 2:
        raise UsageError("compare needs at least two runs", "tk runs compare RUN_A RUN_B")
    return {
        "runs": [r.name for r in items],
        "config": config_diff(items),
        "metrics": metrics_table(items),
    }


def read_rows(run: RunInfo) -> list[dict[str, Any]]:
    """Every epoch's metrics of a run (``metrics.jsonl``; [] if it has none yet)."""
    path = run.path / runs.METRICS_JSONL
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a torn last line: the rows before it still count
    return rows


def plot_compare(items: Sequence[RunInfo], out: str | Path) -> Path:
    """One PNG: loss (left) and accuracy or MAE (right) per epoch, a colour per run,
    the line style per split (train solid, val dashed, test dotted)."""
    from matplotlib.figure import Figure

    curves = [(r, read_rows(r)) for r in items]
    if not any(rows for _, rows in curves):
        raise UsageError("none of these runs has metrics.jsonl yet", "tk runs show RUN")
    fig = Figure(figsize=(11, 4.2), dpi=100, layout="constrained")
    left, right = fig.subplots(1, 2)
    styles = {"train": "-", "val": "--", "test": ":"}
    shown: list[str] = []  # the right panel's metrics: accuracy, mae or both
    for i, (run, rows) in enumerate(curves):
        epochs = [r.get("epoch") for r in rows]
        for split, style in styles.items():
            for ax, metric in ((left, "loss"), (right, "accuracy"), (right, "mae")):
                key = f"{split}_{metric}"
                if not rows or key not in rows[0]:
                    continue
                values = [r.get(key) for r in rows]
                ax.plot(epochs, values, style, color=f"C{i % 10}", label=f"{run.name} {split}")
                if ax is right and metric not in shown:
                    shown.append(metric)
    label = " / ".join("MAE" if m == "mae" else m for m in shown) or "metric"
    left.set(xlabel="epoch", ylabel="loss", title="Loss")
    right.set(xlabel="epoch", ylabel=label, title=label.capitalize())
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path = Path(out)
    runs.atomic_write_bytes(path, buf.getvalue())
    return path
