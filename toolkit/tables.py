"""Table files as tk reads them, for training (the ``csv`` dataset) and ``tk predict``.

One place decides which suffixes are tables (compressed CSVs too: ``rows.csv.gz``),
reads a file's first lines, guesses the delimiter and reads Parquet with its
categorical columns decoded, so a file that trains is a file ``tk predict`` reads.
pyarrow is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
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


# What a file named .csv holds when it is not text: its first bytes, and the fix.
MAGIC = (
    (b"\x1f\x8b", "gzip-compressed data", "name it {name}.gz"),
    (b"BZh", "bzip2-compressed data", "name it {name}.bz2"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data", "name it {name}.zst"),
    (b"\x04\x22\x4d\x18", "lz4-compressed data", "name it {name}.lz4"),
    (b"PAR1", "a Parquet file", "name it .parquet"),
    (b"PK\x03\x04", "a zip archive", "unzip it, or save the table as .npz/.parquet"),
    (b"\x89PNG", "a PNG image", "a .csv, .tsv, .parquet or .npz file"),
    (b"\x93NUMPY", "a NumPy .npy array", "tk predict reads .npy as numbers"),
)
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# The largest float32: a bigger number becomes inf in the float32 features.
FLOAT32_MAX = 3.4028234663852886e38


@dataclass
class Head:
    """A text file's first lines, and the encoding its text is in."""

    lines: list[str]
    encoding: str = "utf8"

    @property
    def note(self) -> str:
        """How the text was decoded, when it was not UTF-8 (for the run's notes)."""
        return "" if self.encoding == "utf8" else f"decoded as {self.encoding} (not UTF-8)"


def head_lines(p: Path, prefix: str = "") -> Head:
    """The first non-blank lines of a (possibly compressed) text file, and its encoding.

    A file that is not text (compressed data under a plain name, a Parquet or zip
    file, any NUL byte) is a UsageError naming what it holds. Text that is not
    UTF-8 is read as Windows-1252 (Latin-1 where that fails): the encoding of
    spreadsheets saved on Windows, and a superset of ISO 8859-1's letters.
    """
    import pyarrow as pa

    try:
        with pa.input_stream(str(p), compression="detect") as fh:
            head = fh.read(HEAD_BYTES)
    except (OSError, pa.ArrowInvalid) as exc:
        raise UsageError(f"{prefix}cannot read {p}: {' '.join(str(exc).split())[:160]}") from None
    _refuse_binary(p, head, prefix)
    encoding = _encoding(head)
    text = head.decode(encoding.replace("utf8", "utf-8"), errors="replace")
    lines = [ln for ln in text.lstrip("\ufeff").splitlines() if ln.strip()]
    if not lines:
        raise UsageError(f"{prefix}{p} is empty")
    return Head(lines, encoding)


def _refuse_binary(p: Path, head: bytes, prefix: str) -> None:
    for magic, what, fix in MAGIC:
        if head.startswith(magic):
            raise UsageError(f"{prefix}{p} is {what}, not text", fix.format(name=p.name))
    if b"\x00" in head and not head.startswith(UTF16_BOMS):
        at = head.index(b"\x00")
        raise UsageError(
            f"{prefix}{p} is not a text table: it holds binary data (a NUL byte at offset {at})",
            "a .csv, .tsv, .parquet or .npz file",
        )


def _encoding(head: bytes) -> str:
    """``utf8`` when ``head`` is UTF-8 (a multi-byte letter cut at its end allowed)."""
    if head.startswith(UTF16_BOMS):
        return "utf-16"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return fallback_encoding(head)
    return "utf8"


def fallback_encoding(data: bytes) -> str:
    """``cp1252`` when ``data`` decodes as Windows-1252, else ``latin-1`` (any bytes do)."""
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return "latin-1"
    return "cp1252"


def read_csv(
    p: Path, head: Head, read: dict[str, Any], parse: Any, convert: Any
) -> tuple[Any, str]:
    """``pyarrow.csv.read_csv`` in ``head``'s encoding: (table, the encoding used).

    Bytes that are not UTF-8 past the first 64 KB make pyarrow type a column
    ``binary``: the file is read again as Windows-1252 (or Latin-1).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    encoding = head.encoding
    table = pacsv.read_csv(str(p), pacsv.ReadOptions(**read, encoding=encoding), parse, convert)
    if encoding == "utf8" and any(pa.types.is_binary(t) for t in table.schema.types):
        with pa.input_stream(str(p), compression="detect") as fh:
            encoding = fallback_encoding(fh.read())
        table = pacsv.read_csv(str(p), pacsv.ReadOptions(**read, encoding=encoding), parse, convert)
    return table, encoding


def refuse_duplicates(p: Path, names: list[str], prefix: str = "") -> None:
    """Two columns of one name: pyarrow keeps both, and reading by name cannot choose."""
    first: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if name in first:
            raise UsageError(
                f"{prefix}{p}: line 1, columns {first[name]} and {i}: the column name "
                f"{name!r} appears twice",
                "rename one of them",
            )
        first[name] = i


def delimiter(first: str, tab: bool, second: str = "") -> str:
    """Tab, semicolon, comma or a space, from the first lines (``tab``: a ``.tsv`` file).

    A space only when neither line has a tab, semicolon or comma and both split
    into the same number of fields on single spaces (scikit-learn's diabetes and
    linnerud files).
    """
    if tab or ("\t" in first and "," not in first):
        return "\t"
    if ";" in first and "," not in first:
        return ";"
    plain = not any(c in line for line in (first, second) for c in ",;\t")
    if plain and second and len(first.split(" ")) == len(second.split(" ")) > 1:
        return " "
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
