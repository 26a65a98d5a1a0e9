"""Run an exported file (or a run's eager model) on user data and say what it means.

The output meaning comes from the file's metadata (or the run's config): binary
logits become a probability and a label, multiclass logits a softmax and the most
likely class (by name when the dataset has class names), regression outputs stay
values. Malformed input is a UsageError (exit 2) naming the row and column.

Inputs: ``.csv`` (one sample per row, optional header), ``.npy`` (``(N, *shape)``,
``(N, prod(shape))`` or one sample) and ``.json`` (a list of samples, or
``{"inputs": [...]}``). Integer ``.npy`` features (e.g. uint8 images) are scaled by
the dataset's ``feature_scale``, exactly as the training loop does.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import runs
from toolkit.errors import UsageError
from toolkit.formats import static_batch

if TYPE_CHECKING:
    import numpy as np

    from toolkit.registry import Registry

CHUNK = 4096  # rows per call into the runtime


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


# ------------------------------------------------------------------------ reading
def _bad(path: Path, where: str, what: str) -> UsageError:
    return UsageError(f"{path}: {where}: {what}", "one sample per row, numbers only")


def read_input(path: str | Path, shape: list[int], feature_scale: float | None) -> np.ndarray:
    """Read ``path`` into a float32 array ``(N, *shape)``; UsageError names bad rows/columns."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"input file not found: {p}", "--input points.csv|x.npy|x.json")
    width = math.prod(shape)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        x = _read_npy(p, shape, width)
        integer = x.dtype.kind in "iu"
        x = x.astype(np.float32)
        if integer and feature_scale is not None:
            x *= np.float32(feature_scale)
    elif suffix == ".json":
        x = _read_json(p, width)
    elif suffix in (".csv", ".txt", ".tsv"):
        x = _read_csv(p, width)
    else:
        raise UsageError(
            f"unknown input type {p.suffix or '(none)'} for {p}", ".csv, .npy or .json"
        )
    return np.ascontiguousarray(x.reshape(len(x), *shape), dtype=np.float32)


def _read_npy(p: Path, shape: list[int], width: int) -> np.ndarray:
    import numpy as np

    try:
        x = np.load(p, allow_pickle=False)  # never unpickle user files
    except Exception as exc:
        raise UsageError(f"{p} is not a readable .npy file: {exc}") from None
    if x.dtype.kind not in "iuf":
        raise UsageError(f"{p} holds {x.dtype} values; numbers are needed")
    if tuple(x.shape) == tuple(shape):
        x = x[None]  # one sample
    if x.ndim == 0 or x.shape[0] == 0:
        raise UsageError(f"{p} is empty", "one sample per row")
    if tuple(x.shape[1:]) not in (tuple(shape), (width,)):
        want = "x".join(map(str, shape))
        raise UsageError(
            f"{p} has shape {tuple(x.shape)}; the model takes N x {want} (or N x {width})"
        )
    flat = x.reshape(len(x), width)
    if x.dtype.kind == "f":
        bad = np.argwhere(~np.isfinite(flat))
        if len(bad):
            r, c = bad[0]
            raise _bad(p, f"row {r + 1}, column {c + 1}", f"{flat[r, c]} is not a finite number")
    return flat


def _values(n: int) -> str:
    return f"{n} value" if n == 1 else f"{n} values"


def _number(value: Any, p: Path, where: str) -> float:
    if isinstance(value, bool) or value is None:
        raise _bad(p, where, f"{value!r} is not a number")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise _bad(p, where, f"{value!r} is not a number") from None
    if not math.isfinite(v):
        raise _bad(p, where, f"{value!r} is not a finite number")
    return v


def _read_csv(p: Path, width: int) -> np.ndarray:
    import numpy as np

    rows: list[list[float]] = []
    with open(p, newline="") as fh:
        sample = fh.read(4096)
        fh.seek(0)
        delimiter = (
            "\t" if p.suffix.lower() == ".tsv" or ("\t" in sample and "," not in sample) else ","
        )
        for line_no, cells in enumerate(csv.reader(fh, delimiter=delimiter), start=1):
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue  # blank line
            if not rows and line_no == _first_line(p) and _is_header(cells):
                continue
            if len(cells) != width:
                raise _bad(p, f"row {line_no}", f"{_values(len(cells))}, the model takes {width}")
            rows.append(
                [_number(c, p, f"row {line_no}, column {j}") for j, c in enumerate(cells, start=1)]
            )
    if not rows:
        raise UsageError(f"{p} has no data rows", "one sample per row, numbers only")
    return np.asarray(rows, dtype=np.float32)


