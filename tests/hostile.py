"""What every hostile-input case asserts: the exit code, one line on stderr with no
traceback, nothing changed outside the files the case expects, no payload ran.

Used by the ``test_hostile_*.py`` files (issue 19's suite). A case runs tk in this
process (``tk_main``: warm imports, ~0.1 s) unless the process boundary is the point.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from conftest import tk_main


@dataclass
class Outcome:
    """A finished ``tk`` call: exit code and what it printed."""

    code: int
    out: str
    err: str


def run(capsys, *args: str) -> Outcome:
    """``tk ARGS`` in this process; stdout/stderr captured by pytest's ``capsys``."""
    capsys.readouterr()  # drop whatever an earlier step printed
    code = tk_main(*args)
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def assert_one_line(outcome: Outcome, code: int, *needles: str) -> str:
    """Exit ``code``, stderr exactly one ``tk: error:`` line (no traceback) holding every
    needle (case-insensitive); returns that line."""
    lines = [line for line in outcome.err.splitlines() if line.strip()]
    assert outcome.code == code, (outcome.code, outcome.err[-2000:])
    assert "Traceback" not in outcome.err, outcome.err[-2000:]
    errors = [line for line in lines if line.startswith("tk: error:")]
    assert len(errors) == 1, lines
    others = [line for line in lines if not line.startswith(("tk: error:", "tk: warning:"))]
    assert not others, lines
    for needle in needles:
        assert needle.lower() in errors[0].lower(), (needle, errors[0])
    return errors[0]


def snapshot(*roots: Path) -> dict[str, str]:
    """``{path: sha256 or '<dir>' or '-> target'}`` of everything under ``roots``."""
    seen: dict[str, str] = {}
    for root in roots:
        if not root.exists() and not root.is_symlink():
            continue
        paths: Iterable[Path] = [root, *root.rglob("*")] if root.is_dir() else [root]
        for p in paths:
            if p.is_symlink():
                seen[str(p)] = f"-> {p.readlink()}"
            elif p.is_dir():
                seen[str(p)] = "<dir>"
            elif p.is_file():
                seen[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return seen


def assert_unchanged(before: dict[str, str], after: dict[str, str], allowed=()) -> None:
    """Nothing added, removed or changed except paths under an ``allowed`` prefix."""
    allowed = tuple(str(a) for a in allowed)
    changed = {
        p
        for p in set(before) | set(after)
        if before.get(p) != after.get(p) and not p.startswith(allowed)
    }
    assert not changed, sorted(changed)[:20]
