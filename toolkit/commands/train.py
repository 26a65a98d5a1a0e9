"""``tk train``: parse the options, merge them with ``--config``, call ``toolkit.train.train``.

Several processes (``--nproc``, ``--max-restarts``) go through torchrun, which runs
this same command in each worker.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from toolkit.commands.common import parse_kv
from toolkit.errors import TkError, UsageError

ModelOpt = Annotated[
    str | None, typer.Argument(help="Registered model name (see `tk list models`).")
]
DatasetOpt = Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset name.")]
EpochsOpt = Annotated[int | None, typer.Option(help="Epochs (default: the recipe's).")]
BatchSizeOpt = Annotated[
    str | None, typer.Option("--batch-size", "-b", help="Rows per step, or 'full'.")
]
LrOpt = Annotated[float | None, typer.Option(help="Learning rate.")]
OptimizerOpt = Annotated[str | None, typer.Option(help="sgd, adam or adamw.")]
MomentumOpt = Annotated[float | None, typer.Option(help="SGD momentum.")]
WeightDecayOpt = Annotated[float | None, typer.Option(help="Weight decay.")]
SeedOpt = Annotated[int | None, typer.Option(help="Random seed (default 42).")]
DeviceOpt = Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N (default auto).")]
ParamOpt = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="Model parameter key=value.")
]
DataParamOpt = Annotated[
    list[str] | None, typer.Option("--data-param", help="Dataset parameter key=value.")
]
DataDirOpt = Annotated[str | None, typer.Option(help="Directory with local dataset files.")]
ConfigOpt = Annotated[
    str | None, typer.Option("--config", "-c", help="TOML file of these options.")
]
OutOpt = Annotated[str | None, typer.Option(help="Exact run directory to create.")]
NameOpt = Annotated[str | None, typer.Option(help="Run name under runs/MODEL/.")]
RunsDirOpt = Annotated[str | None, typer.Option(help="Root of run directories (default runs).")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace an existing run directory.")]
LogEveryOpt = Annotated[int | None, typer.Option(help="Print a line every N epochs.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")]
CheckpointEveryOpt = Annotated[
    int | None,
    typer.Option(help="Write a resumable checkpoint every N epochs (default 0: final only)."),
]
KeepCheckpointsOpt = Annotated[
    int | None, typer.Option(help="Newest checkpoints kept on disk (default 3; 0: all).")
]
ResumeOpt = Annotated[
    str | None,
    typer.Option(help="Continue a run exactly: 'latest', a run directory or a checkpoint."),
]
AllowConfigChangeOpt = Annotated[
    bool, typer.Option(help="Resume even though options differ from the run's.")
]
GradClipOpt = Annotated[
    float | None, typer.Option(help="Clip the total gradient norm to this value.")
]
InitWeightsOpt = Annotated[
    str | None, typer.Option(help="Start from these weights (.safetensors or .pt).")
]
PlotOpt = Annotated[
    bool, typer.Option("--plot", help="Draw the run's pictures (PNG) after training.")
]
NprocOpt = Annotated[
    int, typer.Option(help="Processes on this machine, launched through torchrun (DDP).")
]
MaxRestartsOpt = Annotated[
    int, typer.Option(help="torchrun restarts after a worker fails; resumes from checkpoints.")
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(help="fp32 (default), bf16 (autocast) or fp16 (autocast + GradScaler, CUDA)."),
]
CompileOpt = Annotated[bool, typer.Option(help="torch.compile the training forward.")]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(help="Learning-rate schedule: none, step, cosine, onecycle or plateau."),
]
WarmupEpochsOpt = Annotated[
    int | None, typer.Option(help="Epochs of linear lr warm-up before the schedule.")
]
ValFractionOpt = Annotated[
    float | None,
    typer.Option(help="Training rows held out for validation, in (0, 0.5] (default 0.1)."),
]
MonitorOpt = Annotated[
    str | None,
    typer.Option(help="What selects the model: val_loss (default), val_acc or val_mae."),
]
EarlyStopOpt = Annotated[
    int | None,
    typer.Option(help="Stop after this many epochs without improvement of the monitor."),
]
MinDeltaOpt = Annotated[
    float | None, typer.Option(help="The least change of the monitor that counts (default 0).")
]
WorkersOpt = Annotated[
    int | None, typer.Option(help="DataLoader workers for data streamed from disk (default 0).")
]
TrackerOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tracker", help="tensorboard, mlflow, ... (repeat or comma-separate; tk list trackers)."
    ),
]
TrackingUriOpt = Annotated[
    str | None,
    typer.Option(help="MLflow server or store (default sqlite:///RUNS/mlflow.db)."),
]
StrictDataOpt = Annotated[
    bool, typer.Option(help="Refuse unreadable samples instead of skipping them.")
]


def train(
    model: ModelOpt = None,
    dataset: DatasetOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchSizeOpt = None,
    lr: LrOpt = None,
    optimizer: OptimizerOpt = None,
    momentum: MomentumOpt = None,
    weight_decay: WeightDecayOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    param: ParamOpt = None,
    data_param: DataParamOpt = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    out: OutOpt = None,
    name: NameOpt = None,
    runs_dir: RunsDirOpt = None,
    overwrite: OverwriteOpt = False,
    log_every: LogEveryOpt = None,
    quiet: QuietOpt = False,
    checkpoint_every: CheckpointEveryOpt = None,
    keep_checkpoints: KeepCheckpointsOpt = None,
    resume: ResumeOpt = None,
    allow_config_change: AllowConfigChangeOpt = False,
    grad_clip: GradClipOpt = None,
    init_weights: InitWeightsOpt = None,
    plot: PlotOpt = False,
    nproc: NprocOpt = 1,
    max_restarts: MaxRestartsOpt = 0,
    precision: PrecisionOpt = None,
    compile: CompileOpt = False,
    scheduler: SchedulerOpt = None,
    warmup_epochs: WarmupEpochsOpt = None,
    val_fraction: ValFractionOpt = None,
    monitor: MonitorOpt = None,
    early_stop: EarlyStopOpt = None,
    min_delta: MinDeltaOpt = None,
    workers: WorkersOpt = None,
    strict_data: StrictDataOpt = False,
    tracker: TrackerOpt = None,
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Train MODEL on its default dataset (or --dataset) with the shared loop.

    Ctrl-C or SIGTERM stops after the current step, writes a checkpoint and tells
    how to resume (`tk train --resume latest`).
    """
    flags = dict(locals())  # every option above, by name: TrainConfig fields and the rest
    plot, nproc, max_restarts = flags.pop("plot"), flags.pop("nproc"), flags.pop("max_restarts")
    train_command(flags, plot=plot, nproc=nproc, max_restarts=max_restarts)


