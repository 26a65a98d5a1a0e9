"""What the sections hand to the page: goals, figures, markdown lines."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

MB = 1e6


@dataclass
class Goal:
    """One goal of the issue: what was measured, the limit, and whether it held."""

    key: str
    text: str
    measured: float
    limit: float
    unit: str
    higher_is_better: bool
    detail: str = ""

    @property
    def met(self) -> bool:
        """Whether the measured figure is on the right side of the limit."""
        if math.isnan(self.measured):
            return False
        if self.higher_is_better:
            return self.measured >= self.limit
        return self.measured <= self.limit

    def shortfall(self) -> str:
        """How far from the limit, in words (empty when met)."""
        if self.met:
            return ""
        if math.isnan(self.measured):
            return "not measured"
        gap = abs(self.measured - self.limit)
        rel = gap / abs(self.limit) * 100 if self.limit else math.inf
        return f"missed by {fmt(gap)} {self.unit} ({rel:.0f}% of the limit)".replace("  ", " ")


@dataclass
class Report:
    """Everything the sections measured, ready to render."""

    goals: list[Goal] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def fmt(x: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (thousands separated)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def table(header: list[str], rows: list[list[Any]], left: int = 1) -> list[str]:
    """A markdown table; the first ``left`` columns left-aligned, the rest right."""
    aligns = [":---" if i < left else "---:" for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |"]
    for row in rows:
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    return out
