"""The verdict on one exported file: every check, rendered as a table and one line.

``tk verify`` prints :meth:`VerifyReport.render` (a rich table, then the verdict);
``tk export`` prints :meth:`VerifyReport.text` for a file it refuses to write, and
``--json`` gives :meth:`VerifyReport.to_json`.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from typing import Any

from toolkit.verify.compare import Check
from toolkit.verify.heldout import TaskReport
from toolkit.verify.inputs import CASES


@dataclass
class VerifyReport:
    """Every check of one file, plus what was compared and why it passed or failed."""

    path: str
    format: str
    run: str
    task: str
    atol: float
    rtol: float
    batch_sizes: list[int]
    runtimes: list[str]
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    heldout: list[TaskReport] = field(default_factory=list)  # one per runtime
    quantization: str | None = None  # the file's scheme (int8-static, fp16, ...)

    @property
    def passed(self) -> bool:
        """At least one check, every check passed, every held-out agreement high enough."""
        return (
            bool(self.checks)
            and all(c.passed for c in self.checks)
            and all(h.passed for h in self.heldout)
        )

    def heldout_failure(self) -> TaskReport | None:
        """The first held-out report below its minimum (or that could not run)."""
        return next((h for h in self.heldout if not h.passed), None)

    @property
    def status(self) -> str:
        """``pass``, ``mismatch``, or ``error`` when the file ran on no input at all."""
        if self.passed:
            return "pass"
        if self.checks and all(c.error is not None for c in self.checks):
            return "error"
        return "mismatch"

    @property
    def exit_code(self) -> int:
        """0 pass, 1 mismatch, 3 cannot run."""
        return {"pass": 0, "mismatch": 1, "error": 3}[self.status]

    def worst(self) -> Check | None:
        """The first failing check (or None)."""
        return next((c for c in self.checks if not c.passed), None)

    def summary(self) -> str:
        """One line: verdict, what was judged, counts and the largest error."""
        errs = [c.max_abs for c in self.checks if c.max_abs is not None]
        n_bad = sum(not c.passed for c in self.checks)
        counts = f"{len(self.checks) - n_bad}/{len(self.checks)}"
        bad = self.worst()
        tail = (
            ""
            if bad is None
            else f"; first failure: {bad.runtime} {bad.inputs} batch {bad.batch}: {_why(bad)}"
        )
        sizes = ",".join(map(str, self.batch_sizes))
        held = self.heldout_failure() or (self.heldout[0] if self.heldout else None)
        if any(not c.exact for c in self.checks):
            # A quantized or float16 file: no tolerance was applied to its values, the
            # held-out agreement decided. The line says so, and quotes no tolerance.
            decided = held.summary() if held else "no held-out split to judge it on"
            biggest = f", max abs err {max(errs):.2e}" if errs else ""
            return (
                f"{self.status.upper()}: {decided}; {counts} runs at batch {sizes} with the "
                f"eager model's shapes and dtypes ({self.quantization or 'reduced-precision'} "
                f"values not judged{biggest}){tail}"
            )
        biggest = f", max abs err {max(errs):.2e}" if errs else ""
        scaled = "/".join(f"x{s:g}" for s in sorted({v for v in CASES.values() if v != 1}))
        return (
            f"{self.status.upper()}: {counts} checks (batch {sizes}, atol {self.atol:g} "
            f"[{scaled} on OOD inputs], rtol {self.rtol:g}{biggest}){tail}"
            + (f"; {held.summary()}" if held else "")
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly dict (``tk verify --json``)."""
        return {
            "path": self.path,
            "format": self.format,
            "run": self.run,
            "task": self.task,
            "status": self.status,
            "passed": self.passed,
            "atol": self.atol,
            "rtol": self.rtol,
            "batch_sizes": self.batch_sizes,
            "runtimes": self.runtimes,
            "notes": self.notes,
            "seconds": round(self.seconds, 4),
            "checks": [c.to_json() for c in self.checks],
            "quantization": self.quantization,
            "heldout": [h.to_json() for h in self.heldout],
        }

    def text(self) -> str:
        """The rendered table and verdict as plain text (no colours)."""
        buf = io.StringIO()
        self.render(buf, color=False)
        return buf.getvalue().rstrip("\n")

    def render(self, file: Any = None, color: bool | None = None) -> None:
        """Print the report as a table (rich) followed by the one-line verdict."""
        import shutil

        from rich.console import Console

        # A pipe or a file gets the whole table unwrapped; a terminal its own width.
        target = file or sys.stdout
        tty = hasattr(target, "isatty") and target.isatty()
        width = shutil.get_terminal_size((160, 24)).columns if tty else 160
        console = Console(
            file=file,
            width=width,
            highlight=False,
            soft_wrap=False,
            no_color=color is False,
            force_terminal=False if color is False else None,
        )
        table = _table(self.checks)
        console.print(f"tk verify {self.path} ({self.format})", soft_wrap=True, markup=False)
        console.print(table)
        for note in self.notes:
            console.print(f"note: {note}", soft_wrap=True, markup=False)
        for held in self.heldout:
            style = "green" if held.passed else "red"
            if held.worst:
                console.print(_heldout_table(held, style))
            else:
                console.print(held.summary(), style=style, soft_wrap=True, markup=False)
        style = "green" if self.passed else "red"
        console.print(self.summary(), style=style, soft_wrap=True, markup=False)


