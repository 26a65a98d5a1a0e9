"""Specs for models, datasets and trackers, and the registry that holds them.

A spec is a description plus a *factory*: listing specs never builds a model,
loads data or imports torch (the lesson from timm's registry of factories).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from toolkit.errors import PluginError, UsageError
from toolkit.formats import ExportFormat
from toolkit.params import Param, resolve_params

if TYPE_CHECKING:
    from toolkit.inputs import Inputs

TASKS = ("binary", "multiclass", "regression")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "cosine", "onecycle", "plateau")


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
    ``scheduler`` is one of ``none``, ``step``, ``cosine``, ``onecycle``, ``plateau``
    (``torch.optim.lr_scheduler``), after ``warmup_epochs`` of linear warm-up.
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    epochs: int = 10
    batch_size: int | None = None
    momentum: float = 0.0
    weight_decay: float = 0.0
    scheduler: str = "none"
    warmup_epochs: int = 0

    def to_json(self) -> dict[str, Any]:
        """All fields; ``batch_size`` is ``"full"`` for full-batch training."""
        return {
            "optimizer": self.optimizer,
            "lr": self.lr,
            "epochs": self.epochs,
            "batch_size": "full" if self.batch_size is None else self.batch_size,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "scheduler": self.scheduler,
            "warmup_epochs": self.warmup_epochs,
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
    :param input: the per-sample input the model takes; None: the model sizes itself
        from the dataset, and ``build`` also receives ``input_shape=`` (the dataset's
        feature shape) and ``outputs=`` (1 for binary, the classes for multiclass,
        the targets for regression).
    :param task: ``"binary"`` (one logit), ``"multiclass"`` (one logit per class)
        or ``"regression"`` (one value per target); None: whatever the dataset's is.
    :param params: declared factory parameters (``--param key=value``).
    :param default_dataset: the dataset ``tk train NAME`` uses without ``--dataset``.
    :param recipe: the default training recipe.
    :param description: one line for ``tk list models``.
    :param tolerance: verification tolerance for exported files.
    """

    name: str
    build: Callable[..., Any]
    input: InputSpec | None = None
    task: str | None = None
    params: Sequence[Param] = ()
    default_dataset: str | None = None
    recipe: Recipe = field(default_factory=Recipe)
    description: str = ""
    tolerance: Tolerance = field(default_factory=Tolerance)

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise PluginError(
                f"model '{self.name}': task must be one of {', '.join(TASKS)}, got {self.task!r}"
            )
        if self.recipe.optimizer not in OPTIMIZERS:
            raise PluginError(
                f"model '{self.name}': recipe optimizer must be one of {', '.join(OPTIMIZERS)}"
            )
        if self.recipe.scheduler not in SCHEDULERS:
            raise PluginError(
                f"model '{self.name}': recipe scheduler must be one of {', '.join(SCHEDULERS)}"
            )

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``given``, each value checked against its declared type."""
        return resolve_params(self.name, self.params, given)

    def for_dataset(self, data: DatasetSpec) -> ModelSpec:
        """This model for one (loaded) dataset: its input shape and task filled in, and a
        factory that gets ``input_shape=`` and ``outputs=`` when the model sizes itself."""
        return self.sized(tuple(data.feature_shape or ()), data.outputs, str(data.target))

    def sized(self, input_shape: tuple[int, ...], outputs: int, task: str) -> ModelSpec:
        """This model with a concrete input and task (a run's config records both)."""
        if self.input is not None and self.task is not None:
            return self
        build = self.build
        if self.input is None:
            build = partial(build, input_shape=tuple(input_shape), outputs=outputs)
        return replace(
            self,
            build=build,
            input=self.input or InputSpec(tuple(input_shape)),
            task=self.task or task,
        )


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset a plugin offers.

    :param name: unique name, used as ``--dataset NAME``.
    :param load: loader ``load(**params) -> {"train": (x, y), "test": (x, y)}``; ``x``
        and ``y`` are numpy arrays or tensors (import torch/numpy inside it).
    :param feature_shape: per-sample feature shape, e.g. ``(2,)``; None: the loader
        tells, in a :class:`DataInfo` under the ``"info"`` key of what it returns.
    :param target: ``"binary"``, ``"multiclass"`` or ``"regression"``; None: the
        loader tells (``DataInfo.target``), e.g. from a CSV column's values.
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
    feature_shape: tuple[int, ...] | None = None
    target: str | None = None
    num_classes: int | None = None
    class_names: Sequence[str] | None = None
    params: Sequence[Param] = ()
    splits: tuple[str, ...] = ("train", "test")
    feature_scale: float | None = None
    target_dim: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        if self.target is not None and self.target not in TASKS:
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
        return resolve_params(self.name, self.params, given)

    @property
    def inferred(self) -> bool:
        """True when the loader decides the feature shape or the target kind."""
        return self.feature_shape is None or self.target is None

    def with_info(self, info: DataInfo) -> DatasetSpec:
        """This spec with what the loader found filled in (checked like a declared spec)."""
        found = {k: v for k, v in info.__dict__.items() if v is not None and k in _SPEC_FIELDS}
        if "feature_shape" in found:
            found["feature_shape"] = tuple(found["feature_shape"])
        spec = replace(self, **found)
        if spec.feature_shape is None or spec.target is None:
            raise PluginError(
                f"dataset '{self.name}': the loader left the feature shape or target kind "
                "unknown (DataInfo.feature_shape / .target)"
            )
        return spec

    @property
    def outputs(self) -> int:
        """How many outputs a model needs for this dataset."""
        if self.target == "binary":
            return 1
        if self.target == "multiclass":
            return int(self.num_classes or 0)
        return self.target_dim


@dataclass(frozen=True)
class DataInfo:
    """What a loader learned from the data itself: a CSV's columns, a folder's classes.

    A loader returns it under the ``"info"`` key, next to its splits; every field left
    None keeps the dataset spec's declared value.

    :param feature_shape: per-sample feature shape.
    :param target: ``binary``, ``multiclass`` or ``regression``.
    :param num_classes: classes (multiclass).
    :param class_names: display names of the classes, in label order.
    :param target_dim: targets per row (regression).
    :param feature_scale: multiplier for integer features (uint8 images: 1/255).
    :param feature_names: the input columns, in order (recorded in the run, so
        ``tk predict`` can match a CSV's header by name).
    :param standardize: features tk standardizes with statistics of the training rows
        (``True``: all, or a list of feature indices); the statistics become the
        model's first layer, so exports and ``tk predict`` take raw features.
    :param standardize_target: regression: the model's last layer maps standardized
        outputs back to the target's units (training converges in a few hundred steps).
    :param inputs: how ``tk predict`` turns a user's file into model input: a
        :class:`toolkit.TableInputs` (CSV columns, one-hot categories, fill values) or
        :class:`toolkit.ImageInputs` (size, mode); a plain JSON-able mapping still works.
    :param notes: one-line remarks shown when training starts and kept in the run
        (e.g. ``"skipped 2 unreadable images"``).
    :param skipped: samples the loader left out (unreadable files, say).
    """

    feature_shape: tuple[int, ...] | None = None
    target: str | None = None
    num_classes: int | None = None
    class_names: Sequence[str] | None = None
    target_dim: int | None = None
    feature_scale: float | None = None
    feature_names: Sequence[str] | None = None
    standardize: bool | Sequence[int] = False
    standardize_target: bool = False
    inputs: Inputs | Mapping[str, Any] | None = None
    notes: Sequence[str] = ()
    skipped: int = 0


# The DataInfo fields that fill in a DatasetSpec.
_SPEC_FIELDS = frozenset(
    ("feature_shape", "target", "num_classes", "class_names", "target_dim", "feature_scale")
)


@dataclass(frozen=True)
class TrackerSpec:
    """An experiment tracker a plugin offers (``tk train ... --tracker NAME``).

    The factory returns a tracker object with four methods, called on rank 0 only:
    ``start(run_config)`` (the run's ``config.json`` plus ``"run_dir"``, an absolute
    path), ``log_metrics(epoch, metrics)`` once per epoch, ``log_artifact(path)`` per
    file worth keeping (the weights, exported files) and ``finish(summary)`` (the
    run's ``summary.json`` plus ``"status"``). An optional ``flush()`` is called after
    each batch of epochs, for trackers that send metrics in batches. Optional
    ``state()`` (where the tracker's copy of the run is, in ``RUN/trackers.json``),
    ``reopen(state)`` and ``delete()``: see ``toolkit.train.tracked``.

    :param name: unique name, used as ``--tracker NAME``.
    :param factory: ``factory(**options) -> tracker``; import the tracker's library
        inside the factory or ``start``, never at module level.
    :param options: declared options (strings on the command line, e.g. ``tracking_uri``).
    :param description: one line for ``tk list trackers``.
    :param requires: modules the tracker imports, checked (without importing them)
        before training starts, so a missing library is a usage error, not a warning.
    :param install: what to install when one of ``requires`` is missing.
    """

    name: str
    factory: Callable[..., Any]
    options: Sequence[Param] = ()
    description: str = ""
    requires: tuple[str, ...] = ()
    install: str = ""

    def resolve_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``given``, each value checked against its declared type."""
        return resolve_params(self.name, self.options, given)


@dataclass
class Source:
    """Where a spec came from: the entry point and its distribution."""

    entry_point: str
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"{self.distribution} {self.version} (entry point '{self.entry_point}')"


Spec = ModelSpec | DatasetSpec | TrackerSpec | ExportFormat
_KINDS: dict[type, str] = {ModelSpec: "model", DatasetSpec: "dataset", TrackerSpec: "tracker"}


class Registry:
    """All specs registered by the loaded plugins, by name; each kind has its own names."""

    def __init__(self) -> None:
        self.models: dict[str, ModelSpec] = {}
        self.datasets: dict[str, DatasetSpec] = {}
        self.trackers: dict[str, TrackerSpec] = {}
        # In registration order, which is detection order (tk's own first).
        self.formats: dict[str, ExportFormat] = {}
        self.sources: dict[tuple[str, str], Source] = {}

    def table(self, spec: Spec) -> tuple[str, dict[str, Any]]:
        """The kind of ``spec`` (``model``, ``dataset``, ``tracker``, ``format``) and its table."""
        if isinstance(spec, ExportFormat):
            return "format", self.formats
        kind = _KINDS[type(spec)]
        tables = {"model": self.models, "dataset": self.datasets, "tracker": self.trackers}
        return kind, tables[kind]

    def add(self, spec: Spec, source: Source) -> None:
        """Add a spec; a name that another distribution already registered is an error."""
        kind, table = self.table(spec)
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

    def tracker(self, name: str) -> TrackerSpec:
        """The tracker spec called ``name``, or a UsageError with a "did you mean"."""
        return self._get("tracker", self.trackers, name)

    def format(self, name: str) -> ExportFormat:
        """The export format called ``name`` (or one of its aliases), or a UsageError."""
        name = name.strip().lower()
        for fmt in self.formats.values():
            if name in (fmt.name, *fmt.aliases):
                return fmt
        raise UsageError(
            f"unknown export format {name!r}; choose from "
            f"{', '.join(self.formats) or '(none installed)'} or all",
            "tk list formats",
        )

    def source(self, kind: str, name: str) -> Source:
        """The distribution that registered a model, dataset, tracker or format."""
        return self.sources[(kind, name)]

    def _get(self, kind: str, table: Mapping[str, Any], name: str) -> Any:
        if name in table:
            return table[name]
        close = difflib.get_close_matches(name, list(table), n=1, cutoff=0.6)
        suggestion = f"; did you mean '{close[0]}'?" if close else ""
        if kind == "tracker" and not close:
            # Few trackers exist: naming them all is the most useful hint.
            suggestion = f"; allowed: {', '.join(sorted(table)) or '(none installed)'}"
        raise UsageError(f"unknown {kind} '{name}'{suggestion}", f"tk list {kind}s")