def _first_line(p: Path) -> int:
    # The header, if any, is the first non-blank line.
    with open(p) as fh:
        for i, line in enumerate(fh, start=1):
            if line.strip():
                return i
    return 1


def _is_header(cells: list[str]) -> bool:
    """A header: every cell is a non-empty word that is not a number."""

    def numeric(c: str) -> bool:
        try:
            float(c)
            return True
        except ValueError:
            return False

    return all(c and not numeric(c) for c in cells)


def _read_json(p: Path, width: int) -> np.ndarray:
    import numpy as np

    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p} is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        data = data.get("inputs")
    if not isinstance(data, list):
        raise UsageError(f'{p}: expected a list of samples or {{"inputs": [...]}}')
    if not data:
        raise UsageError(f"{p} has no samples", "a list of samples")
    rows = []
    for i, item in enumerate(data, start=1):
        flat = list(_flatten(item))
        if len(flat) != width:
            raise _bad(p, f"row {i}", f"{_values(len(flat))}, the model takes {width}")
        rows.append([_number(v, p, f"row {i}, column {j}") for j, v in enumerate(flat, start=1)])
    return np.asarray(rows, dtype=np.float32)


def _flatten(item: Any) -> Any:
    if isinstance(item, list):
        for x in item:
            yield from _flatten(x)
    else:
        yield item


# ------------------------------------------------------------------------ running
def _target_meta(
    target: str | Path, runs_dir: str | Path, registry: Registry | None, trust: bool = False
) -> tuple[dict[str, Any], Callable[[], Any], str]:
    """(metadata, a function loading the runner, source) for a file or a run directory."""
    p = Path(target)
    if p.is_file():
        return _file_meta(p, trust)
    return _run_meta(target, runs_dir, registry)


def _file_meta(p: Path, trust: bool) -> tuple[dict[str, Any], Callable[[], Any], str]:
    """An exported file's metadata; its runtime is loaded only once the input is read."""
    from toolkit import integrity
    from toolkit.formats import read_metadata
    from toolkit.verify import load_runners

    integrity.check_file(p)
    meta = read_metadata(p)
    if not meta:
        raise UsageError(
            f"{p} carries no tk metadata (input spec, output meaning)",
            "export it with tk export",
        )
    integrity.check_export(p, meta.get("format", ""), meta.get("run"), trust)
    # Loaded only when called: bad input is reported before any runtime starts.
    return meta, lambda: load_runners(p, meta.get("format"))[0], str(p)


def _run_meta(
    target: str | Path, runs_dir: str | Path, registry: Registry | None
) -> tuple[dict[str, Any], Callable[[], Any], str]:
    """What a run directory's config says about its model, and its eager model."""
    from toolkit.models import rebuild_model
    from toolkit.tasks import get_task
    from toolkit.verify import eager_runner

    run = runs.open_run(None if str(target) == runs.LATEST else target, runs_dir)
    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()
    cfg = run.config
    task = cfg.get("task", "regression")
    meta = {
        "task": task,
        "input": cfg["input"],
        "output": get_task(task).meaning,
        "class_names": cfg.get("class_names"),
        "feature_scale": cfg.get("feature_scale"),
    }
    return meta, lambda: eager_runner(rebuild_model(run, registry)), str(run.path)


def predict(
    target: str | Path,
    input_path: str | Path,
    *,
    runs_dir: str | Path = "runs",
    registry: Registry | None = None,
    trust: bool = False,
) -> Prediction:
    """Predict with an exported file (ONNX, TorchScript, pt2) or a run's eager model.

    :param target: an exported file, a run directory, or ``latest``.
    :param input_path: ``.csv``, ``.npy`` or ``.json`` samples.
    :returns: a Prediction with one dict per row: ``label`` and ``probability`` (and
        ``class`` when names are known, ``probabilities`` for multiclass), or ``values``.
    """
    import numpy as np

    meta, load, source = _target_meta(target, runs_dir, registry, trust)
    shape = [int(d) for d in meta["input"]["shape"][1:]]
    x = read_input(input_path, shape, meta.get("feature_scale"))
    runner = load()
    static = static_batch(meta)  # a static-batch export takes exactly that many rows
    chunk = static if static is not None else CHUNK
    outs = []
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk]
        n = len(xb)
        if n < chunk and static is not None:  # pad to the static batch, drop after
            xb = np.concatenate([xb, np.zeros((chunk - n, *shape), np.float32)])
        outs.append(np.asarray(runner.run(xb)[0])[:n])
    y = np.concatenate(outs).astype(np.float64).reshape(len(x), -1)
    return Prediction(source, runner.name, meta["task"], _meaning(y, meta))


def _meaning(y: np.ndarray, meta: dict[str, Any]) -> list[dict[str, Any]]:
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
