"""The ``csv`` dataset: a table's columns become features, one column the target.

Everything a hand-written plugin would declare is inferred from the values: the
task (integer or text targets with few values are classes, floats a regression),
the classes and their names (the target's values, sorted), the feature vector
(numbers as they are, text columns one-hot over their sorted values). The run
records the columns and categories (``DataInfo.inputs``) so ``tk predict`` can read
a CSV by column name, and asks tk to standardize the numeric features (and a
regression target) with statistics of the training rows: the statistics become
the model's first and last layer, so every export takes raw rows.

Imported only when a loader runs: pyarrow and numpy are imported inside functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tk_data.gaps import MISSING, Gaps, fill_numbers, fill_text, missing_category
from tk_data.gaps import drop_missing_target as drop_missing_target_rows
from tk_data.holdout import check_fraction, split_rows
from tk_data.tables import Table, read_table
from toolkit import FLOAT32_MAX, DataInfo, TableColumn, TableInputs, UsageError, is_number

# A text column with more distinct values than this is an identifier or free text,
# not a category: one-hot would add a feature per row.
MAX_CATEGORIES = 64
# task=auto: an integer target with at most this many values is a class label.
MAX_AUTO_CLASSES = 20
# A text column whose distinct values are mostly numbers holds a stray typo.
NUMERIC_SHARE = 0.5


@dataclass
class Column:
    """One input column: a number, or a category one-hot encoded over ``categories``."""

    name: str
    kind: str  # "number" or "category"
    categories: list[str] = field(default_factory=list)
    missing: str | None = None  # the category a missing value is (fillna-text=missing)

    @property
    def width(self) -> int:
        """Features this column becomes."""
        return 1 if self.kind == "number" else len(self.categories)

    def feature_names(self) -> list[str]:
        """``name`` for a number, ``name=value`` per category."""
        if self.kind == "number":
            return [self.name]
        return [f"{self.name}={c}" for c in self.categories]

    def schema(self) -> TableColumn:
        """What ``tk predict`` needs to read this column from a user's file."""
        return TableColumn(self.name, self.kind, tuple(self.categories), self.missing)


@dataclass
class Target:
    """The target column as the task sees it."""

    task: str
    class_names: list[str] | None
    note: str


def load_csv(
    path: str = "",
    target: str = "",
    features: str = "",
    task: str = "auto",
    test_fraction: float = 0.2,
    fillna: str = "none",
    fillna_text: str = "auto",
    drop_missing_target: bool = False,
    header: str = "auto",
    seed: int = 0,
    standardize: bool = True,
) -> dict[str, Any]:
    """Train/test splits of a CSV, Parquet or ``.npz`` file, and what was inferred."""
    check_fraction(test_fraction, "csv")
    table = read_table(path, header, target)
    if table.arrays is not None:
        from tk_data.arrays import load_arrays

        return load_arrays(table, task, test_fraction, seed, standardize)
    name = _target_name(table, target)
    names = _feature_columns(table, features, name)
    gaps = Gaps.of(fillna, fillna_text)
    if drop_missing_target:
        table = drop_missing_target_rows(table, name, gaps)
    if table.table.num_rows == 0:
        why = f" with a target ({len(gaps.dropped)} dropped)" if gaps.dropped else ""
        raise UsageError(f"csv: {table.path} has no data rows{why}")
    y, tgt = encode_target(table, name, task)
    classes = tgt.task != "regression"
    columns = [describe(table, c, gaps.text) for c in names]
    x = assemble(table, columns, gaps)  # every bad value is refused before the split
    train, test = split_rows(len(y), test_fraction, y if classes else None, seed)
    fill(table, columns, x, train, gaps)
    numeric = [i for i, n in enumerate(_expanded(columns)) if n[1] == "number"]
    inputs = TableInputs(
        columns=[c.schema() for c in columns],
        format=table.kind,
        layout=table.header,
        target=name,
        fill=dict(gaps.fills),
    )
    info = DataInfo(
        feature_shape=(x.shape[1],),
        target=tgt.task,
        num_classes=len(tgt.class_names) if tgt.class_names else None,
        class_names=tgt.class_names,
        target_dim=1 if not classes else None,
        feature_names=[n for n, _ in _expanded(columns)],
        standardize=numeric if standardize else False,
        standardize_target=standardize and not classes,
        inputs=inputs,
        notes=_notes(table, columns, tgt, len(y)) + gaps.notes(name),
    )
    return {"train": (x[train], y[train]), "test": (x[test], y[test]), "info": info}


def _expanded(columns: list[Column]) -> list[tuple[str, str]]:
    return [(n, c.kind) for c in columns for n in c.feature_names()]


def _notes(table: Table, columns: list[Column], tgt: Target, rows: int) -> list[str]:
    width = sum(c.width for c in columns)
    notes = [
        f"{table.path.name}: {table.layout}; {rows} rows, {len(columns)} feature columns "
        f"-> {width} features; {tgt.note}"
    ]
    hot = [f"{c.name} ({c.width} values)" for c in columns if c.kind == "category"]
    if hot:
        notes.append("one-hot: " + ", ".join(hot))
    return notes


