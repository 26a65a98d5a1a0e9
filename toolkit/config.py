"""The training configuration: one flat dataclass, one comment per field."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from toolkit.errors import UsageError, check_number


@dataclass
class TrainConfig:
    """Everything ``tk train`` needs; unset fields (None) come from the model's recipe."""

    model: str | None = None  # registered model name (None only with resume: from the run)
    dataset: str | None = None  # registered dataset name; None: the model's default
    params: dict[str, Any] = field(default_factory=dict)  # model factory parameters
    data_params: dict[str, Any] = field(default_factory=dict)  # dataset loader parameters
    epochs: int | None = None  # passes over the training split
    batch_size: int | str | None = None  # rows per step; "full": whole split per step
    lr: float | None = None  # learning rate
    optimizer: str | None = None  # sgd | adam | adamw
    momentum: float | None = None  # SGD momentum
    weight_decay: float | None = None  # L2 penalty (decoupled for adamw)
    seed: int | None = None  # seeds torch and the data order; None: 42 (or the resumed run's)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every: int | None = None  # print the seed's line every N epochs; None: ~10 lines
    runs_dir: str = "runs"  # where runs/<model>/<name> directories go
    out: str | None = None  # exact run directory (overrides runs_dir/model/name)
    name: str | None = None  # run name; None: a timestamp
    overwrite: bool = False  # replace an existing run directory
    quiet: bool = False  # no per-epoch lines and no progress bar
    checkpoint_every: int = 0  # write a resumable checkpoint every N epochs (0: final only)
    keep_checkpoints: int = 3  # newest checkpoints kept on disk (0: all)
    resume: str | None = None  # run directory, "latest" or a checkpoint file to continue
    allow_config_change: bool = False  # resume even though the config differs
    grad_clip: float | None = None  # clip the gradient norm to this value
    init_weights: str | None = None  # start from these weights (.safetensors or .pt)
    # fp32 | bf16 (autocast) | fp16 (autocast + GradScaler); None: fp32 or the resumed run's
    precision: str | None = None
    compile: bool | None = None  # torch.compile the training forward; None: no, or the run's
    scheduler: str | None = None  # none | step | cosine | onecycle | plateau; None: the recipe's
    warmup_epochs: int | None = None  # linear lr warm-up before the schedule; None: the recipe's
    val_fraction: float | None = None  # training rows held out for validation; None: 0.1
    monitor: str | None = None  # what selects the model: val_loss | val_acc | val_mae
    early_stop: int | None = None  # stop after N epochs without improvement (None: never)
    min_delta: float | None = None  # the least change of the monitor that counts; None: 0
    workers: int = 0  # DataLoader worker processes for data streamed from disk
    strict_data: bool = False  # refuse unreadable samples instead of skipping them
    trackers: list[str] = field(default_factory=list)  # tensorboard, mlflow, ... (rank 0 only)
    tracking_uri: str | None = None  # MLflow store or server; None: sqlite in the runs root
    # tracker name -> its options: --tracker-param NAME.KEY=VALUE, [trackers.NAME] tables
    tracker_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    augment: str | None = None  # none | light | standard | a list (crop=0.8,rotate=10,...)
    pretrained: str | None = None  # weights name ("default": the model's own); None: scratch
    freeze: str | None = None  # "backbone": train the new head only
    unfreeze_at: int | None = None  # with --freeze: train everything from this epoch on
    head_lr: float | None = None  # the head's learning rate (None: --lr)
    threads: int | None = None  # torch intra-op threads on the CPU; None: chosen by model size

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly copy."""
        return asdict(self)

    @property
    def seed_value(self) -> int:
        """The seed in force (42 unless given)."""
        return 42 if self.seed is None else self.seed


# The range of each numeric field: (least value, must exceed it, largest value).
# NaN and infinities are refused for every one of them.
BOUNDS: dict[str, tuple[float, bool, float | None]] = {
    "epochs": (1, False, None),
    "batch_size": (1, False, None),
    "lr": (0, True, None),
    "momentum": (0, False, None),
    "weight_decay": (0, False, None),
    "seed": (0, False, 2**32 - 1),  # numpy's RandomState (the seeded splits) takes no more
    "log_every": (1, False, None),
    "checkpoint_every": (0, False, None),
    "keep_checkpoints": (0, False, None),
    "grad_clip": (0, True, None),
    "warmup_epochs": (0, False, None),
    "val_fraction": (0, True, 0.5),
    "early_stop": (1, False, None),
    "min_delta": (0, False, None),
    "workers": (0, False, None),
}
TUNE = "tune"  # the TOML table of tk tune's options
_KINDS = {"int": "a whole number", "float": "a number", "str": "a string", "bool": "true or false"}


def flag(name: str) -> str:
    """The command-line option of a TrainConfig field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def _kinds(name: str) -> set[str]:
    """The kinds a field's annotation allows (``int | None`` -> {"int", "None"})."""
    annotation = str(_FIELDS[name].type)
    return {part.strip().split("[")[0] for part in annotation.split("|")}