def _table(checks: list[Check]) -> Any:
    """One row per check: what ran, on what, how far off, and the result."""
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for col in ("runtime", "inputs", "batch", "output", "shape / dtype"):
        table.add_column(col, no_wrap=True)
    for col in ("max abs", "max rel", "outside", "agree"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("result", no_wrap=True)
    for c in checks:
        shape = "x".join(map(str, c.shape)) if c.shape is not None else "-"
        table.add_row(
            c.runtime,
            c.inputs,
            str(c.batch),
            c.output,
            f"{shape} {c.dtype or ''}".strip(),
            _num(c.max_abs),
            _num(c.max_rel),
            "-" if c.outside is None else f"{100 * c.outside:.1f}%",
            "-" if c.agreement is None else f"{100 * c.agreement:.1f}%",
            Text("ok" if c.exact or not c.outside else "ok (not judged)", style="green")
            if c.passed
            else Text(f"FAIL {_why(c, short=True)}", style="red"),
        )
    return table


def _heldout_table(h: TaskReport, style: str) -> Any:
    """The held-out verdict as a table title, with the rows that disagree most."""
    from rich.table import Table
    from rich.text import Text

    title = Text(h.summary() + "; rows that differ most:", style=style)
    table = Table(title=title, title_justify="left")
    for col in ("row", "eager", "export", "target", "difference", "agrees"):
        table.add_column(col, no_wrap=True, justify="left" if col != "difference" else "right")
    for w in h.worst:
        table.add_row(
            str(w["index"]),
            _short(w["eager"]),
            _short(w["export"]),
            _short(w["target"]),
            f"{w['difference']:.3g}",
            "yes" if w["agrees"] else "no",
        )
    return table


def _short(v: Any) -> str:
    if isinstance(v, list):
        return " ".join(_short(x) for x in v[:4]) + (" ..." if len(v) > 4 else "")
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2e}"


def _why(c: Check, short: bool = False) -> str:
    """Why a check failed: a few words for the table, a full sentence otherwise."""
    if c.error is not None:
        return c.error.split(":")[0] if short else c.error
    if c.shape != c.expected_shape:
        return f"shape {c.shape}, eager {c.expected_shape}"
    if c.dtype != c.expected_dtype:
        return f"dtype {c.dtype}, eager {c.expected_dtype}"
    if c.outside:
        if short:
            return "values outside tolerance"
        return f"{100 * c.outside:.1f}% of values outside tolerance (max abs {c.max_abs:.2e})"
    if c.agreement != 1.0:
        return f"decisions differ on {100 * (1 - (c.agreement or 0)):.1f}% of rows"
    return "ok"
