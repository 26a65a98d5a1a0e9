"""Reading a table file into a pyarrow Table: CSV (``pyarrow.csv``), Parquet, ``.npz``.

The fast path is one ``pyarrow.csv.read_csv`` call (multi-threaded, typed columns);
everything else here reads at most the first 64 KB of text, or runs only when the
file is bad. scikit-learn's shipped CSVs (``wine_data.csv``, ``breast_cancer.csv``,
``iris.csv``) start with ``n_samples,n_features,class names...`` instead of a
header; ``header=auto`` recognises that layout, so those files work as shipped.

Imported only when a loader runs: pyarrow and numpy are imported inside functions.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit import (
    CSV_SUFFIXES,
    NPZ_SUFFIXES,
    PARQUET_SUFFIXES,
    UsageError,
    delimiter,
    format_suffix,
    head_lines,
    is_number,
    read_csv,
    read_parquet,
    refuse_duplicates,
)


@dataclass
class Table:
    """A file read: its columns (a pyarrow Table), or for an ``.npz`` of x/y, arrays."""

    path: Path
    kind: str  # "csv", "parquet" or "npz"
    table: Any = None  # pyarrow.Table
    arrays: tuple[Any, Any] | None = None  # (x, y) of an npz holding x and y
    class_names: list[str] | None = None  # from scikit-learn's first line
    layout: str = ""  # how the file was read, for the run's notes
    header: str = "header"  # "header", "sklearn" or "none": how tk predict reads it
    rows: Any = None  # each row's index in the file once rows were dropped, else None

    @property
    def columns(self) -> list[str]:
        """The column names, in file order."""
        return list(self.table.column_names) if self.table is not None else []

    def row(self, i: int) -> int:
        """Row ``i`` of the table as the user counts the file's rows (from 1)."""
        return int(self.rows[i] if self.rows is not None else i) + 1


def read_table(path: str, header: str = "auto", target: str = "") -> Table:
    """Read ``path`` by its suffix; every unreadable file is a one-line UsageError."""
    if not path:
        raise UsageError("csv: no file given", "--data-param path=FILE target=COLUMN")
    p = Path(path).expanduser()
    if not p.is_file():
        what = "is a folder, not a file" if p.is_dir() else "not found"
        raise UsageError(f"csv: {p} {what}", "--data-param path=FILE")
    base = format_suffix(p)
    last = p.suffix.lower()
    if base in PARQUET_SUFFIXES:
        return _read_parquet(p)
    if base in NPZ_SUFFIXES:
        return _read_npz(p, target)
    if base in CSV_SUFFIXES or base == "":
        return _read_csv(p, header, tab=base == ".tsv")
    raise UsageError(f"csv: {p}: unknown table type {last}", "a .csv, .tsv, .parquet or .npz file")


def _sklearn_layout(cells: list[str], second: list[str]) -> list[str] | None:
    """Class names when the first line is scikit-learn's ``n_samples,n_features,names..``.

    The second line must hold ``n_features + 1`` values (the features, then the
    target); the row count is checked once the file is read (:func:`_check_count`).
    """
    if len(cells) < 2 or not all(c.strip().isdigit() for c in cells[:2]):
        return None
    if len(second) != int(cells[1]) + 1:
        return None
    names = [c.strip() for c in cells[2:]]
    return names if all(n and not is_number(n) for n in names) else None