def check_value(name: str, value: Any, label: str) -> Any:
    """One field's value checked against its type and range; the value as the field
    holds it (an integer given for a float becomes a float). ``label`` names it in the
    error: ``--epochs``, or ``config file exp.toml: epochs``."""
    kinds = _kinds(name)
    if value is None:
        if "None" in kinds:
            return None
        raise UsageError(f"{label} must be set")
    if "dict" in kinds:
        if not isinstance(value, dict):
            raise UsageError(f"{label} must be a table of key = value pairs, got {value!r}")
        return value
    if "list" in kinds:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise UsageError(f"{label} must be a list of names, got {value!r}")
        return [v.strip() for v in items if v.strip()]
    if name == "batch_size" and isinstance(value, str):
        if value.strip().lower() == "full":
            return value
        if not value.strip().isdigit():
            raise UsageError(f"{label} must be a whole number or 'full', got {value!r}")
        value = int(value)
    value = _typed(value, kinds, label)
    if name in BOUNDS and isinstance(value, (int, float)):
        low, above, high = BOUNDS[name]
        check_number(label, value, low, above=above, high=high)
    return value


def _typed(value: Any, kinds: set[str], label: str) -> Any:
    if isinstance(value, bool):
        if "bool" in kinds:
            return value
    elif isinstance(value, int):
        if "int" in kinds:
            return value
        if "float" in kinds:
            return float(value)
    elif isinstance(value, float):
        if "float" in kinds:
            return value
    elif isinstance(value, str) and "str" in kinds:
        return value
    wanted = " or ".join(_KINDS[k] for k in sorted(kinds) if k in _KINDS)
    raise UsageError(f"{label} must be {wanted}, got {value!r}")


def check_config(config: TrainConfig) -> TrainConfig:
    """Every field of ``config`` checked (types and ranges, each named by its option),
    and options that contradict each other refused. Returns ``config``, normalised."""
    checked = {f: check_value(f, getattr(config, f), flag(f)) for f in _FIELDS}
    config = replace(config, **checked)
    if config.out is not None and config.name is not None:
        raise UsageError(
            f"--name {config.name} and --out {config.out} both say where the run goes",
            "--out DIR alone, or --name NAME alone",
        )
    return config


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a ``--config`` TOML file: top-level keys are TrainConfig fields, each value
    checked (type and range) and named by file and key when it is wrong.

    ``[params]`` and ``[data_params]`` tables hold factory parameters; a ``[tune]``
    table holds ``tk tune``'s options (checked there; ``tk train`` ignores it).
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"config file not found: {p}", "check the --config path")
    try:
        data = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"config file {p} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(_FIELDS) - {TUNE})
    if unknown:
        raise UsageError(
            f"config file {p}: unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted([*_FIELDS, TUNE]))}"
        )
    if TUNE in data and not isinstance(data[TUNE], dict):
        raise UsageError(f"config file {p}: [{TUNE}] must be a table (tk tune's options)")
    if isinstance(data.get("trackers"), dict):
        data = {**data, **_tracker_tables(data["trackers"], p)}
    return {
        key: value if key == TUNE else check_value(key, value, f"config file {p}: {key}")
        for key, value in data.items()
    }


