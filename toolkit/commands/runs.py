"""``tk runs``: list, show, compare and remove run directories.

Everything here reads small JSON files through ``toolkit.runlog``: no torch, no
plugins loaded. Tables are aligned columns, one line per run (coloured by status
on a terminal, plain when piped to grep); matplotlib loads only for
``tk runs compare --plot``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from toolkit.commands.common import JsonOpt, RunsDirOpt, emit_json, resolve_runs_dir, table
from toolkit.errors import TkError

if TYPE_CHECKING:
    from toolkit.runlog import RunInfo

runs_app = typer.Typer(
    help="Find and compare runs: list (the default), show, compare, rm.",
    invoke_without_command=True,
)

ModelFilter = Annotated[
    str | None, typer.Option("--model", "-m", help="Only this model (a glob: 'circle*').")
]
SinceFilter = Annotated[
    str | None,
    typer.Option(help="Started on or after: 2026-12-01, 2026-12-01T10:00, or an age: 12h, 3d."),
]
StatusFilter = Annotated[
    str | None,
    typer.Option(help="finished, running, interrupted, failed or pruned (comma-separate several)."),
]
SortOpt = Annotated[
    str | None,
    typer.Option(
        help="A metric, best first (test_accuracy, val_loss, ...) or started, run, model, "
        "epochs, size; -KEY reverses."
    ),
]
LimitOpt = Annotated[
    int, typer.Option("--limit", "-n", help="Only the newest N (with --sort: the first N; 0: all).")
]
_STYLE = {
    "finished": "green",
    "running": "cyan",
    "interrupted": "yellow",
    "failed": "red",
    "pruned": "magenta",
}


def human_size(n: int) -> str:
    """Bytes as ``512 B``, ``12.3 KB``, ``4.5 MB``."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _figure(key: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{100 * value:.2f}%" if "accuracy" in key else f"{value:.4g}"


def _metric(run: RunInfo, split: str) -> str:
    """The split's accuracy (or MAE for regression), as the table shows it: for the
    validation split, the selected epoch's (whose weights the run keeps)."""
    row = _selected_row(run) if split == "val" else run.metrics
    for name in ("accuracy", "mae"):
        key = f"{split}_{name}"
        if key in row:
            return _figure(key, row[key])
    return "-"


def _selected_row(run: RunInfo) -> dict[str, Any]:
    """The metrics of the epoch the run selected; the last row while it has none."""
    selected = run.summary.get("selected")
    if not isinstance(selected, dict) or selected.get("epoch") is None:
        return run.metrics
    if isinstance(selected.get("metrics"), dict):
        return selected["metrics"]
    if selected["epoch"] == (run.summary.get("final") or {}).get("epoch"):
        return run.metrics
    # A run from before summary.json kept the selected epoch's metrics: its row.
    from toolkit.runlog.compare import read_rows

    return next((r for r in read_rows(run) if r.get("epoch") == selected["epoch"]), {})


def _when(text: str | None) -> str:
    """A timestamp tk wrote, as local ``YYYY-MM-DD HH:MM``."""
    from toolkit.runlog.scan import parse_time

    ts = parse_time(text)
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def _started(run: RunInfo) -> str:
    return _when(run.started)


def _epochs(run: RunInfo) -> str:
    if run.status == "finished" or not run.epochs_planned:
        return str(run.epochs)
    return f"{run.epochs}/{run.epochs_planned}"


def _print(*tables: str) -> None:
    """Tables on stdout, a blank line between them."""
    typer.echo("\n\n".join(tables))


def _table(header: list[str], rows: list[list[str]], colors: list[str | None] | None = None) -> str:
    """Aligned columns (as ``tk list``); on a terminal the header is bold and each row
    takes its colour. rich's tables took seconds for a thousand runs: not used here."""
    lines = table(rows, header).splitlines()
    if not sys.stdout.isatty():
        return "\n".join(lines)
    out = [typer.style(lines[0], bold=True)]
    for line, color in zip(lines[1:], colors or [None] * len(rows), strict=True):
        out.append(typer.style(line, fg=color) if color else line)
    return "\n".join(out)


def _extra_column(sort: str | None) -> str | None:
    """The metric a listing is sorted by, when no column shows it already."""
    from toolkit.runlog.query import FIXED_KEYS

    key = (sort or "").lstrip("-")
    shown = [f"{split}_{m}" for split in ("val", "test") for m in ("accuracy", "mae")]
    return key if key and key not in FIXED_KEYS and key not in shown else None


