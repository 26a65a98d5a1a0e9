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
from toolkit.errors import TkError, UsageError, check_number

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
# On/off options default to None (not given), so --no-compile can beat a TOML
# file's compile = true: see toolkit.config.given.
OverwriteOpt = Annotated[
    bool | None,
    typer.Option(
        "--overwrite/--no-overwrite",
        help="Replace an existing tk run directory (never any other folder).",
    ),
]
LogEveryOpt = Annotated[int | None, typer.Option(help="Print a line every N epochs.")]
QuietOpt = Annotated[bool | None, typer.Option("--quiet/--no-quiet", "-q", help="Only errors.")]
CheckpointEveryOpt = Annotated[
    int | None,
    typer.Option(help="Write a resumable checkpoint every N epochs (default 0: final only)."),
]
KeepCheckpointsOpt = Annotated[
    int | None, typer.Option(help="Newest checkpoints kept on disk (default 3; 0: all).")
]
ResumeOpt = Annotated[
    str | None,
    typer.Option(
        help="Continue a run exactly: 'latest' (the newest run, also one cut off), a run "
        "directory or a checkpoint. A finished run only with a larger --epochs (extends it)."
    ),
]
AllowConfigChangeOpt = Annotated[
    bool | None,
    typer.Option(
        "--allow-config-change/--no-allow-config-change",
        help="Resume even though options differ from the run's.",
    ),
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
    typer.Option(help="fp32 (default), bf16 (autocast) or fp16 (autocast + GradScaler)."),
]
CompileOpt = Annotated[
    bool | None, typer.Option("--compile/--no-compile", help="torch.compile the training forward.")
]
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
TrackerParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tracker-param",
        help="NAME.KEY=VALUE: an option of a selected tracker (repeat; tk info NAME).",
    ),
]
TrackingUriOpt = Annotated[
    str | None,
    typer.Option(help="MLflow server or store (default sqlite:///RUNS/mlflow.db)."),
]
StrictDataOpt = Annotated[
    bool | None,
    typer.Option(
        "--strict-data/--no-strict-data", help="Refuse unreadable samples instead of skipping them."
    ),
]
AugmentOpt = Annotated[
    str | None,
    typer.Option(
        help="Augment training images: none, light, standard, or a list such as "
        "crop=0.8,flip,rotate=10,color=0.2,trivial,erase=0.25,mixup=0.2,cutmix=1.0 "
        "(presets never flip)."
    ),
]
PretrainedOpt = Annotated[
    str | None,
    typer.Option(
        help="Start from pretrained weights (bare: the model's default; or a weights name), "
        "read from the local cache (TORCH_HOME / HF_HOME)."
    ),
]
FreezeOpt = Annotated[
    str | None, typer.Option(help="'backbone': train the head only (see --unfreeze-at).")
]
UnfreezeAtOpt = Annotated[
    int | None, typer.Option(help="With --freeze: train every layer from this epoch on.")
]
HeadLrOpt = Annotated[float | None, typer.Option(help="The head's learning rate (default --lr).")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(help="torch threads on the CPU (default: 1 for small models, all cores else)."),
]
# `--pretrained` may stand alone (the model's default weights): typer options always
# take a value, so a bare one is given this value before parsing.
PRETRAINED_DEFAULT = "default"


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
    overwrite: OverwriteOpt = None,
    log_every: LogEveryOpt = None,
    quiet: QuietOpt = None,
    checkpoint_every: CheckpointEveryOpt = None,
    keep_checkpoints: KeepCheckpointsOpt = None,
    resume: ResumeOpt = None,
    allow_config_change: AllowConfigChangeOpt = None,
    grad_clip: GradClipOpt = None,
    init_weights: InitWeightsOpt = None,
    plot: PlotOpt = False,
    nproc: NprocOpt = 1,
    max_restarts: MaxRestartsOpt = 0,
    precision: PrecisionOpt = None,
    compile: CompileOpt = None,
    scheduler: SchedulerOpt = None,
    warmup_epochs: WarmupEpochsOpt = None,
    val_fraction: ValFractionOpt = None,
    monitor: MonitorOpt = None,
    early_stop: EarlyStopOpt = None,
    min_delta: MinDeltaOpt = None,
    workers: WorkersOpt = None,
    strict_data: StrictDataOpt = None,
    tracker: TrackerOpt = None,
    tracker_param: TrackerParamOpt = None,
    tracking_uri: TrackingUriOpt = None,
    augment: AugmentOpt = None,
    pretrained: PretrainedOpt = None,
    freeze: FreezeOpt = None,
    unfreeze_at: UnfreezeAtOpt = None,
    head_lr: HeadLrOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Train MODEL on its default dataset (or --dataset) with the shared loop.

    Ctrl-C or SIGTERM stops after the current step, writes a checkpoint and tells
    how to resume (`tk train --resume latest`: runs/latest names the newest run,
    also one cut off).
    """
    flags = dict(locals())  # every option above, by name: TrainConfig fields and the rest
    plot, nproc, max_restarts = flags.pop("plot"), flags.pop("nproc"), flags.pop("max_restarts")
    train_command(flags, plot=plot, nproc=nproc, max_restarts=max_restarts)


def train_command(flags: dict[str, Any], *, plot: bool, nproc: int, max_restarts: int) -> None:
    """The command's work: one TrainConfig, then torchrun or the loop, then the pictures."""
    from toolkit import distributed

    config, _tune_table = config_from_flags(flags)
    check_number("--nproc", nproc, 1)
    check_number("--max-restarts", max_restarts, 0)
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


