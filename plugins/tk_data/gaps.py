"""Missing values in a table: refused, filled from the training rows, or a category.

- numbers: ``fillna=none`` refuses a gap naming its row and column; ``fillna=mean``
  fills it with the column's mean over the training rows;
- text: ``fillna-text=auto`` follows ``fillna`` (``mean`` fills text with its most
  frequent training value, ``none`` refuses); ``mode`` and ``none`` say so
  explicitly; ``missing`` makes a gap a category of its own (:data:`MISSING`),
  one-hot encoded like any other value;
- the target: ``drop-missing-target=true`` drops the rows whose target is missing
  (else such a row is refused).

Every fill value is recorded in the run's ``inputs`` (``fill``; the ``missing``
category with the column's categories), so ``tk predict`` and every exported
file's reader fill a user's rows exactly as training did; what was filled or
dropped is counted per column in the run's notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from toolkit import UsageError

if TYPE_CHECKING:
    from tk_data.tables import Table

# The category a missing text value becomes with fillna-text=missing.
MISSING = "<missing>"
SHOWN = 5  # row numbers named in a note


@dataclass
class Gaps:
    """How missing values are handled, and what was filled or dropped, per column."""

    numbers: str = "none"  # none | mean
    text: str = "none"  # none | mode | missing
    fills: dict[str, Any] = field(default_factory=dict)  # column -> the value filled in
    counts: dict[str, int] = field(default_factory=dict)  # column -> cells filled
    dropped: list[int] = field(default_factory=list)  # rows (from 1) dropped for their target

    @classmethod
    def of(cls, fillna: str, fillna_text: str) -> Gaps:
        """The strategies a user asked for (``fillna-text=auto`` follows ``fillna``)."""
        text = fillna_text if fillna_text != "auto" else ("mode" if fillna == "mean" else "none")
        return cls(fillna, text)

    def notes(self, target: str) -> list[str]:
        """One line per kind of change, naming each column and how many cells."""
        out = []
        if self.dropped:
            rows = ", ".join(map(str, self.dropped[:SHOWN])) + (
                ", ..." if len(self.dropped) > SHOWN else ""
            )
            out.append(
                f"dropped {len(self.dropped)} rows whose target '{target}' is missing "
                f"(rows {rows}; drop-missing-target=true)"
            )
        filled = [f"{name} {n} with {self._how(name)}" for name, n in self.counts.items() if n]
        if filled:
            total = sum(self.counts.values())
            out.append(f"filled {total} missing values: " + "; ".join(filled))
        return out

    def _how(self, name: str) -> str:
        value = self.fills.get(name)
        if value is None:
            return f"the category {MISSING!r} (fillna-text=missing)"
        if isinstance(value, str):
            return f"the most frequent training value {value!r}"
        return f"the training mean {value:.6g}"


def drop_missing_target(table: Table, name: str, gaps: Gaps) -> Table:
    """``table`` without the rows whose target is missing (null or NaN), counted in ``gaps``."""
    import numpy as np
    import pyarrow.compute as pc

    missing = pc.is_null(table.table.column(name), nan_is_null=True).to_numpy(zero_copy_only=False)
    if not missing.any():
        return table
    gaps.dropped = [table.row(int(i)) for i in np.flatnonzero(missing)]
    kept = np.flatnonzero(~missing)
    rows = kept if table.rows is None else table.rows[kept]
    return replace(table, table=table.table.take(kept), rows=rows)


def missing_category(table: Table, name: str, col: Any, values: list[str]) -> list[str]:
    """The extra category of a text column with gaps (fillna-text=missing), else none."""
    if not col.null_count:
        return []
    if MISSING in values:
        raise UsageError(
            f"csv: {table.path}: column '{name}' already has a value {MISSING!r}; "
            "fillna-text=missing needs that name for missing values",
            "--data-param fillna-text=mode",
        )
    return [MISSING]


def fill_numbers(table: Table, name: str, values: Any, train: Any, gaps: Gaps) -> None:
    """Fill NaNs of one number column in place with its training-row mean (recorded)."""
    import numpy as np

    missing = np.isnan(values)
    seen = values[train][~missing[train]]
    if not len(seen):
        raise UsageError(f"csv: {table.path}: column '{name}' has no values in the training rows")
    gaps.fills[name] = float(seen.astype(np.float64).mean())
    values[missing] = gaps.fills[name]
    gaps.counts[name] = int(missing.sum())


def fill_text(
    table: Table, name: str, onehot: Any, categories: list[str], train: Any, gaps: Gaps
) -> None:
    """Fill the all-zero one-hot rows of a text column with its most frequent training value.

    Ties go to the first value in sorted order, so the fill is reproducible.
    """
    import numpy as np

    missing = onehot.sum(axis=1) == 0
    counts = onehot[train].sum(axis=0)
    if not counts.any():
        raise UsageError(f"csv: {table.path}: column '{name}' has no values in the training rows")
    mode = int(np.argmax(counts))
    gaps.fills[name] = categories[mode]
    onehot[missing, mode] = 1.0
    gaps.counts[name] = int(missing.sum())
