"""Specs for models and datasets, and the registry that holds them.

A spec is a description plus a *factory*: listing specs never builds a model,
loads data or imports torch (the lesson from timm's registry of factories).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from toolkit.errors import PluginError, UsageError

TASKS = ("binary", "multiclass", "regression")
OPTIMIZERS = ("sgd", "adam", "adamw")
_PARAM_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


@dataclass(frozen=True)
class Param:
    """A typed, documented parameter of a model or dataset factory.

    :param name: the keyword passed to the factory (``--param name=value``).
    :param type: ``int``, ``float``, ``str`` or ``bool``.
    :param default: the value used when the user gives none.
    :param help: one line shown by ``tk info``.
    :param choices: when given, the only values accepted.
    """

    name: str
    type: type
    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None

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
        return out


@dataclass(frozen=True)
class InputSpec:
    """What a model takes: one tensor of ``shape`` (without the batch dimension).

    :param shape: per-sample shape, e.g. ``(2,)`` or ``(1, 28, 28)``.
    :param dtype: ``"float32"`` (the only dtype the loop feeds today).
    :param name: the input's name in exported graphs.
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    name: str = "input"

    def to_json(self) -> dict[str, Any]:
        """``{"name", "shape" (with a symbolic "batch"), "dtype"}``."""
        return {"name": self.name, "shape": ["batch", *self.shape], "dtype": self.dtype}


@dataclass(frozen=True)
class Recipe:
    """A default training recipe; every field can be overridden on the command line.

    ``batch_size=None`` means full batch (the whole training split per step).
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    epochs: int = 10
    batch_size: int | None = None
    momentum: float = 0.0
    weight_decay: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """All fields; ``batch_size`` is ``"full"`` for full-batch training."""
        return {
            "optimizer": self.optimizer,
            "lr": self.lr,
            "epochs": self.epochs,
            "batch_size": "full" if self.batch_size is None else self.batch_size,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
        }


@dataclass(frozen=True)
class Tolerance:
    """Verification tolerance for an exported model's outputs (float32 default)."""

    atol: float = 1e-5
    rtol: float = 1e-4


