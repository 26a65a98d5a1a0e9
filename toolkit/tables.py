"""Table files as tk reads them, for training (the ``csv`` dataset) and ``tk predict``.

One place decides which suffixes are tables (compressed CSVs too: ``rows.csv.gz``),
reads a file's first lines, guesses the delimiter and reads Parquet with its
categorical columns decoded, so a file that trains is a file ``tk predict`` reads.
pyarrow is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.errors import UsageError

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".data")
PARQUET_SUFFIXES = (".parquet", ".pq")
NPZ_SUFFIXES = (".npz",)
# pyarrow.csv decompresses these by suffix (``data.csv.gz``).
COMPRESSED = (".gz", ".bz2", ".zst", ".lz4")
HEAD_BYTES = 1 << 16


def format_suffix(path: str | Path) -> str:
    """The suffix that names the format, under a compression suffix (``a.csv.gz``: ``.csv``)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    last = suffixes[-1] if suffixes else ""
    return suffixes[-2] if last in COMPRESSED and len(suffixes) > 1 else last


def head_lines(p: Path, prefix: str = "") -> list[str]:
    """The first non-blank lines of a (possibly compressed) text file, decoded leniently."""
    import pyarrow as pa

    try:
        with pa.input_stream(str(p), compression="detect") as fh:
            head = fh.read(HEAD_BYTES)
    except (OSError, pa.ArrowInvalid) as exc:
        raise UsageError(f"{prefix}cannot read {p}: {exc}") from None
    lines = [ln for ln in head.decode("utf-8", errors="replace").splitlines() if ln.strip()]
    if not lines:
        raise UsageError(f"{prefix}{p} is empty")
    return lines


def delimiter(first: str, tab: bool) -> str:
    """Tab, semicolon or comma, from the first line (``tab``: a ``.tsv`` file)."""
    if tab or ("\t" in first and "," not in first):
        return "\t"
    if ";" in first and "," not in first:
        return ";"
    return ","


def is_number(cell: str) -> bool:
    """Whether a text cell parses as a float."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_parquet(p: Path, prefix: str = "") -> Any:
    """A Parquet file as a pyarrow Table, dictionary-encoded (categorical) columns decoded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(str(p))
    except (OSError, pa.ArrowException) as exc:
        raise UsageError(f"{prefix}{p} is not a readable Parquet file: {exc}") from None
    columns = [
        c.dictionary_decode() if pa.types.is_dictionary(c.type) else c for c in table.columns
    ]
    return pa.table(columns, names=table.column_names)