def _read_csv(p: Path, header: str, tab: bool) -> Table:
    """One ``pyarrow.csv.read_csv`` call; the header decided from the first two lines."""
    import pyarrow.csv as pacsv

    head = head_lines(p, "csv: ")
    lines = head.lines
    delim = delimiter(lines[0], tab, lines[1] if len(lines) > 1 else "")
    cells = lines[0].split(delim)
    second = lines[1].split(delim) if len(lines) > 1 else []
    names = None if header != "auto" else _sklearn_layout(cells, second)
    read: dict[str, Any] = {"use_threads": True}
    if names is not None:
        width = int(cells[1])
        columns = [f"feature_{i}" for i in range(width)] + ["target"]
        read.update(skip_rows=1, column_names=columns)
        layout = f"scikit-learn's layout ({cells[0]} rows, {width} features)"
        kind = "sklearn"
    elif header == "none" or all(is_number(c) for c in cells):
        read["column_names"] = [f"column_{i}" for i in range(1, len(cells) + 1)]
        layout = "no header: columns column_1..column_" + str(len(cells))
        kind = "none"
    else:
        layout, kind = "header on the first line", "header"
    parse = pacsv.ParseOptions(delimiter=delim)
    # Empty text cells are missing values too, so they are refused or filled like numbers.
    convert = pacsv.ConvertOptions(strings_can_be_null=True)
    try:
        table, encoding = read_csv(p, head, read, parse, convert)
    except Exception as exc:
        raise _csv_error(p, exc, {**read, "encoding": head.encoding}, parse) from None
    refuse_duplicates(p, table.column_names, "csv: ")
    if names is not None:
        _check_count(p, table.num_rows, int(cells[0]))
    if encoding != "utf8":
        layout += f"; decoded as {encoding} (not UTF-8)"
    if delim == " ":
        layout += "; separated by spaces"
    return Table(p, "csv", table, class_names=names, layout=layout, header=kind)


def _check_count(p: Path, rows: int, declared: int) -> None:
    """scikit-learn's first line counts the rows: a file that disagrees is not one of its files."""
    if rows != declared:
        raise UsageError(
            f"csv: {p}: line 1 reads as scikit-learn's layout (n_samples,n_features,class "
            f"names) but says {declared} rows and the file has {rows}",
            "correct the count on line 1, or give the file a header line",
        )


def _csv_error(p: Path, exc: Exception, read: dict[str, Any], parse: Any) -> UsageError:
    """A pyarrow parse error as one line naming the file's line (found by a re-read)."""
    import pyarrow.csv as pacsv

    message = " ".join(str(exc).split())
    if "Empty CSV" in message:
        return UsageError(f"csv: {p} is empty")
    if isinstance(exc, UnicodeDecodeError):
        return UsageError(f"csv: {p} is not text in {read.get('encoding')}: {exc.reason}")
    bad: list[Any] = []

    def record(row: Any) -> str:
        bad.append(row)
        return "error"

    # Line numbers are known only single-threaded; this runs on the error path only.
    options = pacsv.ParseOptions(delimiter=parse.delimiter, invalid_row_handler=record)
    with contextlib.suppress(Exception):  # the same error again: the handler saw the row
        pacsv.read_csv(str(p), pacsv.ReadOptions(**{**read, "use_threads": False}), options)
    if bad:
        row = bad[0]
        where = f"line {row.number}" if row.number is not None else "a row"
        return UsageError(
            f"csv: {p}: {where} has {row.actual_columns} values, "
            f"the header has {row.expected_columns}"
        )
    return UsageError(f"csv: cannot read {p}: {printable(message)[:200]}")


def printable(text: str) -> str:
    """``text`` with control characters and undecodable bytes shown escaped, never raw."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _read_parquet(p: Path) -> Table:
    table = read_parquet(p, "csv: ")
    refuse_duplicates(p, table.column_names, "csv: ")
    return Table(p, "parquet", table, layout="Parquet")


def _read_npz(p: Path, target: str) -> Table:
    """``x`` and ``y`` arrays (any sample shape), or 1-D named arrays read as columns."""
    import numpy as np
    import pyarrow as pa

    try:
        with np.load(p, allow_pickle=False) as npz:  # never unpickle a user's file
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise UsageError(f"csv: {p} is not a readable .npz file: {exc}") from None
    keys = {k.lower(): k for k in arrays}
    if "x" in keys and (target in arrays or (not target and "y" in keys)):
        y = arrays[target] if target else arrays[keys["y"]]
        return Table(p, "npz", arrays=(arrays[keys["x"]], y), layout="npz arrays x and y")
    shapes = {k: a.shape for k, a in arrays.items()}
    lengths = {a.shape[0] if a.ndim else -1 for a in arrays.values()}
    if not arrays or any(a.ndim != 1 for a in arrays.values()) or len(lengths) != 1:
        raise UsageError(
            f"csv: {p}: expected arrays x and y, or 1-D arrays of one length as columns; "
            f"found {shapes or 'none'}"
        )
    return Table(p, "npz", pa.table(arrays), layout="npz arrays as columns")
