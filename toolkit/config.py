"""The training configuration: one flat dataclass, one comment per field."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from toolkit.errors import UsageError


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
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (autocast + GradScaler, CUDA)
    compile: bool = False  # torch.compile the training forward
    scheduler: str | None = None  # none | step | cosine | onecycle | plateau; None: the recipe's
    warmup_epochs: int | None = None  # linear lr warm-up before the schedule; None: the recipe's
    val_fraction: float | None = None  # training rows held out for validation; None: 0.1
    monitor: str | None = None  # what selects the model: val_loss | val_acc | val_mae
    early_stop: int | None = None  # stop after N epochs without improvement (None: never)
    min_delta: float = 0.0  # the least change of the monitor that counts as improvement
    workers: int = 0  # DataLoader worker processes for data streamed from disk
    strict_data: bool = False  # refuse unreadable samples instead of skipping them
    trackers: list[str] = field(default_factory=list)  # tensorboard, mlflow, ... (rank 0 only)
    tracking_uri: str | None = None  # MLflow store or server; None: sqlite in the runs root

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly copy."""
        return asdict(self)

    @property
    def seed_value(self) -> int:
        """The seed in force (42 unless given)."""
        return 42 if self.seed is None else self.seed


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a ``--config`` TOML file: top-level keys are TrainConfig fields.

    ``[params]`` and ``[data_params]`` tables hold factory parameters.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"config file not found: {p}", "check the --config path")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {p} is not valid TOML: {exc}") from None
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(
            f"config file {p}: unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(known))}"
        )
    return data


def merge(
    toml: dict[str, Any], flags: dict[str, Any], params: dict[str, str], data_params: dict[str, str]
) -> TrainConfig:
    """A TrainConfig from a ``--config`` file's values with the command line's on top.

    A flag counts as given unless it is None (or False for on/off flags), so a
    TOML value holds until the command line names that option. ``--param`` and
    ``--data-param`` pairs are merged key by key into the TOML's tables.
    """
    values = {k: v for k, v in toml.items() if k not in ("params", "data_params")}
    for key, value in flags.items():
        if value is not None and value is not False:
            values[key] = value
    values["params"] = {**toml.get("params", {}), **params}
    values["data_params"] = {**toml.get("data_params", {}), **data_params}
    return TrainConfig(**values)