def config_from_flags(flags: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """tk train's options over their ``--config`` file as one checked TrainConfig, and
    the file's ``[tune]`` table (``tk tune`` reads it; training ignores it)."""
    from toolkit.config import TUNE, load_toml, merge, split_tracker_params

    flags = dict(flags)  # a command may leave some options out (tk lr-find does)
    path = flags.pop("config", None)
    toml = load_toml(path) if path else {}
    params = parse_kv(flags.pop("param", None), "--param")
    data_params = parse_kv(flags.pop("data_param", None), "--data-param")
    data_dir = flags.pop("data_dir", None)
    if data_dir is not None:
        data_params["data_dir"] = data_dir
    flags["runs_dir"] = flags.get("runs_dir") or os.environ.get("TK_RUNS_DIR")
    flags["trackers"] = flags.pop("tracker", None) or None  # None: the TOML's, if any
    pairs = parse_kv(flags.pop("tracker_param", None), "--tracker-param")
    tracker_params = split_tracker_params(pairs, "--tracker-param")
    return merge(toml, flags, params, data_params, tracker_params), toml.get(TUNE, {})


def _launch_distributed(config: Any, nproc: int, max_restarts: int) -> None:
    """Validate in this process (fast, one-line errors), then hand over to torchrun."""
    from toolkit import distributed
    from toolkit.plugins import get_registry
    from toolkit.runs.replace import check_target
    from toolkit.train.plan import resolve

    worker_argv = distributed.strip_launcher_args(sys.argv[1:])
    if worker_argv and worker_argv[0] != "train":
        worker_argv = ["train", *worker_argv]
    if not config.resume:
        if not config.model:
            raise UsageError("no model given", "tk train MODEL, or tk train --resume RUN")
        plan = resolve(config, get_registry())
        check_target(plan.run_dir, config.overwrite, config.runs_dir)
        if config.out is None:
            # Every rank, and every restart, must agree on one run directory (which
            # --name chose: the workers get it as --out, and --name beside it is refused).
            worker_argv = distributed.strip_launcher_args(worker_argv, ("--name",))
            worker_argv += ["--out", str(plan.run_dir)]
    if max_restarts > 0 and not config.checkpoint_every:
        # A restart resumes from the last checkpoint: write one every epoch.
        worker_argv += ["--checkpoint-every", "1"]
    code = distributed.launch(worker_argv, nproc, max_restarts)
    if code != 0:
        raise TkError(f"distributed training failed (torchrun exit code {code})")


def bare_options(argv: list[str]) -> list[str]:
    """``tk train ... --pretrained`` with no value (last, or before another option)
    becomes ``--pretrained default``; other commands' arguments are left alone."""
    if not argv or argv[0] != "train" or "--pretrained" not in argv:
        return argv
    out: list[str] = []
    for i, arg in enumerate(argv):
        out.append(arg)
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if arg == "--pretrained" and (nxt is None or nxt.startswith("-")):
            out.append(PRETRAINED_DEFAULT)
    return out


def register(app: typer.Typer) -> None:
    """Add ``tk train`` to the tk app."""
    app.command("train")(train)