@dataclass(frozen=True)
class ModelSpec:
    """A model a plugin offers.

    :param name: unique name, used as ``tk train NAME``.
    :param build: factory ``build(**params) -> torch.nn.Module``; import torch inside it.
    :param input: the per-sample input the model takes.
    :param task: ``"binary"`` (one logit), ``"multiclass"`` (one logit per class)
        or ``"regression"`` (one value per target).
    :param params: declared factory parameters (``--param key=value``).
    :param default_dataset: the dataset ``tk train NAME`` uses without ``--dataset``.
    :param recipe: the default training recipe.
    :param description: one line for ``tk list models``.
    :param tolerance: verification tolerance for exported files.
    """

    name: str
    build: Callable[..., Any]
    input: InputSpec
    task: str
    params: Sequence[Param] = ()
    default_dataset: str | None = None
    recipe: Recipe = field(default_factory=Recipe)
    description: str = ""
    tolerance: Tolerance = field(default_factory=Tolerance)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise PluginError(
                f"model '{self.name}': task must be one of {', '.join(TASKS)}, got {self.task!r}"
            )
        if self.recipe.optimizer not in OPTIMIZERS:
            raise PluginError(
                f"model '{self.name}': recipe optimizer must be one of {', '.join(OPTIMIZERS)}"
            )

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``given``, each value checked against its declared type."""
        return _resolve(self.name, self.params, given)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset a plugin offers.

    :param name: unique name, used as ``--dataset NAME``.
    :param load: loader ``load(**params) -> {"train": (x, y), "test": (x, y)}``; ``x``
        and ``y`` are numpy arrays or tensors (import torch/numpy inside it).
    :param feature_shape: per-sample feature shape, e.g. ``(2,)``.
    :param target: ``"binary"``, ``"multiclass"`` or ``"regression"``.
    :param num_classes: classes for ``multiclass`` (2 for ``binary``).
    :param class_names: optional display names of the classes.
    :param params: declared loader parameters (``--data-param key=value``).
    :param splits: the split names ``load`` returns; the first trains, the last evaluates.
    :param feature_scale: integer features (e.g. uint8 images) are kept as they are
        on the device and multiplied by this per batch, so no float copy is stored.
    :param target_dim: outputs per sample for regression.
    :param description: one line for ``tk list datasets``.
    """

    name: str
    load: Callable[..., Mapping[str, Any]]
    feature_shape: tuple[int, ...]
    target: str
    num_classes: int | None = None
    class_names: Sequence[str] | None = None
    params: Sequence[Param] = ()
    splits: tuple[str, ...] = ("train", "test")
    feature_scale: float | None = None
    target_dim: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        if self.target not in TASKS:
            raise PluginError(
                f"dataset '{self.name}': target must be one of {', '.join(TASKS)}, "
                f"got {self.target!r}"
            )
        if self.target == "multiclass" and not self.num_classes:
            raise PluginError(f"dataset '{self.name}': multiclass targets need num_classes")
        if self.class_names is not None and self.num_classes is not None:
            expected = 2 if self.target == "binary" else self.num_classes
            if len(self.class_names) != expected:
                raise PluginError(
                    f"dataset '{self.name}': {len(self.class_names)} class names "
                    f"for {expected} classes"
                )

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``given``, each value checked against its declared type."""
        return _resolve(self.name, self.params, given)

    @property
    def outputs(self) -> int:
        """How many outputs a model needs for this dataset."""
        if self.target == "binary":
            return 1
        if self.target == "multiclass":
            return int(self.num_classes or 0)
        return self.target_dim


def _resolve(owner: str, params: Sequence[Param], given: Mapping[str, Any]) -> dict[str, Any]:
    declared = {p.name: p for p in params}
    for key in given:
        if key not in declared:
            allowed = ", ".join(sorted(declared)) or "(none)"
            raise UsageError(
                f"{owner}: unknown parameter '{key}'; allowed: {allowed}", f"tk info {owner}"
            )
    return {
        name: (p.parse(given[name], owner) if name in given else p.default)
        for name, p in declared.items()
    }


@dataclass
class Source:
    """Where a spec came from: the entry point and its distribution."""

    entry_point: str
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"{self.distribution} {self.version} (entry point '{self.entry_point}')"


class Registry:
    """All specs registered by the loaded plugins, by name."""

    def __init__(self) -> None:
        self.models: dict[str, ModelSpec] = {}
        self.datasets: dict[str, DatasetSpec] = {}
        self.sources: dict[tuple[str, str], Source] = {}

    def add(self, spec: ModelSpec | DatasetSpec, source: Source) -> None:
        """Add a spec; a name that another distribution already registered is an error."""
        kind = "model" if isinstance(spec, ModelSpec) else "dataset"
        table: dict[str, Any] = self.models if kind == "model" else self.datasets
        if spec.name in table:
            other = self.sources[(kind, spec.name)]
            raise PluginError(
                f"{kind} '{spec.name}' is registered by both {other.distribution} "
                f"and {source.distribution}",
                "uninstall one, or TK_LOAD_PLUGINS to pick which loads",
            )
        table[spec.name] = spec
        self.sources[(kind, spec.name)] = source

    def model(self, name: str) -> ModelSpec:
        """The model spec called ``name``, or a UsageError with a "did you mean"."""
        return self._get("model", self.models, name)

    def dataset(self, name: str) -> DatasetSpec:
        """The dataset spec called ``name``, or a UsageError with a "did you mean"."""
        return self._get("dataset", self.datasets, name)

    def source(self, kind: str, name: str) -> Source:
        """The distribution that registered a model or dataset."""
        return self.sources[(kind, name)]

    def _get(self, kind: str, table: Mapping[str, Any], name: str) -> Any:
        if name in table:
            return table[name]
        close = difflib.get_close_matches(name, list(table), n=1, cutoff=0.6)
        suggestion = f"; did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"unknown {kind} '{name}'{suggestion}", f"tk list {kind}s")