def list_runs(
    model: str | None,
    since: str | None,
    status: str | None,
    sort: str | None,
    limit: int,
    json_: bool,
    runs_dir: str | None,
) -> None:
    """The listing behind ``tk runs`` and ``tk runs list``."""
    from toolkit.errors import check_number
    from toolkit.runlog import scan_runs, select, sort_runs

    check_number("--limit", limit, 0)
    root = resolve_runs_dir(runs_dir)
    every = scan_runs(root)
    shown = sort_runs(select(every, model=model, since=since, status=status), sort)
    if limit > 0:
        shown = shown[-limit:] if not sort else shown[:limit]
    if json_:
        # One run per line: json's C encoder (indent= would use the pure-Python one,
        # a tenth of a second for a thousand runs).
        lines = ",\n".join("  " + json.dumps(r.to_json(), default=str) for r in shown)
        typer.echo(f"[\n{lines}\n]" if shown else "[]")
        return
    if not shown:
        what = f"no runs match ({len(every)} in {root}/)" if every else f"no runs in {root}/"
        typer.echo(what if every else f"{what} (try: tk train circle)")
        return
    extra = _extra_column(sort)
    trials = any(r.trial_label for r in shown)  # tk tune trials: their study and number
    header = ["RUN", "MODEL", "DATASET", "STARTED", "EPOCHS", "VAL", "TEST", "STATUS", "SIZE"]
    rows = []
    for r in shown:
        cells = [r.name, r.model, r.dataset, _started(r), _epochs(r), _metric(r, "val")]
        cells += [_metric(r, "test"), r.status, human_size(r.size)]
        if trials:
            cells.insert(1, r.trial_label or "-")
        if extra:
            cells.append(_figure(extra, r.metrics.get(extra)))
        rows.append(cells)
    if trials:
        header.insert(1, "TRIAL")
    styles = [_STYLE.get(r.status) for r in shown]
    _print(_table([*header, *([extra.upper()] if extra else [])], rows, styles))


@runs_app.callback()
def runs(
    ctx: typer.Context,
    model: ModelFilter = None,
    since: SinceFilter = None,
    status: StatusFilter = None,
    sort: SortOpt = None,
    limit: LimitOpt = 0,
    json_: JsonOpt = False,
    runs_dir: RunsDirOpt = None,
) -> None:
    """List runs (oldest first): model, dataset, start, epochs, val/test accuracy or
    MAE, status, size. Filters combine; see also show, compare and rm."""
    ctx.obj = {"runs_dir": runs_dir}
    if ctx.invoked_subcommand is None:
        list_runs(model, since, status, sort, limit, json_, runs_dir)


def _root(ctx: typer.Context, runs_dir: str | None) -> str:
    """``--runs-dir`` given after the subcommand, or before it (``tk runs --runs-dir X show``)."""
    before = (ctx.obj or {}).get("runs_dir") if ctx.obj else None
    return resolve_runs_dir(runs_dir or before)


@runs_app.command("list")
def list_command(
    model: ModelFilter = None,
    since: SinceFilter = None,
    status: StatusFilter = None,
    sort: SortOpt = None,
    limit: LimitOpt = 0,
    json_: JsonOpt = False,
    runs_dir: RunsDirOpt = None,
) -> None:
    """List runs, like tk runs alone."""
    list_runs(model, since, status, sort, limit, json_, runs_dir)


def _show_lines(r: RunInfo) -> list[str]:
    cfg, st = r.config, r.status_file
    recipe = cfg.get("recipe") or {}
    params = ", ".join(f"{k}={v}" for k, v in (cfg.get("params") or {}).items()) or "-"
    lines = [
        f"run: {r.name}",
        f"path: {r.path}",
        f"status: {r.status}" + (f" (status.json says {st['status']})" if _stale(r) else ""),
        f"model: {r.model} ({params})",
        f"dataset: {r.dataset}",
        "recipe: " + " ".join(f"{k}={v}" for k, v in recipe.items()),
        f"started: {_started(r)}"
        + (f", ended {_when(st.get('ended'))}" if st.get("ended") else ""),
        f"epochs: {_epochs(r)}",
    ]
    lines += [f"  {k}: {_figure(k, v)}" for k, v in r.metrics.items()]
    selected = r.summary.get("selected")
    if selected:
        monitor = selected.get("monitor")
        value = _figure(str(monitor), selected.get("value"))
        lines.append(f"selected: epoch {selected.get('epoch')} by {monitor} = {value}")
    if r.trial_label:
        pruned = f", pruned at epoch {st['pruned_at']}" if st.get("pruned_at") else ""
        lines.append(f"trial: {r.trial_label}{pruned} (tk tune show {r.trial['study']})")
    lines.append(f"size: {human_size(r.size)} ({r.checkpoints} checkpoint(s))")
    if st.get("error"):
        lines.append(f"error: {st['error']}")
    if r.status == "interrupted" and r.checkpoints:
        lines.append(f"resume: tk train --resume {r.path}")
    return lines


