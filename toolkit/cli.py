"""The ``tk`` command line: thin Typer wrappers, each calling one library function.

Startup promise: ``tk --help``, ``tk list`` and ``tk plugins`` never import torch,
onnx or torchvision; heavy imports live inside the functions that need them.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Annotated, Any

import typer

from toolkit.errors import EXIT_USAGE, TkError, UsageError

EPILOG = (
    "Exit codes: 0 ok, 1 runtime failure or verification mismatch, 2 usage or bad "
    "input, 3 export or load failure, 130 interrupted, 143 terminated. "
    "TK_DEBUG=1 shows tracebacks."
)

app = typer.Typer(
    name="tk",
    help="Train, export and verify PyTorch models from plugins.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
list_app = typer.Typer(help="List registered models or datasets.", no_args_is_help=True)
app.add_typer(list_app, name="list")
plugins_app = typer.Typer(
    help="Show installed plugins: version, status and what each registered.",
    invoke_without_command=True,
)
app.add_typer(plugins_app, name="plugins")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _emit_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _parse_kv(items: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} expects key=value, got {item!r}", f"{flag} hidden=16")
        out[key.strip()] = value.strip()
    return out


# ---------------------------------------------------------------------- train
@app.command()
def train(
    model: Annotated[
        str | None, typer.Argument(help="Registered model name (see `tk list models`).")
    ] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset name.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: the recipe's).")] = None,
    batch_size: Annotated[
        str | None, typer.Option("--batch-size", "-b", help="Rows per step, or 'full'.")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd, adam or adamw.")] = None,
    momentum: Annotated[float | None, typer.Option(help="SGD momentum.")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 42).")] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or cuda:N (default auto).")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Model parameter key=value.")
    ] = None,
    data_param: Annotated[
        list[str] | None, typer.Option("--data-param", help="Dataset parameter key=value.")
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="Directory with local dataset files.")
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="TOML file of these options.")
    ] = None,
    out: Annotated[str | None, typer.Option(help="Exact run directory to create.")] = None,
    name: Annotated[str | None, typer.Option(help="Run name under runs/MODEL/.")] = None,
    runs_dir: Annotated[
        str | None, typer.Option(help="Root of run directories (default runs).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory.")] = False,
    log_every: Annotated[int | None, typer.Option(help="Print a line every N epochs.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
    checkpoint_every: Annotated[
        int, typer.Option(help="Write a resumable checkpoint every N epochs (0: final only).")
    ] = 0,
    keep_checkpoints: Annotated[
        int, typer.Option(help="Newest checkpoints kept on disk (0: all).")
    ] = 3,
    resume: Annotated[
        str | None,
        typer.Option(help="Continue a run exactly: 'latest', a run directory or a checkpoint."),
    ] = None,
    allow_config_change: Annotated[
        bool, typer.Option(help="Resume even though options differ from the run's.")
    ] = False,
    grad_clip: Annotated[
        float | None, typer.Option(help="Clip the total gradient norm to this value.")
    ] = None,
    init_weights: Annotated[
        str | None, typer.Option(help="Start from these weights (.safetensors or .pt).")
    ] = None,
    plot: Annotated[
        bool, typer.Option("--plot", help="Draw the run's pictures (PNG) after training.")
    ] = False,
    nproc: Annotated[
        int, typer.Option(help="Processes on this machine, launched through torchrun (DDP).")
    ] = 1,
    max_restarts: Annotated[
        int, typer.Option(help="torchrun restarts after a worker fails; resumes from checkpoints.")
    ] = 0,
    precision: Annotated[
        str, typer.Option(help="fp32, bf16 (autocast) or fp16 (autocast + GradScaler, CUDA).")
    ] = "fp32",
    compile: Annotated[bool, typer.Option(help="torch.compile the training forward.")] = False,
) -> None:
    """Train MODEL on its default dataset (or --dataset) with the shared loop.

    Ctrl-C or SIGTERM stops after the current step, writes a checkpoint and tells
    how to resume (`tk train --resume latest`).
    """
    from toolkit.config import TrainConfig, load_toml

    base: dict[str, Any] = load_toml(config) if config else {}
    base.setdefault("params", {})
    base.setdefault("data_params", {})
    base["params"] = {**base["params"], **_parse_kv(param, "--param")}
    base["data_params"] = {**base["data_params"], **_parse_kv(data_param, "--data-param")}
    if data_dir is not None:
        base["data_params"]["data_dir"] = data_dir
    cli = {
        "dataset": dataset,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": optimizer,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "seed": seed,
        "device": device,
        "out": out,
        "name": name,
        "runs_dir": runs_dir or os.environ.get("TK_RUNS_DIR"),
        "log_every": log_every,
        "resume": resume,
        "grad_clip": grad_clip,
        "init_weights": init_weights,
    }
    base.update({k: v for k, v in cli.items() if v is not None})
    base["model"] = model
    base["overwrite"] = overwrite or bool(base.get("overwrite", False))
    base["quiet"] = quiet or bool(base.get("quiet", False))
    base["checkpoint_every"] = checkpoint_every or int(base.get("checkpoint_every", 0))
    base["keep_checkpoints"] = keep_checkpoints
    base["allow_config_change"] = allow_config_change
    base["precision"] = precision if precision != "fp32" else base.get("precision", "fp32")
    base["compile"] = compile or bool(base.get("compile", False))
    from toolkit import distributed

    if (nproc > 1 or max_restarts > 0) and not distributed.requested():
        _launch_distributed(TrainConfig(**base), nproc, max_restarts)
        return
    from toolkit.train import train as run_training

    result = run_training(TrainConfig(**base))
    if plot and result.summary:
        from toolkit.plot import plot_run

        for written in plot_run(result.run_dir, model=result.model):
            if not base["quiet"]:
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
    from toolkit.train import resolve

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


# ----------------------------------------------------------------------- list
@list_app.command("models")
def list_models(json_: JsonOpt = False) -> None:
    """Registered models: name, task, input, default dataset, plugin."""
    from toolkit.plugins import get_registry

    reg = get_registry()
    rows = []
    for name in sorted(reg.models):
        m = reg.models[name]
        src = reg.source("model", name)
        rows.append(
            {
                "name": name,
                "task": m.task,
                "input": list(m.input.shape),
                "dataset": m.default_dataset,
                "plugin": src.distribution,
                "description": m.description,
            }
        )
    if json_:
        _emit_json(rows)
        return
    table = [
        [
            r["name"],
            r["task"],
            "x".join(map(str, r["input"])),
            r["dataset"] or "-",
            r["plugin"],
            r["description"],
        ]
        for r in rows
    ]
    typer.echo(_table(table, ["NAME", "TASK", "INPUT", "DATASET", "PLUGIN", "DESCRIPTION"]))


@list_app.command("datasets")
def list_datasets(json_: JsonOpt = False) -> None:
    """Registered datasets: name, target kind, classes, feature shape, plugin."""
    from toolkit.plugins import get_registry

    reg = get_registry()
    rows = []
    for name in sorted(reg.datasets):
        d = reg.datasets[name]
        rows.append(
            {
                "name": name,
                "target": d.target,
                "classes": d.num_classes,
                "features": list(d.feature_shape),
                "plugin": reg.source("dataset", name).distribution,
                "description": d.description,
            }
        )
    if json_:
        _emit_json(rows)
        return
    table = [
        [
            r["name"],
            r["target"],
            r["classes"] or "-",
            "x".join(map(str, r["features"])),
            r["plugin"],
            r["description"],
        ]
        for r in rows
    ]
    typer.echo(_table(table, ["NAME", "TARGET", "CLASSES", "FEATURES", "PLUGIN", "DESCRIPTION"]))


# ----------------------------------------------------------------------- info
@app.command()
def info(
    name: Annotated[str, typer.Argument(help="A model or dataset name.")],
    json_: JsonOpt = False,
) -> None:
    """Everything a spec declares: parameters, input, task, default recipe."""
    from toolkit.plugins import get_registry

    reg = get_registry()
    if name in reg.models:
        m = reg.models[name]
        src = reg.source("model", name)
        obj = {
            "kind": "model",
            "name": m.name,
            "description": m.description,
            "task": m.task,
            "input": m.input.to_json(),
            "default_dataset": m.default_dataset,
            "params": [p.to_json() for p in m.params],
            "recipe": m.recipe.to_json(),
            "tolerance": {"atol": m.tolerance.atol, "rtol": m.tolerance.rtol},
            "plugin": {"distribution": src.distribution, "version": src.version},
        }
    elif name in reg.datasets:
        d = reg.datasets[name]
        src = reg.source("dataset", name)
        obj = {
            "kind": "dataset",
            "name": d.name,
            "description": d.description,
            "target": d.target,
            "num_classes": d.num_classes,
            "class_names": list(d.class_names) if d.class_names else None,
            "feature_shape": list(d.feature_shape),
            "splits": list(d.splits),
            "params": [p.to_json() for p in d.params],
            "plugin": {"distribution": src.distribution, "version": src.version},
        }
    else:
        reg.model(name)  # raises with "did you mean"
        return
    if json_:
        _emit_json(obj)
        return
    for key, value in obj.items():
        if key == "params":
            typer.echo("params:" + ("" if value else " (none)"))
            for p in value:
                extra = f"  {p['help']}" if p.get("help") else ""
                typer.echo(f"  {p['name']}: {p['type']} = {p['default']!r}{extra}")
        elif isinstance(value, dict):
            typer.echo(f"{key}: " + ", ".join(f"{k}={v}" for k, v in value.items()))
        else:
            typer.echo(f"{key}: {value}")


# -------------------------------------------------------------------- plugins
@plugins_app.callback()
def plugins(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """Installed plugins: distribution, version, status and what each registered."""
    if ctx.invoked_subcommand is not None:
        return
    from toolkit.plugins import loaded

    rows = [p.to_json() for p in loaded().plugins]
    if json_:
        _emit_json(rows)
        return
    if not rows:
        typer.echo("no plugins loaded (TK_LOAD_PLUGINS may exclude them)")
        return
    table = []
    for r in rows:
        registered = ", ".join(r["models"] + r["datasets"]) or "-"
        status = r["status"] if r["status"] == "ok" else f"failed: {r['error']}"
        table.append([r["entry_point"], r["distribution"], r["version"], status, registered])
    typer.echo(_table(table, ["PLUGIN", "DISTRIBUTION", "VERSION", "STATUS", "REGISTERED"]))


# Further commands live in toolkit/commands/<name>.py, each with a
# ``register(app)`` function; importing them stays cheap (no torch at import).
COMMAND_MODULES: list[str] = [
    "toolkit.commands.plugin_tools",
    "toolkit.commands.export",
    "toolkit.commands.plot",
]

for _mod in COMMAND_MODULES:
    importlib.import_module(_mod).register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``tk`` console script."""
    try:
        app(args=argv, prog_name="tk")
    except TkError as exc:
        if os.environ.get("TK_DEBUG", "") not in ("", "0"):
            raise
        print(f"tk: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("tk: interrupted", file=sys.stderr)
        sys.exit(130)
    except ValueError as exc:  # e.g. click's bad parameter that slipped through
        if os.environ.get("TK_DEBUG", "") not in ("", "0"):
            raise
        print(f"tk: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    finally:
        if argv is None and "torch" in sys.modules:
            # torch._dynamo and sympy make the interpreter's final collections take
            # ~0.7 s; frozen objects are skipped (atexit and file closing still run).
            import gc

            gc.freeze()