def _target_name(table: Table, target: str) -> str:
    columns = table.columns
    if not target:
        raise UsageError(
            f"csv: {table.path}: no target column given; columns: {_listing(columns)}",
            "--data-param target=COLUMN",
        )
    if target not in columns and target in (table.class_names or []):
        raise UsageError(
            f"csv: {table.path}: '{target}' is a class name from line 1 (scikit-learn's "
            f"layout: {', '.join(table.class_names or [])} are the values of the column "
            "'target'), not a column",
            "--data-param target=target",
        )
    if target not in columns:
        raise UsageError(
            f"csv: {table.path}: no column '{target}'; columns: {_listing(columns)}",
            "--data-param target=COLUMN",
        )
    return target


def _listing(columns: list[str], limit: int = 30) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > limit else "")


def _feature_columns(table: Table, features: str, target: str) -> list[str]:
    if not features.strip():
        names = [c for c in table.columns if c != target]
    else:
        names = [f.strip() for f in features.split(",") if f.strip()]
        unknown = [f for f in names if f not in table.columns]
        if unknown:
            raise UsageError(
                f"csv: {table.path}: no column {', '.join(map(repr, unknown))}; "
                f"columns: {_listing(table.columns)}",
                "--data-param features=a,b,c",
            )
        if target in names:
            raise UsageError(f"csv: {table.path}: the target '{target}' is also a feature")
    if not names:
        raise UsageError(f"csv: {table.path}: no feature columns besides the target '{target}'")
    return names


def _kind(typ: Any) -> str:
    import pyarrow as pa

    if pa.types.is_integer(typ) or pa.types.is_boolean(typ):
        return "integer"
    if pa.types.is_floating(typ):
        return "float"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "text"
    return "other"


def encode_target(table: Table, name: str, task: str) -> tuple[Any, Target]:
    """Targets as the task wants them (class index, 0/1 or float) and the task chosen."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.table.column(name)
    kind = _kind(col.type)
    if kind == "other":
        raise UsageError(f"csv: {table.path}: target '{name}' has type {col.type}")
    _refuse_null(table, name, col, "the target")
    values = None if kind == "float" and task == "auto" else pc.unique(col)
    if task == "auto" and kind == "integer" and len(values) > MAX_AUTO_CLASSES:
        values = None
    if task == "regression" or values is None:
        if kind == "text":
            raise UsageError(
                f"csv: {table.path}: target '{name}' is text; a regression needs numbers",
                "--data-param task=multiclass",
            )
        y = np.asarray(pc.cast(col, pa.float64()).to_numpy())
        _refuse_nonfinite(table, name, y, "the target")
        return y.astype(np.float32), Target(
            "regression", None, f"target '{name}': regression ({kind} values)"
        )
    return _classes(table, name, col, np.sort(values.to_numpy(zero_copy_only=False)), task)


def _classes(table: Table, name: str, col: Any, values: Any, task: str) -> tuple[Any, Target]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    k = len(values)
    if k < 2:
        raise UsageError(
            f"csv: {table.path}: target '{name}' has one value "
            f"('{_label_name(values[0])}' in every row); a classifier needs at least two"
        )
    if task == "binary" and k != 2:
        raise UsageError(
            f"csv: {table.path}: task=binary but target '{name}' has {k} values",
            "--data-param task=multiclass",
        )
    labels = pc.index_in(col, value_set=pa.array(values.tolist())).to_numpy()
    names = [_label_name(v) for v in values]
    if table.class_names and len(table.class_names) == k and names == list(map(str, range(k))):
        names = list(table.class_names)  # scikit-learn's first line names the classes
    chosen = "binary" if k == 2 and task != "multiclass" else "multiclass"
    y = labels.astype(np.float32 if chosen == "binary" else np.int64)
    shown = ", ".join(names[:6]) + (", ..." if k > 6 else "")
    return y, Target(chosen, names, f"target '{name}': {chosen}, {k} classes ({shown})")


def _label_name(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def describe(table: Table, name: str, text_gaps: str = "none") -> Column:
    """A feature column's kind: a number, or text with few enough values to one-hot.

    With ``text_gaps`` ``missing``, a text column with gaps gets the category
    :data:`~tk_data.gaps.MISSING` after its sorted values.
    """
    import pyarrow.compute as pc

    col = table.table.column(name)
    kind = _kind(col.type)
    if kind in ("integer", "float"):
        return Column(name, "number")
    if kind == "other":
        raise UsageError(
            f"csv: {table.path}: column '{name}' has type {col.type}; tk reads numbers and "
            "text categories",
            "leave it out with --data-param features=a,b,...",
        )
    values = [v for v in pc.unique(col).to_pylist() if v is not None]
    if not values:
        raise UsageError(f"csv: {table.path}: column '{name}' has no values (every row is empty)")
    sample = values[:1000]
    numbers = [v for v in sample if is_number(v)]
    if len(numbers) >= NUMERIC_SHARE * len(sample):
        bad = next((v for v in values if not is_number(v)), None)
        if bad is None:  # numbers pyarrow left as text (" 2.5", "1_000"): parsed one by one
            return Column(name, "number")
        row = table.row(pc.index(col, bad).as_py())
        raise UsageError(
            f"csv: {table.path}: row {row}, column '{name}': {bad!r} is not a number "
            "(the column's other values are numbers)"
        )
    if len(values) > MAX_CATEGORIES:
        raise UsageError(
            f"csv: {table.path}: column '{name}' is text with {len(values)} distinct values; "
            f"tk one-hot encodes text columns of at most {MAX_CATEGORIES}",
            "leave it out with --data-param features=a,b,..., or encode it as numbers",
        )
    extra = missing_category(table, name, col, values) if text_gaps == "missing" else []
    return Column(name, "category", sorted(values) + extra, MISSING if extra else None)


def assemble(table: Table, columns: list[Column], gaps: Gaps) -> Any:
    """The float32 feature matrix: numbers as they are, categories one-hot.

    A missing value is refused naming its row and column unless ``gaps`` fills it:
    a number is left NaN and a text value's row all-zero for :func:`fill`, or it
    becomes the column's ``missing`` category. A number beyond float32's range is
    refused (it would be infinite in the features).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.table.num_rows
    x = np.zeros((n, sum(c.width for c in columns)), dtype=np.float32)
    j = 0
    for c in columns:
        col = table.table.column(c.name)
        if c.kind == "number":
            values = _floats(col)
            _refuse_nonfinite(table, c.name, values, f"column '{c.name}'", gaps.numbers == "mean")
            x[:, j] = values
        else:
            if c.missing:
                col = pc.fill_null(col, c.missing)
            elif gaps.text != "mode":
                _refuse_null(table, c.name, col, f"column '{c.name}'")
            codes = pc.index_in(col, value_set=pa.array(c.categories)).to_numpy(
                zero_copy_only=False
            )
            known = ~np.isnan(codes.astype(np.float64))  # a gap left for the mode: no 1
            x[np.flatnonzero(known), j + codes[known].astype(np.int64)] = 1.0
            if c.missing:
                count = int((codes == len(c.categories) - 1).sum())
                gaps.counts[c.name] = count
        j += c.width
    return x


