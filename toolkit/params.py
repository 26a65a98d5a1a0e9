"""Declared factory parameters: ``--param key=value`` and ``--data-param key=value``.

A plugin declares each parameter of its factory (name, type, default, help); the
strings a user types are parsed against that declaration, and a wrong key or value
is a one-line UsageError naming the key and ``tk info NAME``. A key may be written
with ``-`` or ``_`` (``test-fraction=0.2`` sets ``test_fraction``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from toolkit.errors import UsageError


@dataclass(frozen=True)
class Param:
    """A typed, documented parameter of a model or dataset factory.

    :param name: the keyword passed to the factory (``--param name=value``).
    :param type: ``int``, ``float``, ``str`` or ``bool``.
    :param default: the value used when the user gives none.
    :param help: one line shown by ``tk info``.
    :param choices: when given, the only values accepted.
    :param path: a file or folder (``str`` only): recorded absolute, as resolved in
        the directory tk ran in, so a run's data is found again from anywhere, and
        fingerprinted in ``config.json`` (``data_files``).
    """

    name: str
    type: type
    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None
    path: bool = False

    def parse(self, raw: Any, owner: str) -> Any:
        """Convert ``raw`` (a string from the CLI or a TOML value) to this type.

        Raises :class:`UsageError` naming the key and expected type on failure.
        """
        value = raw
        try:
            if self.type is bool:
                if isinstance(raw, str):
                    low = raw.strip().lower()
                    if low in ("1", "true", "yes", "on"):
                        value = True
                    elif low in ("0", "false", "no", "off"):
                        value = False
                    else:
                        raise ValueError(raw)
                elif not isinstance(raw, bool):
                    raise ValueError(raw)
            elif self.type is int:
                if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                    raise ValueError(raw)
                value = int(raw)
            elif self.type is float:
                if isinstance(raw, bool):
                    raise ValueError(raw)
                value = float(raw)
            else:
                value = self.type(raw)
        except (TypeError, ValueError):
            raise UsageError(
                f"{owner}: parameter '{self.name}' expects {self.type.__name__}, got {raw!r}",
                f"tk info {owner}",
            ) from None
        if self.path:
            value = absolute(value)
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise UsageError(
                f"{owner}: parameter '{self.name}' must be one of {allowed}, got {value!r}",
                f"tk info {owner}",
            )
        return value

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly description (used by ``tk info --json``)."""
        out = {"name": self.name, "type": self.type.__name__, "default": self.default}
        if self.help:
            out["help"] = self.help
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.path:
            out["path"] = True
        return out


def absolute(value: str) -> str:
    """``value`` as an absolute, normalised path (``~`` expanded); ``""`` stays ``""``.

    Symbolic links are kept as written: a link the user named is what they mean.
    """
    import os

    if not value:
        return value
    return os.path.abspath(os.path.expanduser(value))


def resolve_params(owner: str, params: Sequence[Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``given``, each value checked against its declaration."""
    declared = {p.name: p for p in params}
    values = {}
    for raw_key, value in given.items():
        key = raw_key if raw_key in declared else raw_key.replace("-", "_")
        if key not in declared:
            allowed = ", ".join(sorted(declared)) or "(none)"
            raise UsageError(
                f"{owner}: unknown parameter '{raw_key}'; allowed: {allowed}", f"tk info {owner}"
            )
        values[key] = declared[key].parse(value, owner)
    # A path's default is relative to where tk runs now, like a value typed here.
    return {
        name: values[name] if name in values else (absolute(p.default) if p.path else p.default)
        for name, p in declared.items()
    }
