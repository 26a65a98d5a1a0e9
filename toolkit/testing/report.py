"""The conformance check's report: one :class:`Check` per step, and the verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Check:
    """One step of the conformance check.

    :param kind: ``"plugin"``, ``"model"`` or ``"dataset"``.
    :param name: the plugin, model or dataset name.
    :param step: ``load``, ``input``, ``train``, ``export onnx``, ``verify onnx``, ...
    :param ok: whether the step passed.
    :param detail: one line: what was done, or why it failed.
    """

    kind: str
    name: str
    step: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        """One aligned line for a terminal."""
        status = "ok" if self.ok else "FAILED"
        return f"{status:<7} {self.kind:<8} {self.name:<20} {self.step:<18} {self.detail}".rstrip()


@dataclass
class PluginReport:
    """What :func:`check_plugin` found; ``ok`` is true when every step passed."""

    plugin: str
    label: str = ""
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when there is at least one check and none failed."""
        return bool(self.checks) and not self.failures

    @property
    def failures(self) -> list[Check]:
        """The failed steps."""
        return [c for c in self.checks if not c.ok]

    def format(self) -> str:
        """A readable report, one line per step (use it as a pytest assertion message)."""
        head = f"tk plugin check: {self.label or self.plugin}"
        lines = [head, *(c.line() for c in self.checks)]
        lines.append(self.summary())
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: passed, or the first failure."""
        if self.ok:
            return f"{self.plugin}: all {len(self.checks)} checks passed in {self.seconds:.1f} s"
        if not self.checks:
            return f"{self.plugin}: nothing was checked"
        first = self.failures[0]
        detail = first.detail if len(first.detail) <= 240 else first.detail[:237] + "..."
        return (
            f"{self.plugin}: {len(self.failures)} of {len(self.checks)} checks failed; first: "
            f"{first.kind} '{first.name}' {first.step}: {detail}"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly copy (``tk plugins check --json``)."""
        return {
            "plugin": self.plugin,
            "label": self.label,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "checks": [c.__dict__ for c in self.checks],
        }