def fill(table: Table, columns: list[Column], x: Any, train: Any, gaps: Gaps) -> None:
    """Fill gaps in place from the training rows: numbers' means, text's most frequent value.

    The values go to ``gaps.fills`` for every column of that kind (``tk predict``
    fills a user's gaps with them), the cells filled to ``gaps.counts``.
    """
    j = 0
    for c in columns:
        if c.kind == "number" and gaps.numbers == "mean":
            fill_numbers(table, c.name, x[:, j], train, gaps)  # a view: filled in place
        elif c.kind == "category" and gaps.text == "mode":
            fill_text(table, c.name, x[:, j : j + c.width], c.categories, train, gaps)
        j += c.width


def _floats(col: Any) -> Any:
    """A numeric (or all-numbers text) column as float64, NaN where a value is missing."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if _kind(col.type) != "text":
        return np.asarray(pc.cast(col, pa.float64()).to_numpy())
    return np.asarray([np.nan if v is None else float(v) for v in col.to_pylist()])


def _refuse_null(table: Table, name: str, col: Any, what: str) -> None:
    import pyarrow.compute as pc

    if col.null_count:
        text = _kind(col.type) == "text"
        raise _missing(table, pc.index(pc.is_null(col), True).as_py(), name, what, text)


def _refuse_nonfinite(
    table: Table, name: str, values: Any, what: str, allow_nan: bool = False
) -> None:
    """Infinite values, numbers float32 cannot hold, and gaps unless ``allow_nan``."""
    import numpy as np

    with np.errstate(invalid="ignore"):
        big = np.abs(values) > FLOAT32_MAX
    bad = big | (np.isinf(values) if allow_nan else np.isnan(values))
    if not bad.any():
        return
    row = int(np.flatnonzero(bad)[0])
    if np.isnan(values[row]):
        raise _missing(table, row, name, what)
    how = "is not finite" if np.isinf(values[row]) else "does not fit float32 (at most 3.4e38)"
    raise UsageError(
        f"csv: {table.path}: row {table.row(row)}, {_named(name, what)}: {values[row]:g} {how}"
    )


def _missing(table: Table, row: int, name: str, what: str, text: bool = False) -> UsageError:
    """A missing value at ``row`` (0-based), named as the user counts rows (from 1)."""
    hint = "fill it in, or --data-param " + (
        "drop-missing-target=true"
        if what == "the target"
        else "fillna-text=mode (or =missing)"
        if text
        else "fillna=mean"
    )
    return UsageError(
        f"csv: {table.path}: row {table.row(row)}, {_named(name, what)}: missing value", hint
    )


def _named(name: str, what: str) -> str:
    return f"column '{name}' (the target)" if what == "the target" else f"column '{name}'"
