"""What every command module shares: option types, JSON output, tables, key=value pairs.

Nothing heavy here: ``tk --help`` imports every command module.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer

from toolkit.errors import UsageError

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
RunsDirOpt = Annotated[
    str | None, typer.Option("--runs-dir", help="Root of run directories (default runs).")
]


def resolve_runs_dir(value: str | None) -> str:
    """``--runs-dir``, else ``TK_RUNS_DIR``, else ``runs``."""
    return value or os.environ.get("TK_RUNS_DIR") or "runs"


def emit_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON (paths and other objects as strings)."""
    typer.echo(json.dumps(obj, indent=2, default=str))


def table(rows: list[list[Any]], header: list[str]) -> str:
    """Left-aligned columns, two spaces apart, no trailing blanks."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [header, *rows]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines
    )


def parse_kv(items: list[str] | None, flag: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a pair without ``=`` names the flag."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} expects key=value, got {item!r}", f"{flag} hidden=16")
        out[key.strip()] = value.strip()
    return out
