"""`tk predict` formats straight from numpy arrays: the text is the same, byte for byte, as
the per-row dict table it replaced, and the JSON rows are the same dicts."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.predict import interpret


def reference_rows(y: np.ndarray, meta: dict) -> list[dict]:
    """The previous implementation: one dict per row, built in Python."""
    task, names, rows = meta["task"], meta.get("class_names"), []
    if task == "binary":
        with np.errstate(over="ignore"):
            prob = 1.0 / (1.0 + np.exp(-y[:, 0]))
        labels = (y[:, 0] > 0).astype(int).tolist()
        for i, (label, p) in enumerate(zip(labels, prob.tolist(), strict=True), start=1):
            pair = [1.0 - p, p]
            row = {"row": i, "label": label, "probability": pair[label]}
            if names:
                row["class"] = names[label]
            row["probabilities"] = pair
            rows.append(row)
    elif task == "multiclass":
        z = y - y.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        for i, (label, p) in enumerate(
            zip(probs.argmax(axis=1).tolist(), probs.tolist(), strict=True), start=1
        ):
            row = {"row": i, "label": label, "probability": p[label]}
            if names:
                row["class"] = names[label]
            row["probabilities"] = p
            rows.append(row)
    else:
        rows = [{"row": i, "values": v} for i, v in enumerate(y.tolist(), start=1)]
    return rows


def reference_lines(rows: list[dict]) -> list[str]:
    """The previous text table: every cell formatted and padded in Python."""
    keys = [k for k in ("row", "class", "label", "probability", "value") if k in rows[0]]
    if "values" in rows[0]:
        keys.append("values")
    table = [keys]
    for r in rows:
        cells = []
        for k in keys:
            v = r[k]
            if isinstance(v, float):
                cells.append(f"{v:.6g}")
            elif isinstance(v, list):
                cells.append(" ".join(f"{x:.6g}" for x in v))
            else:
                cells.append(str(v))
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(keys))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]


CASES = [
    ("binary", 1, ["outer", "inner"]),
    ("binary", 1, None),
    ("multiclass", 3, ["top", "left", "a much longer name"]),
    ("multiclass", 12, None),
    ("regression", 1, None),
    ("regression", 3, None),
]


@pytest.mark.parametrize(("task", "k", "names"), CASES)
@pytest.mark.parametrize("n", [1, 7, 1024])
def test_text_and_rows_match_the_per_row_implementation(task, k, names, n):
    rng = np.random.default_rng(n + k)
    y = rng.standard_normal((n, k)) * rng.choice([1e-8, 1.0, 40.0, 1e4], size=(n, 1))
    if n > 2:
        y[0] = 0.0  # ties and exact zeros
        y[1] = 800.0  # exp overflow in the sigmoid
    meta = {"task": task, "class_names": names}
    pred = interpret(y, meta, "src", "rt")
    want = reference_rows(y, meta)
    assert pred.rows == want
    assert pred.lines() == reference_lines(want)
    assert pred.text() == "\n".join(reference_lines(want))


def test_ten_thousand_rows_widen_the_row_column():
    y = np.linspace(-3, 3, 10_000).reshape(-1, 1)
    pred = interpret(y, {"task": "binary", "class_names": None})
    assert pred.lines() == reference_lines(reference_rows(y, {"task": "binary"}))
