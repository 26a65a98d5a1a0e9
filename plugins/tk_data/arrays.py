"""An ``.npz`` holding ``x`` (any sample shape) and ``y``: arrays, not columns.

The target goes through the same inference as a table's target column; the
features are used as they are (their shape is the model's input), standardized
per element with the training rows' statistics. Nothing is recorded for
``tk predict`` to match by name: it reads ``.npy``/``.csv`` numbers of that shape.
"""

from __future__ import annotations

from typing import Any

from tk_data.holdout import split_rows
from tk_data.tables import Table
from tk_data.tabular import encode_target
from toolkit import FLOAT32_MAX, DataInfo, UsageError


def load_arrays(
    table: Table, task: str, test_fraction: float, seed: int, standardize: bool
) -> dict[str, Any]:
    """Train/test splits of ``x`` and ``y``, and what was inferred from ``y``."""
    import numpy as np
    import pyarrow as pa

    assert table.arrays is not None
    x, y = table.arrays
    p = table.path
    if x.ndim < 2 or len(x) == 0:
        raise UsageError(f"csv: {p}: x has shape {x.shape}; expected (rows, features...)")
    if len(y) != len(x):
        raise UsageError(f"csv: {p}: x has {len(x)} rows but y has {len(y)}")
    if x.dtype.kind not in "biuf":
        raise UsageError(f"csv: {p}: x holds {x.dtype} values; numbers are needed")
    flat = x.reshape(len(x), -1)
    with np.errstate(invalid="ignore"):  # float32 holds at most 3.4e38: beyond is inf
        bad = ~np.isfinite(flat) | (np.abs(flat) > FLOAT32_MAX)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise UsageError(
            f"csv: {p}: x row {row + 1}, feature {col + 1}: {flat[row, col]:g} is not a "
            "finite float32 number"
        )
    x = x.astype(np.float32, copy=False)
    if y.ndim > 1 and y.shape[1:] != (1,):
        return _multi_target(table, x, y, test_fraction, seed, standardize)
    labels, tgt = encode_target(
        Table(p, "npz", pa.table({"y": y.reshape(-1)}), layout=table.layout), "y", task
    )
    classes = tgt.task != "regression"
    train, test = split_rows(len(x), test_fraction, labels if classes else None, seed)
    info = DataInfo(
        feature_shape=tuple(x.shape[1:]),
        target=tgt.task,
        num_classes=len(tgt.class_names) if tgt.class_names else None,
        class_names=tgt.class_names,
        target_dim=None if classes else 1,
        standardize=standardize,
        standardize_target=standardize and not classes,
        notes=[
            f"{p.name}: {table.layout}; {len(x)} rows of shape {tuple(x.shape[1:])}; {tgt.note}"
        ],
    )
    return {"train": (x[train], labels[train]), "test": (x[test], labels[test]), "info": info}


def _multi_target(
    table: Table, x: Any, y: Any, test_fraction: float, seed: int, standardize: bool
) -> dict[str, Any]:
    """A 2-D ``y``: a regression on every column of it."""
    import numpy as np

    p = table.path
    if y.dtype.kind not in "biuf" or y.ndim != 2:
        raise UsageError(f"csv: {p}: y has shape {y.shape} ({y.dtype}); expected numbers (rows, k)")
    y = y.astype(np.float32)
    if not np.isfinite(y).all():
        row = int(np.argwhere(~np.isfinite(y))[0][0])
        raise UsageError(f"csv: {p}: y row {row + 1}: missing or infinite value")
    train, test = split_rows(len(x), test_fraction, None, seed)
    info = DataInfo(
        feature_shape=tuple(x.shape[1:]),
        target="regression",
        target_dim=int(y.shape[1]),
        standardize=standardize,
        standardize_target=standardize,
        notes=[f"{p.name}: {table.layout}; {len(x)} rows; regression on {y.shape[1]} targets"],
    )
    return {"train": (x[train], y[train]), "test": (x[test], y[test]), "info": info}
