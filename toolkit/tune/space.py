"""The search space: ``--space NAME=SPEC`` entries parsed, typed and checked.

NAME is a ``tk train`` option (``lr``, ``batch-size``, ...), a model parameter
``param.NAME`` or a dataset parameter ``data.NAME``; SPEC is ``log(a,b)``,
``float(a,b)``, ``int(a,b)`` or ``choice(x,y,z)``. Each entry is checked against the
type of what it sets (the ``TrainConfig`` field's annotation and range, or the
plugin's :class:`~toolkit.params.Param`) before a study exists, and a bad one is a
single UsageError naming the entry.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from toolkit.config import TrainConfig, check_value, flag
from toolkit.errors import UsageError
from toolkit.params import Param

# The options a study may vary: what a trial trains with. Options that change what
# the objective measures (val_fraction, monitor, seed, the data split) or where and
# how a run is stored are not searchable.
SEARCHABLE = (
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "momentum",
    "weight_decay",
    "grad_clip",
    "scheduler",
    "warmup_epochs",
    "early_stop",
    "min_delta",
)
KINDS = ("log", "float", "int", "choice")
_SPEC = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Dimension:
    """One searched value: what it sets, how it is drawn, and its typed bounds or choices."""

    name: str  # as optuna records it: lr, batch-size, param.hidden, data.noise
    kind: str  # log | float | int | choice
    target: str  # option | param | data
    key: str  # the TrainConfig field, or the Param's name
    type: type  # int, float, str or bool: what the value is
    values: tuple[Any, ...]  # (low, high) for ranges; the choices for choice

    @property
    def entry(self) -> str:
        """The entry as a canonical ``NAME=SPEC`` string (what a study records)."""
        shown = (f"'{v}'" if "," in str(v) else str(v) for v in self.values)
        return f"{self.name}={self.kind}({','.join(shown)})"

    def suggest(self, trial: Any) -> Any:
        """Draw this dimension's value for an optuna ``trial``."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        low, high = self.values
        log = self.kind == "log"
        if self.type is int:
            return trial.suggest_int(self.name, low, high, log=log)
        return trial.suggest_float(self.name, low, high, log=log)

    def grid(self) -> list[Any]:
        """Every value a grid search tries; a continuous range has no grid."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "int":
            return list(range(self.values[0], self.values[1] + 1))
        raise UsageError(
            f"--space {self.entry}: --sampler grid needs choice(...) or int(a,b) entries",
            f"--space {self.name}=choice(...), or --sampler tpe",
        )


def option_type(field: str) -> type:
    """What a TrainConfig field holds, from its annotation: float before int before str."""
    hints = typing.get_type_hints(TrainConfig)
    annotation = hints[field]
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    members = set(args) or {annotation}
    for kind in (float, int, str, bool):
        if kind in members:
            return kind
    return str


def split_entry(entry: str) -> tuple[str, str, list[str]]:
    """``lr=log(1e-4, 0.1)`` -> ("lr", "log", ["1e-4", "0.1"]); a malformed entry is refused."""
    name, sep, spec = entry.partition("=")
    m = _SPEC.match(spec)
    if not sep or not name.strip() or m is None:
        raise UsageError(
            f"--space {entry!r} is not NAME=SPEC",
            "--space 'lr=log(1e-4,1e-1)' (SPEC: log(a,b), float(a,b), int(a,b), choice(x,y))",
        )
    kind = m.group(1).lower()
    if kind not in KINDS:
        raise UsageError(
            f"--space {entry}: unknown kind '{m.group(1)}'; choose {', '.join(KINDS)}",
            "--space 'lr=log(1e-4,1e-1)'",
        )
    return name.strip(), kind, _items(m.group(2))


def _items(text: str) -> list[str]:
    """Comma-separated values; a quoted one may hold commas: ``choice('64,64','128')``."""
    items, current, quote = [], "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
            current += "" if not quote else ch
        elif ch in "'\"":
            quote = ch
        elif ch == ",":
            items.append(current.strip())
            current = ""
        else:
            current += ch
    return [*items, current.strip()]


def parse_space(
    entries: list[str], model_params: list[Param], data_params: list[Param], owners: tuple[str, str]
) -> list[Dimension]:
    """Every entry parsed and typed against what it sets (one UsageError for the first bad one).

    ``owners`` names the model and the dataset for the parameters' error lines.
    """
    dims: list[Dimension] = []
    for entry in entries:
        name, kind, items = split_entry(entry)
        target, key, typ = _target(entry, name, model_params, data_params)
        values = _values(entry, kind, items, typ)
        if target == "option":
            values = tuple(_check(entry, check_value, key, v, flag(key)) for v in values)
        else:
            declared = {p.name: p for p in (model_params if target == "param" else data_params)}
            owner = owners[0] if target == "param" else owners[1]
            values = tuple(_check(entry, declared[key].parse, v, owner) for v in values)
        canonical = flag(key)[2:] if target == "option" else f"{target}.{key}"
        dim = Dimension(canonical, kind, target, key, typ, values)
        if any(d.name == dim.name for d in dims):
            raise UsageError(f"--space {entry}: {dim.name} is searched twice", "one --space each")
        dims.append(dim)
    return dims


def _check(entry: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, its UsageError prefixed with the entry it came from."""
    try:
        return fn(*args)
    except UsageError as exc:
        raise UsageError(f"--space {entry}: {exc.message}", exc.hint) from None


