"""Reading a user's samples: ``.csv``, ``.npy`` and ``.json`` into one float32 array.

Malformed input is a UsageError (exit 2) naming the file, row and column. Integer
``.npy`` features (e.g. uint8 images) are scaled by the dataset's
``feature_scale``, exactly as the training loop does.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import UsageError
from toolkit.tables import FLOAT32_MAX

if TYPE_CHECKING:
    import numpy as np


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
        x = x.astype(np.float32, copy=False)
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
    # One reduction in the usual case; the position only when there is something to name.
    if x.dtype.kind == "f":
        with np.errstate(invalid="ignore"):  # beyond float32's range is inf in the model
            bad = ~np.isfinite(flat) | (np.abs(flat) > FLOAT32_MAX)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            what = f"{flat[r, c]:g} is not a finite float32 number"
            raise _bad(p, f"row {r + 1}, column {c + 1}", what)
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
    if abs(v) > FLOAT32_MAX:
        raise _bad(p, where, f"{value!r} does not fit float32 (at most 3.4e38)")
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

    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p} is not valid JSON: {exc}") from None
    return json_rows(data, p, width)


def json_rows(data: Any, p: Any, width: int) -> np.ndarray:
    """Parsed JSON samples (a list, or ``{"inputs": [...]}``) as float32 ``(N, width)``;
    ``p`` names their source in errors (a path, or ``tk serve``'s "request")."""
    import numpy as np

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
