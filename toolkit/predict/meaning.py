"""What a model's outputs mean: probabilities and labels, class names, or values.

The output meaning comes from the file's metadata (or the run's config): binary
logits become a probability and a label, multiclass logits a softmax and the most
likely class (by name when the dataset has class names), regression outputs stay
values (the task's own :meth:`~toolkit.tasks.Task.labels` and
:meth:`~toolkit.tasks.Task.probabilities` decide which).

A :class:`Prediction` keeps whole-batch numpy arrays. The text table is formatted
from them in one ``%`` operation over every row (one C-level pass, no Python
object per cell), so printing 1,024 predictions costs about what onnxruntime's
own run does; the per-row dicts of ``--json`` are built only when asked for.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from toolkit.tasks import get_task

if TYPE_CHECKING:
    import numpy as np

FLOAT = "%.6g"  # every float cell (the same digits as format(v, ".6g"))
GAP = "  "  # between columns


@dataclass
class Prediction:
    """Predictions for every input row, with what produced them.

    Classification fills ``labels`` (int64, one per row) and ``probabilities``
    (float64, rows x classes); regression fills ``values`` (float64, rows x outputs).
    """

    source: str
    runtime: str
    task: str
    labels: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    values: np.ndarray | None = None
    class_names: list[str] | None = None
    files: list[str] | None = None  # the image file each row came from, when read from files

    def __len__(self) -> int:
        data = self.labels if self.labels is not None else self.values
        return 0 if data is None else len(data)

    @property
    def probability(self) -> np.ndarray | None:
        """The probability of each row's predicted label."""
        import numpy as np

        if self.labels is None or self.probabilities is None:
            return None
        return self.probabilities[np.arange(len(self.labels)), self.labels]

    def classes(self) -> list[str] | None:
        """Each row's class name, when the dataset names its classes."""
        import numpy as np

        if not self.class_names or self.labels is None:
            return None
        return np.asarray(self.class_names, dtype=object)[self.labels].tolist()

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One dict per row: ``row``, ``label``, ``probability``, ``class``, ``probabilities``
        (classification) or ``row``, ``values`` (regression)."""
        n = len(self)
        if self.labels is None:
            values = [] if self.values is None else self.values.tolist()
            rows = [{"row": i, "values": v} for i, v in enumerate(values, start=1)]
            return self._with_files(rows)
        labels, prob = self.labels.tolist(), self.probability.tolist()  # type: ignore[union-attr]
        probs = self.probabilities.tolist()  # type: ignore[union-attr]
        classes = self.classes()
        rows = []
        for i in range(n):
            row: dict[str, Any] = {"row": i + 1, "label": labels[i], "probability": prob[i]}
            if classes is not None:
                row["class"] = classes[i]
            row["probabilities"] = probs[i]
            rows.append(row)
        return self._with_files(rows)

    def _with_files(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.files is not None:
            for row, name in zip(rows, self.files, strict=True):
                row["file"] = name
        return rows

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly dict (``tk predict --json``)."""
        return {
            "source": self.source,
            "runtime": self.runtime,
            "task": self.task,
            "predictions": self.rows,
        }

    def text(self) -> str:
        """The aligned table ``tk predict`` prints: a header, then one line per row."""
        n = len(self)
        if not n:
            return ""
        row_w = max(3, len(str(n)))
        if self.labels is None:
            k = self.values.shape[1]  # type: ignore[union-attr]
            header, widths = ["row", "values"], [row_w]
            template = f"%-{row_w}d{GAP}" + " ".join([FLOAT] * k)
            columns = [range(1, n + 1), *self.values.T.tolist()]  # type: ignore[union-attr]
        else:
            header, widths, prefixes = self._label_columns()
            template = f"%-{row_w}d{GAP}%s{FLOAT}"
            widths.insert(0, row_w)
            columns = [range(1, n + 1), prefixes, self.probability.tolist()]  # type: ignore[union-attr]
        if self.files is not None:  # after the row number, padded to the longest name
            file_w = max(4, *(len(f) for f in self.files))
            header.insert(1, "file")
            widths.insert(1, file_w)
            template = template.replace(GAP, f"{GAP}%-{file_w}s{GAP}", 1)
            columns.insert(1, self.files)
        # The last column is never padded (lines end without blanks), the others are.
        head = GAP.join([h.ljust(w) for h, w in zip(header, widths, strict=False)] + [header[-1]])
        args = tuple(itertools.chain.from_iterable(zip(*columns, strict=True)))
        return head + "\n" + "\n".join([template] * n) % args

    def _label_columns(self) -> tuple[list[str], list[int], list[str]]:
        """Header, widths and each row's ``class  label  `` cells (one string per label)."""
        import numpy as np

        labels = self.labels  # type: ignore[union-attr]
        present = np.unique(labels).tolist()  # type: ignore[arg-type]
        label_w = max(5, *(len(str(v)) for v in present))
        names = self.class_names
        if names:
            class_w = max(5, *(len(names[v]) for v in present))
            cells = {v: f"{names[v]:<{class_w}}{GAP}{v:<{label_w}}{GAP}" for v in present}
            header, widths = ["row", "class", "label", "probability"], [class_w, label_w]
        else:
            cells = {v: f"{v:<{label_w}}{GAP}" for v in present}
            header, widths = ["row", "label", "probability"], [label_w]
        # Rows with the same label share their cells: one lookup per row, no formatting.
        table = np.empty(max(present) + 1, dtype=object)
        for v, cell in cells.items():
            table[v] = cell
        return header, widths, table[labels].tolist()  # type: ignore[index]

    def lines(self) -> list[str]:
        """Aligned text rows for the terminal (:meth:`text`, split)."""
        text = self.text()
        return text.split("\n") if text else []


def interpret(
    y: np.ndarray, meta: dict[str, Any], source: str = "", runtime: str = ""
) -> Prediction:
    """Outputs ``(rows, k)`` as a Prediction: labels and probabilities, or values."""
    import numpy as np

    task = get_task(meta["task"])
    labels = task.labels(y)
    if labels is None:
        return Prediction(source, runtime, task.name, values=np.asarray(y, dtype=np.float64))
    return Prediction(
        source,
        runtime,
        task.name,
        labels=labels,
        probabilities=task.probabilities(y),
        class_names=meta.get("class_names"),
    )
