"""``tk tune MODEL [tk train options] --space NAME=SPEC ...`` and ``tk tune show STUDY``.

``tk tune`` takes every ``tk train`` option (the same declarations: see
``with_options_of``) as the configuration a search starts from, except those that
name or place a single run. optuna loads only when a command runs.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from toolkit.commands import train as train_cmd
from toolkit.commands.common import (
    JsonOpt,
    RunsDirOpt,
    emit_json,
    resolve_runs_dir,
    with_options_of,
)

SpaceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--space",
        "-s",
        help="NAME=SPEC, repeatable: NAME a train option (lr, batch-size, ...), param.NAME or "
        "data.NAME; SPEC log(a,b), float(a,b), int(a,b) or choice(x,y,z).",
    ),
]
TrialsOpt = Annotated[int | None, typer.Option(help="Trials in the study (default 20).")]
TimeoutOpt = Annotated[
    str | None, typer.Option(help="Start no trial after this long: 90s, 10m, 2h.")
]
JobsOpt = Annotated[
    int, typer.Option(help="Trials at once on this machine, as processes sharing its cores.")
]
SamplerOpt = Annotated[str | None, typer.Option(help="tpe (default), random, grid or cmaes.")]
PrunerOpt = Annotated[str | None, typer.Option(help="median (default), hyperband or none.")]
StudyOpt = Annotated[
    str | None,
    typer.Option(help="Study name (default MODEL-tune); an existing study is continued."),
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        help="Optuna storage URL (default $TK_TUNE_STORAGE, else sqlite:///RUNS/tune.db)."
    ),
]
SamplerSeedOpt = Annotated[int | None, typer.Option(help="Seed of the sampler (default: random).")]
SlotOpt = Annotated[int | None, typer.Option(hidden=True)]
# tk train options that name or place one run, or launch torchrun: not for a study.
NOT_TUNE = ("out", "name", "resume", "overwrite", "allow_config_change", "nproc", "max_restarts")


class _RunByDefault(TyperGroup):
    """``tk tune MODEL ...`` runs the ``run`` command; ``tk tune show ...`` shows a study."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


class _UsageWithoutRun(TyperCommand):
    """The ``run`` command's usage line reads ``tk tune [OPTIONS] [model]``, the way
    it is typed, not ``tk tune run ...``."""

    def display_path(self, ctx: Any) -> str:
        """``tk tune``: the command as typed (tk's usage errors name it too)."""
        return str(ctx.command_path).removesuffix(" run")

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        formatter.write_usage(self.display_path(ctx), " ".join(self.collect_usage_pieces(ctx)))


tune_app = typer.Typer(
    cls=_RunByDefault,
    help="Search hyperparameters with optuna: tk tune MODEL --space ..., tk tune show STUDY.",
)


@tune_app.command("run", hidden=True, cls=_UsageWithoutRun)
@with_options_of(train_cmd.train, drop=NOT_TUNE)
def run(
    space: SpaceOpt = None,
    trials: TrialsOpt = None,
    timeout: TimeoutOpt = None,
    jobs: JobsOpt = 1,
    sampler: SamplerOpt = None,
    pruner: PrunerOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    sampler_seed: SamplerSeedOpt = None,
    worker_slot: SlotOpt = None,
    **train_options: Any,
) -> None:
    """Search MODEL's hyperparameters: each trial is a tk train run with sampled values.

    Every tk train option sets the configuration trials start from; --space says what
    varies. Trials are runs/MODEL/STUDY/trial-NNNN; the objective is the monitored
    validation metric of the selected epoch (--monitor). The same command again, or
    tk tune --study NAME, continues a study (Ctrl-C leaves it resumable); see also
    tk tune show STUDY and tk export STUDY --best.
    """
    from toolkit.tune import TuneRequest, apply_toml, tune

    plot = bool(train_options.pop("plot"))
    base, table = train_cmd.config_from_flags(train_options)
    request = TuneRequest(
        base=base,
        space=list(space or []),
        trials=trials,
        timeout=timeout,
        jobs=jobs,
        sampler=sampler,
        pruner=pruner,
        study=study,
        storage=storage,
        sampler_seed=sampler_seed,
        slot=worker_slot,
        plot=plot,
    )
    if table:
        request = apply_toml(request, table, train_options.get("config") or "")
    tune(request, echo=typer.echo)


@tune_app.command("show")
def show(
    study: Annotated[str, typer.Argument(help="Study name (tk tune's --study).")],
    storage: StorageOpt = None,
    plot: Annotated[
        str | None,
        typer.Option(help="Write history.png, slice.png and parallel.png into this folder."),
    ] = None,
    json_: JsonOpt = False,
    runs_dir: RunsDirOpt = None,
) -> None:
    """A study: its best trial (test metrics, config, the tk train line), every trial,
    the parameters' importances; --plot draws optuna's plots."""
    from toolkit.tune.show import open_study, plot_study, report

    found, definition = open_study(study, storage, resolve_runs_dir(runs_dir))
    data = report(found, definition)
    if plot:
        data["plots"] = [str(p) for p in plot_study(found, plot)]
    if json_:
        emit_json(data)
        return
    for line in show_lines(data):
        typer.echo(line)


def show_lines(data: dict[str, Any]) -> list[str]:
    """``tk tune show`` as text: the study, the best trial, the trials, the importances."""
    from toolkit.commands.common import table
    from toolkit.tune.show import test_text

    d = data["definition"]
    states = ", ".join(f"{n} {w}" for w, n in data["states"].items())
    lines = [
        f"study {data['study']}: {d['model']}, {d['sampler']} sampler, {d['pruner']} pruner, "
        f"{data['counted']} of {d['trials']} trials ({states})",
        f"objective: {d['direction']} {d['monitor']} at the selected epoch",
        "space: " + "  ".join(d["space"]),
    ]
    best = data["best"]
    if best:
        lines += [
            f"best: trial {best['number']}, {best['monitor']} {best['value']:.5g} "
            f"(epoch {best['epoch']}) | {test_text(best['test'])}",
            f"  run: {best['run']}",
            f"  config: {best['command']}",
        ]
    names = sorted({k for r in data["trials"] for k in r["params"]})
    rows = [
        [
            str(r["number"]),
            r["state"],
            "-" if r["value"] is None else f"{r['value']:.5g}",
            str(r["epochs"] or "-"),
            *(_cell(r["params"].get(n)) for n in names),
            r["run"] or "-",
        ]
        for r in data["trials"]
    ]
    lines += ["", table(rows, ["TRIAL", "STATE", "VALUE", "EPOCHS", *names, "RUN"])]
    imp = data["importances"]
    if isinstance(imp, dict):
        lines += ["", "importance: " + "  ".join(f"{k} {v:.2f}" for k, v in imp.items())]
    else:
        lines += ["", f"importance: - ({imp})"]
    for p in data.get("plots", []):
        lines.append(f"Plot: {p}")
    return lines


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def register(app: typer.Typer) -> None:
    """Add ``tk tune`` (run, show) to the tk app."""
    app.add_typer(tune_app, name="tune")