def _stale(r: RunInfo) -> bool:
    return bool(r.status_file.get("status")) and r.status_file.get("status") != r.status


@runs_app.command("show")
def show(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="latest, MODEL/NAME, NAME or a run directory.")],
    json_: JsonOpt = False,
    runs_dir: RunsDirOpt = None,
) -> None:
    """One run: status, config, metrics, size and how to resume it."""
    from toolkit.runlog import find_run

    r = find_run(run, _root(ctx, runs_dir))
    if json_:
        emit_json({**r.to_json(), "config": r.config, "summary": r.summary})
        return
    for line in _show_lines(r):
        typer.echo(line)


CELL_WIDTH = 60  # a config value wider than this is summarised in `tk runs compare`


def _cell(value: Any, key: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return _figure(key, value)
    text = json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= CELL_WIDTH else _summarised(value, text)


def _summarised(value: Any, text: str) -> str:
    """A long value in a few words: ``[13 floats, sha 1a2b3c4d]`` for fitted statistics
    (the hash tells equal arrays apart), else the start of it and ``...``."""
    import hashlib

    numbers = _numbers(value)
    if numbers is not None:
        kind = "floats" if any(isinstance(v, float) for v in numbers) else "ints"
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        return f"[{len(numbers)} {kind}, sha {digest}]"
    return text[: CELL_WIDTH - 3] + "..."


def _numbers(value: Any) -> list[float] | None:
    """Every number of a (nested) list of numbers, or None when it holds anything else."""
    if not isinstance(value, list):
        return None
    out: list[float] = []
    for item in value:
        if isinstance(item, list):
            inner = _numbers(item)
            if inner is None:
                return None
            out += inner
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            out.append(item)
        else:
            return None
    return out


@runs_app.command("compare")
def compare(
    ctx: typer.Context,
    run: Annotated[list[str], typer.Argument(help="Two or more runs (as for show).")],
    plot: Annotated[
        str | None, typer.Option(help="Also draw their curves, overlaid, into this PNG.")
    ] = None,
    json_: JsonOpt = False,
    runs_dir: RunsDirOpt = None,
) -> None:
    """Runs side by side: the config keys that differ, then every metric."""
    from toolkit.runlog import compare as compare_runs
    from toolkit.runlog import find_run, plot_compare

    root = _root(ctx, runs_dir)
    items = [find_run(r, root) for r in run]
    result = compare_runs(items)
    if plot:
        result["plot"] = str(plot_compare(items, plot))
    if json_:
        emit_json(result)
        return
    names = result["runs"]
    diff = [[k, *(_cell(v) for v in vals)] for k, vals in result["config"].items()]
    metrics = [[k, *(_cell(v, k) for v in vals)] for k, vals in result["metrics"].items()]
    _print(
        _table(["CONFIG", *names], diff or [["(same)", *["" for _ in names]]]),
        _table(["METRIC", *names], metrics),
    )
    if plot:
        typer.echo(f"Plot: {result['plot']}")


@runs_app.command("rm")
def remove(
    ctx: typer.Context,
    run: Annotated[list[str], typer.Argument(help="Runs to delete (as for show).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    runs_dir: RunsDirOpt = None,
) -> None:
    """Delete run directories (asks first). Only runs inside the runs root, never the
    root itself or a running run; runs/latest is moved to the newest run left."""
    from toolkit.runlog import removal_targets, remove_runs

    root = _root(ctx, runs_dir)
    targets = removal_targets(run, root)
    for r in targets:
        typer.echo(f"{r.path}  {r.status}  {human_size(r.size)}")
    if not yes:
        try:
            ok = typer.confirm(f"Delete {len(targets)} run(s)?", default=False)
        except typer.Abort:  # no answer (stdin closed): the safe one
            ok = False
        if not ok:
            raise TkError("nothing deleted", "--yes to delete without asking")
    remove_runs(targets, root, echo=typer.echo)


def register(app: typer.Typer) -> None:
    """Add ``tk runs`` (list, show, compare, rm) to the tk app."""
    app.add_typer(runs_app, name="runs")
