"""Reading a user's table for a run trained on one: columns matched by name.

A run trained on a table records its input columns in ``inputs`` (``kind:
"table"``): each column's name and kind, the categories of a one-hot column, the
training-row means when ``fillna=mean`` filled gaps. This module reads a CSV (or
Parquet file) with a header into exactly the raw feature vector the model was
trained on: numbers as they are, categories one-hot in the recorded order. The
model itself standardizes (its first layer), so nothing else is applied here.

Every mismatch is one line naming the file, and the row and column where there is
one: missing and unexpected columns, a value that is not a number, a category the
model never saw, a missing value.

:func:`read_rows` is the entry point ``predict`` calls: it returns None when
the run recorded no ``inputs`` (or the file is ``.npy``/``.json`` numbers), and the
plain reader is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import UsageError
from toolkit.tables import (
    CSV_SUFFIXES,
    FLOAT32_MAX,
    PARQUET_SUFFIXES,
    delimiter,
    format_suffix,
    head_lines,
    is_number,
    read_csv,
    read_parquet,
    refuse_duplicates,
)

if TYPE_CHECKING:
    import numpy as np

TABLE_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES  # compressed CSVs too: format_suffix
# Numbers in the model's own order: the plain reader (toolkit.predict.reading) reads them.
ARRAY_SUFFIXES = (".npy", ".json")


def read_for_model(path: str | Path, meta: dict[str, Any]) -> np.ndarray | None:
    """The model input for ``path`` by the run's ``inputs`` record, or None without one.

    :param path: a CSV/Parquet file (table runs), or an image file or folder of
        images (image runs).
    :param meta: the run's or the exported file's metadata (``inputs``, ``input``).
    :returns: float32 ``(N, *input shape)``, or None: use the plain reader.
    """
    return read_rows(path, meta)[0]


def read_rows(path: str | Path, meta: dict[str, Any]) -> tuple[np.ndarray | None, list[str] | None]:
    """:func:`read_for_model`, with each row's image file when read from image files."""
    inputs = meta.get("inputs") or {}
    kind = inputs.get("kind")
    suffix = format_suffix(path)
    if kind == "table" and suffix in TABLE_SUFFIXES:
        return read_table_input(path, inputs, _width(meta)), None
    if kind == "image" and suffix not in ARRAY_SUFFIXES + TABLE_SUFFIXES:
        from toolkit.predict.images import read_image_rows

        return read_image_rows(path, inputs)
    return None, None


def _width(meta: dict[str, Any]) -> int | None:
    shape = (meta.get("input") or {}).get("shape") or []
    return int(shape[1]) if len(shape) == 2 else None


def read_table_input(path: str | Path, inputs: dict[str, Any], width: int | None = None) -> Any:
    """A CSV/Parquet file's rows as the model's raw features ``(N, features)`` float32."""

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"input file not found: {p}", "--input rows.csv")
    return table_features(p, _read(p, inputs), inputs, width)


def table_features(p: Any, table: Any, inputs: dict[str, Any], width: int | None = None) -> Any:
    """A pyarrow Table's rows as the model's raw features ``(N, features)`` float32.

    ``p`` names where the rows came from in every error (a path, or ``tk serve``'s
    "request"): the same matching as a file, whatever carried the rows.
    """
    import numpy as np

    columns = inputs["columns"]
    _match(p, table.column_names, [c["name"] for c in columns], inputs.get("target"))
    n = table.num_rows
    if n == 0:
        raise UsageError(f"{p} has no data rows")
    blocks = []
    for col in columns:
        if col["kind"] == "number":
            fill = (inputs.get("fill") or {}).get(col["name"])
            blocks.append(_numbers(p, table.column(col["name"]), col["name"], fill)[:, None])
        else:
            fill = col.get("missing") or (inputs.get("fill") or {}).get(col["name"])
            blocks.append(_one_hot(p, table.column(col["name"]), col, fill))
    x = np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)
    if width is not None and x.shape[1] != width:
        raise UsageError(f"{p}: {x.shape[1]} features from the columns, the model takes {width}")
    return x