def given(value: Any, fallback: Any) -> Any:
    """The one precedence rule: ``value`` when it was given, else ``fallback``.

    Not given is None and only None: every option's parsed default is None (on/off
    flags too: ``--compile/--no-compile``), so False, 0 and "" given on the command
    line win over a TOML file, a model's recipe and a resumed run's values alike.
    """
    return fallback if value is None else value


def _tracker_tables(tables: dict[str, Any], path: Path) -> dict[str, Any]:
    """``[trackers.NAME]`` tables: each selects tracker NAME with its options (checked
    against the tracker's declared options when the run starts)."""
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise UsageError(
                f"config file {path}: trackers.{name} must be a table of the tracker's options",
                f'[trackers.{name}] with KEY = VALUE lines, or trackers = ["{name}"]',
            )
    return {"trackers": list(tables), "tracker_params": tables}


def split_tracker_params(pairs: dict[str, str], label: str) -> dict[str, dict[str, Any]]:
    """``{"tensorboard.log_dir": "tb"}`` -> ``{"tensorboard": {"log_dir": "tb"}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in pairs.items():
        name, dot, option = key.partition(".")
        if not dot or not name.strip() or not option.strip():
            raise UsageError(
                f"{label} expects NAME.KEY=VALUE, got {key}={value}",
                f"{label} tensorboard.log_dir=tb",
            )
        out.setdefault(name.strip(), {})[option.strip()] = value
    return out


def tracker_options(config: TrainConfig) -> dict[str, Any]:
    """The options :func:`toolkit.train.trackers.check_trackers` takes: ``tracking_uri``
    for every tracker declaring it, then ``NAME.KEY`` for one tracker."""
    options: dict[str, Any] = {"tracking_uri": config.tracking_uri}
    for name, table in config.tracker_params.items():
        options.update({f"{name}.{key}": value for key, value in table.items()})
    return options


def merge(
    toml: dict[str, Any],
    flags: dict[str, Any],
    params: dict[str, str],
    data_params: dict[str, str],
    tracker_params: dict[str, dict[str, Any]] | None = None,
) -> TrainConfig:
    """A checked TrainConfig from a ``--config`` file's values with the command line's on top.

    A flag counts as given unless it is None (:func:`given`), so a TOML value holds
    until the command line names that option, and ``--no-compile`` or ``--min-delta 0``
    beat the file. ``--param`` and ``--data-param`` pairs are merged key by key into
    the TOML's tables, and ``--tracker-param`` pairs into its ``[trackers.NAME]`` tables
    (a ``--tracker`` list replaces the file's trackers, and their tables with them).
    Fields neither names keep the dataclass defaults.
    """
    tables = ("params", "data_params", "tracker_params", TUNE)
    values = {k: v for k, v in toml.items() if k not in tables}
    for key, value in flags.items():
        values[key] = given(value, values.get(key))
    values = {k: v for k, v in values.items() if v is not None}
    chosen = values.get("trackers") or []
    chosen = {n.strip() for item in ([chosen] if isinstance(chosen, str) else chosen)
              for n in str(item).split(",")}  # fmt: skip
    merged = {n: dict(t) for n, t in toml.get("tracker_params", {}).items() if n in chosen}
    for name, table in (tracker_params or {}).items():
        merged.setdefault(name, {}).update(table)
    values["tracker_params"] = merged
    values["params"] = {**toml.get("params", {}), **params}
    values["data_params"] = {**toml.get("data_params", {}), **data_params}
    return check_config(TrainConfig(**values))


_FIELDS = {f.name: f for f in fields(TrainConfig)}
