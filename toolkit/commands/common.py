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
# The one door for code-bearing files (toolkit/trust.py), spelled the same everywhere.
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust",
        help="Load a file that runs code (TorchScript, pt2) this tk install did not export.",
    ),
]
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


def with_options_of(source: Any, drop: tuple[str, ...] = ()) -> Any:
    """A decorator: the command takes every option of ``source`` (another command's
    function: the same declarations, defaults and help) before its own, except ``drop``.

    The decorated function is called with all of them as keyword arguments (its
    ``**kwargs`` takes the borrowed ones); ``wrapper.borrowed`` names those.
    """
    import functools
    import inspect

    def decorate(func: Any) -> Any:
        theirs = inspect.signature(source, eval_str=True).parameters
        own = {
            name: p
            for name, p in inspect.signature(func, eval_str=True).parameters.items()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
        borrowed = [p for name, p in theirs.items() if name not in drop and name not in own]
        params = sorted([*borrowed, *own.values()], key=lambda p: p.default is not p.empty)

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            return func(**kwargs)

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        wrapper.borrowed = tuple(p.name for p in borrowed)  # type: ignore[attr-defined]
        return wrapper

    return decorate