def _target(
    entry: str, name: str, model_params: list[Param], data_params: list[Param]
) -> tuple[str, str, type]:
    """(option | param | data, the field or Param name, its type) for NAME."""
    prefix, dot, rest = name.partition(".")
    if dot and prefix in ("param", "data"):
        params = model_params if prefix == "param" else data_params
        declared = {p.name: p for p in params}
        key = rest if rest in declared else rest.replace("-", "_")
        if key not in declared:
            allowed = ", ".join(f"{prefix}.{p}" for p in sorted(declared)) or "(none)"
            raise UsageError(
                f"--space {entry}: unknown {'model' if prefix == 'param' else 'dataset'} "
                f"parameter '{rest}'; allowed: {allowed}",
                "tk info MODEL",
            )
        return prefix, key, declared[key].type
    key = name.replace("-", "_")
    if key in SEARCHABLE:
        return "option", key, option_type(key)
    searchable = [flag(f)[2:] for f in SEARCHABLE]
    if key in TrainConfig.__dataclass_fields__:
        why = f"'{name}' is not searched (it changes what trials measure or where they go)"
    else:
        close = difflib.get_close_matches(name, searchable, n=1)
        why = f"unknown name '{name}'" + (f" (did you mean '{close[0]}'?)" if close else "")
    raise UsageError(
        f"--space {entry}: {why}; searchable: {', '.join(searchable)}, param.NAME, data.NAME"
    )


def _values(entry: str, kind: str, items: list[str], typ: type) -> tuple[Any, ...]:
    """The entry's bounds or choices, typed for ``typ``."""
    if kind == "choice":
        if not items or any(not v for v in items):
            raise UsageError(f"--space {entry}: choice needs values, e.g. choice(8,16,32)")
        return tuple(_number(v) if typ in (int, float) else v for v in items)
    if len(items) != 2:
        raise UsageError(f"--space {entry}: {kind} takes two bounds, {kind}(a,b)")
    wanted = {"float": (float,), "int": (int,), "log": (int, float)}[kind]
    if typ not in wanted:
        takes = "whole numbers" if typ is int else f"{typ.__name__} values"
        other = "int(a,b), log(a,b)" if typ is int else "float(a,b), log(a,b)"
        raise UsageError(
            f"--space {entry}: {kind}(a,b) does not fit; this one takes {takes}",
            f"{other} or choice(...)" if typ in (int, float) else "choice(...)",
        )
    low, high = (_number(v, entry) for v in items)
    if typ is int and not all(isinstance(v, int) for v in (low, high)):
        raise UsageError(f"--space {entry}: bounds must be whole numbers, got {low}, {high}")
    if not low < high:
        raise UsageError(f"--space {entry}: needs a < b, got a={low}, b={high}")
    if kind == "log" and low <= 0:
        raise UsageError(f"--space {entry}: log(a,b) needs 0 < a < b, got a={low}")
    return (low, high) if typ is int else (float(low), float(high))


def _number(text: str, entry: str | None = None) -> Any:
    """``"16"`` -> 16, ``"1e-3"`` -> 0.001; other text stays text (or, for a bound, is refused)."""
    for conv in (int, float):
        try:
            value = conv(text)
        except ValueError:
            continue
        if conv is float and not math.isfinite(value):
            break
        return value
    if entry is not None:
        raise UsageError(f"--space {entry}: bound {text!r} is not a finite number")
    return text