def train_command(flags: dict[str, Any], *, plot: bool, nproc: int, max_restarts: int) -> None:
    """The command's work: one TrainConfig, then torchrun or the loop, then the pictures."""
    from toolkit import distributed
    from toolkit.config import load_toml, merge

    path = flags.pop("config")
    toml = load_toml(path) if path else {}
    params = parse_kv(flags.pop("param"), "--param")
    data_params = parse_kv(flags.pop("data_param"), "--data-param")
    data_dir = flags.pop("data_dir")
    if data_dir is not None:
        data_params["data_dir"] = data_dir
    flags["runs_dir"] = flags["runs_dir"] or os.environ.get("TK_RUNS_DIR")
    flags["trackers"] = flags.pop("tracker") or None  # None: the TOML's, if any
    config = merge(toml, flags, params, data_params)
    if (nproc > 1 or max_restarts > 0) and not distributed.requested():
        _launch_distributed(config, nproc, max_restarts)
        return
    from toolkit.train import train as run_training

    result = run_training(config)
    if plot and result.summary:
        from toolkit.plot import plot_run

        for written in plot_run(result.run_dir, model=result.model):
            if not config.quiet:
                typer.echo(f"Plot: {written}")
    if distributed.requested():
        # A torchrun worker that is done leaves at once: tearing down gloo's
        # threads at interpreter exit aborted a worker now and then ("terminate
        # called without an active exception"), which failed the finished job.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _launch_distributed(config: Any, nproc: int, max_restarts: int) -> None:
    """Validate in this process (fast, one-line errors), then hand over to torchrun."""
    from toolkit import distributed
    from toolkit.plugins import get_registry
    from toolkit.train.plan import resolve

    worker_argv = distributed.strip_launcher_args(sys.argv[1:])
    if worker_argv and worker_argv[0] != "train":
        worker_argv = ["train", *worker_argv]
    if not config.resume:
        if not config.model:
            raise UsageError("no model given", "tk train MODEL, or tk train --resume RUN")
        plan = resolve(config, get_registry())
        if config.out is None:
            # Every rank, and every restart, must agree on one run directory.
            worker_argv += ["--out", str(plan.run_dir)]
    if max_restarts > 0 and not config.checkpoint_every:
        # A restart resumes from the last checkpoint: write one every epoch.
        worker_argv += ["--checkpoint-every", "1"]
    code = distributed.launch(worker_argv, nproc, max_restarts)
    if code != 0:
        raise TkError(f"distributed training failed (torchrun exit code {code})")


def register(app: typer.Typer) -> None:
    """Add ``tk train`` to the tk app."""
    app.command("train")(train)