def _read(p: Path, inputs: dict[str, Any]) -> Any:
    """The file as a pyarrow Table (category columns as text), decoded as training did."""
    import pyarrow as pa

    if format_suffix(p) in PARQUET_SUFFIXES:
        table = read_parquet(p)
        refuse_duplicates(p, table.column_names)
        return table
    import pyarrow.csv as pacsv

    head = head_lines(p)
    lines = head.lines
    delim = delimiter(lines[0], format_suffix(p) == ".tsv", lines[1] if len(lines) > 1 else "")
    cells = [c.strip() for c in lines[0].split(delim)]
    read = _header(p, cells, inputs)
    convert = pacsv.ConvertOptions(
        strings_can_be_null=True,
        # Categories as text ("01" stays "01"); numbers as pyarrow infers them.
        column_types={c["name"]: pa.string() for c in inputs["columns"] if c["kind"] != "number"},
    )
    try:
        table, _ = read_csv(p, head, read, pacsv.ParseOptions(delimiter=delim), convert)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        text = "".join(c if c.isprintable() else "?" for c in " ".join(str(exc).split()))
        raise UsageError(f"{p}: cannot read it as CSV: {text[:160]}") from None
    refuse_duplicates(p, table.column_names)
    return table


def _header(p: Path, cells: list[str], inputs: dict[str, Any]) -> dict[str, Any]:
    """pyarrow read options: a header line, scikit-learn's first line, or positions."""
    layout = inputs.get("layout", "header")
    names = [c["name"] for c in inputs["columns"]]
    if layout == "sklearn" and len(cells) >= 2 and all(c.isdigit() for c in cells[:2]):
        count = int(cells[1])
        return {"skip_rows": 1, "column_names": [f"feature_{i}" for i in range(count)] + ["target"]}
    known = {*names, inputs.get("target")}
    if cells and (all(is_number(c) for c in cells) or not known.intersection(cells)):
        if layout == "none":  # trained on a file without a header: columns by position
            return {"column_names": [f"column_{i}" for i in range(1, len(cells) + 1)]}
        raise UsageError(
            f"{p} has no header; its first line must name the columns: {_listing(names)}"
        )
    return {}


def _listing(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _match(p: Path, present: list[str], expected: list[str], target: str | None) -> None:
    """Every expected column present; nothing else but the target (ignored)."""
    missing = [c for c in expected if c not in present]
    extra = [c for c in present if c not in expected and c != target]
    if not missing and not extra:
        return
    parts = []
    if missing:
        parts.append(f"missing column{'s' if len(missing) > 1 else ''} {_listing(missing)}")
    if extra:
        parts.append(f"unknown column{'s' if len(extra) > 1 else ''} {_listing(extra)}")
    raise UsageError(f"{p}: {'; '.join(parts)} (the model takes: {_listing(expected)})")


def _numbers(p: Path, col: Any, name: str, fill: float | None) -> Any:
    """A column of numbers (float64); a gap filled with ``fill`` or refused with its row."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        values = np.array(pc.cast(col, pa.float64()).to_numpy(), dtype=np.float64)  # writable
    except pa.ArrowInvalid:  # text the cast refuses (" 2.5", "1_000"): parsed one by one
        values = np.asarray(_parse(p, col.to_pylist(), name), dtype=np.float64)
    if fill is not None:
        values[np.isnan(values)] = fill  # the training rows' mean, as training filled it
    with np.errstate(invalid="ignore"):  # float32 holds at most 3.4e38: beyond is inf
        bad = ~np.isfinite(values) | (np.abs(values) > FLOAT32_MAX)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        v = values[row]
        what = "missing value" if np.isnan(v) else f"{v:g} is not finite"
        if np.isfinite(v):
            what = f"{v:g} does not fit float32 (at most 3.4e38)"
        raise UsageError(f"{p}: row {row + 1}, column '{name}': {what}")
    return values


def _parse(p: Path, texts: list[Any], name: str) -> list[float]:
    out = []
    for row, value in enumerate(texts):
        if value is None:
            out.append(float("nan"))
            continue
        try:
            out.append(float(value))
        except ValueError:
            raise UsageError(
                f"{p}: row {row + 1}, column '{name}': {value!r} is not a number"
            ) from None
    return out


def _one_hot(p: Path, col: Any, column: dict[str, Any], fill: str | None) -> Any:
    """One column per recorded category; an unknown category is refused, and a missing
    one unless the run recorded how training filled it (``fill``: the most frequent
    training value, or the column's ``missing`` category)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    name, categories = column["name"], column["categories"]
    text = pc.cast(col, pa.string())
    if fill is not None:
        text = pc.fill_null(text, fill)
    codes = pc.index_in(text, value_set=pa.array(categories, pa.string()))
    if codes.null_count:
        row = pc.index(pc.is_null(codes), True).as_py()
        value = text[row].as_py()
        what = "missing value" if value is None else f"unknown category {value!r}"
        raise UsageError(
            f"{p}: row {row + 1}, column '{name}': {what} (the model knows: {_listing(categories)})"
        )
    out = np.zeros((len(text), len(categories)), dtype=np.float32)
    out[np.arange(len(text)), codes.to_numpy()] = 1.0
    return out
