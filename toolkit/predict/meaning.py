"""What a model's outputs mean: probabilities and labels, class names, or values.

The output meaning comes from the file's metadata (or the run's config): binary
logits become a probability and a label, multiclass logits a softmax and the most
likely class (by name when the dataset has class names), regression outputs stay
values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Prediction:
    """Predictions for every input row, with what produced them."""

    source: str
    runtime: str
    task: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly dict (``tk predict --json``)."""
        return {
            "source": self.source,
            "runtime": self.runtime,
            "task": self.task,
            "predictions": self.rows,
        }

    def lines(self) -> list[str]:
        """Aligned text rows for the terminal."""
        if not self.rows:
            return []
        keys = [k for k in ("row", "class", "label", "probability", "value") if k in self.rows[0]]
        if "values" in self.rows[0]:
            keys.append("values")
        table = [keys]
        for r in self.rows:
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
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in table
        ]


def interpret(y: np.ndarray, meta: dict[str, Any]) -> list[dict[str, Any]]:
    import numpy as np

    task = meta["task"]
    names = meta.get("class_names")
    rows: list[dict[str, Any]] = []
    if task == "binary":
        with np.errstate(over="ignore"):
            prob = 1.0 / (1.0 + np.exp(-y[:, 0]))
        # One conversion to Python floats for the whole batch, not one per element.
        labels = (y[:, 0] > 0).astype(int).tolist()  # the loop's decision: logit > 0
        for i, (label, p) in enumerate(zip(labels, prob.tolist(), strict=True), start=1):
            pair = [1.0 - p, p]
            row: dict[str, Any] = {"row": i, "label": label, "probability": pair[label]}
            if names:
                row["class"] = names[label]
            row["probabilities"] = pair
            rows.append(row)
    elif task == "multiclass":
        z = y - y.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        labels = probs.argmax(axis=1).tolist()
        for i, (label, p) in enumerate(zip(labels, probs.tolist(), strict=True), start=1):
            row = {"row": i, "label": label, "probability": p[label]}
            if names:
                row["class"] = names[label]
            row["probabilities"] = p
            rows.append(row)
    else:
        for i, v in enumerate(y.tolist(), start=1):
            rows.append({"row": i, "values": v})
    return rows
