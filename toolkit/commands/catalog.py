"""``tk list models|datasets|trackers|formats``, ``tk info NAME``, ``tk plugins``: what is here.

These commands read specs only: no model is built, no data loaded, no torch imported.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from toolkit.commands.common import JsonOpt, emit_json, table

list_app = typer.Typer(
    help="List registered models, datasets, trackers or export formats.", no_args_is_help=True
)
plugins_app = typer.Typer(
    help="Show installed plugins: version, status and what each registered.",
    invoke_without_command=True,
)

# kind -> (row builder, table columns): one listing for both kinds of spec.
_COLUMNS = {
    "models": ["NAME", "TASK", "INPUT", "DATASET", "PLUGIN", "DESCRIPTION"],
    "datasets": ["NAME", "TARGET", "CLASSES", "FEATURES", "PLUGIN", "DESCRIPTION"],
    "trackers": ["NAME", "OPTIONS", "PLUGIN", "DESCRIPTION"],
    "formats": ["NAME", "FILE", "RUNS CODE", "IN ALL", "PLUGIN", "DESCRIPTION"],
}


def _model_row(reg: Any, name: str) -> dict[str, Any]:
    m = reg.models[name]
    return {
        "name": name,
        # A model that sizes itself takes any task and any input of its dataset.
        "task": m.task or "any",
        "input": list(m.input.shape) if m.input else "auto",
        "dataset": m.default_dataset,
        "plugin": reg.source("model", name).distribution,
        "description": m.description,
    }


def _dataset_row(reg: Any, name: str) -> dict[str, Any]:
    d = reg.datasets[name]
    return {
        "name": name,
        # A dataset that infers them from its files (a CSV) says so.
        "target": d.target or "auto",
        "classes": d.num_classes,
        "features": list(d.feature_shape) if d.feature_shape else "auto",
        "plugin": reg.source("dataset", name).distribution,
        "description": d.description,
    }


def _tracker_row(reg: Any, name: str) -> dict[str, Any]:
    t = reg.trackers[name]
    return {
        "name": name,
        "options": [o.name for o in t.options],
        "plugin": reg.source("tracker", name).distribution,
        "description": t.description,
    }


def _format_row(reg: Any, name: str) -> dict[str, Any]:
    f = reg.formats[name]
    return {
        "name": name,
        "file": " + ".join([f.file_name or f"model{f.suffix}", *f.companions]),
        # Loading it can run code: only tk's own exports, or --trust (toolkit/trust.py).
        "runs_code": "yes (--trust)" if f.can_carry_code else "no",
        "in_all": "yes" if f.in_all else "no",
        "plugin": reg.source("format", name).distribution,
        "description": f.description,
    }


_ROWS = {
    "models": _model_row,
    "datasets": _dataset_row,
    "trackers": _tracker_row,
    "formats": _format_row,
}


def _cell(value: Any) -> str:
    if isinstance(value, list) and not value:
        return "-"
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return "x".join(map(str, value))  # a shape
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "-" if value is None else str(value)


# A plugin that registers more names than this (tk-timm: over a thousand) shows as
# one row in an unfiltered listing; a pattern lists them.
COLLAPSE = 50

PatternArg = Annotated[
    str | None,
    typer.Argument(help="Only names matching this shell pattern, e.g. 'timm/*resnet*'."),
]


def _listing(kind: str, json_: bool, pattern: str | None = None) -> None:
    import fnmatch

    from toolkit.errors import UsageError
    from toolkit.plugins import get_registry

    reg = get_registry()
    build = _ROWS[kind]
    names = sorted(getattr(reg, kind))
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not names:
            raise UsageError(f"no {kind[:-1]} matches '{pattern}'", f"tk list {kind}")
    if json_:
        emit_json([build(reg, name) for name in names])
        return
    rows = _collapsed(reg, kind, names) if pattern is None else [build(reg, n) for n in names]
    typer.echo(table([[_cell(v) for v in r.values()] for r in rows], _COLUMNS[kind]))


def _collapsed(reg: Any, kind: str, names: list[str]) -> list[dict[str, Any]]:
    """The rows of ``names``, a plugin with more than COLLAPSE of them as one row."""
    import itertools

    by_dist: dict[str, list[str]] = {}
    for n in names:
        by_dist.setdefault(reg.source(kind[:-1], n).distribution, []).append(n)
    rows, shown = [], set()
    for n in names:
        dist = reg.source(kind[:-1], n).distribution
        group = by_dist[dist]
        if len(group) <= COLLAPSE:
            rows.append(_ROWS[kind](reg, n))
        elif dist not in shown:
            shown.add(dist)
            same = itertools.takewhile(
                lambda chars: len(set(chars)) == 1, zip(*group, strict=False)
            )
            pattern = "".join(chars[0] for chars in same) + "*"  # e.g. timm/*
            row = {k: None for k in _ROWS[kind](reg, n)}
            row.update(name=pattern, plugin=dist)
            row["description"] = f"{len(group)} {kind}: tk list {kind} '{pattern}'"
            rows.append(row)
    return rows


@list_app.command("models")
def list_models(pattern: PatternArg = None, json_: JsonOpt = False) -> None:
    """Registered models: name, task, input, default dataset, plugin."""
    _listing("models", json_, pattern)


@list_app.command("datasets")
def list_datasets(pattern: PatternArg = None, json_: JsonOpt = False) -> None:
    """Registered datasets: name, target kind, classes, feature shape, plugin."""
    _listing("datasets", json_, pattern)


@list_app.command("trackers")
def list_trackers(pattern: PatternArg = None, json_: JsonOpt = False) -> None:
    """Registered experiment trackers: name, options, plugin (tk train --tracker NAME)."""
    _listing("trackers", json_, pattern)


@list_app.command("formats")
def list_formats(pattern: PatternArg = None, json_: JsonOpt = False) -> None:
    """Export formats: name, default file, whether loading runs code, plugin (tk export
    --format NAME)."""
    _listing("formats", json_, pattern)


def _describe_tracker(reg: Any, name: str) -> dict[str, Any]:
    t = reg.trackers[name]
    src = reg.source("tracker", name)
    return {
        "kind": "tracker",
        "name": t.name,
        "description": t.description,
        "options": [o.to_json() for o in t.options],
        "requires": list(t.requires),
        "install": t.install or None,
        "plugin": {"distribution": src.distribution, "version": src.version},
    }


def _unknown(reg: Any, name: str) -> None:
    """Raise the "did you mean" of the kind whose names are closest to ``name``."""
    import difflib

    for kind in ("models", "datasets", "trackers", "formats"):
        if difflib.get_close_matches(name, list(getattr(reg, kind)), n=1, cutoff=0.6):
            getattr(reg, kind[:-1])(name)
    reg.model(name)


def _target_dim(d: Any) -> int | str | None:
    """Values per sample a regression dataset has; "auto" when its loader says."""
    if d.target is None:
        return "auto"
    return d.target_dim if d.target == "regression" else None


def describe(reg: Any, name: str) -> dict[str, Any]:
    """What ``tk info`` shows: everything a model, dataset, tracker or format declares."""
    from toolkit.splits import DEFAULT_FRACTION

    if name in reg.models:
        m = reg.models[name]
        src = reg.source("model", name)
        return {
            "kind": "model",
            "name": m.name,
            "description": m.description,
            "task": m.task,
            "input": m.input.to_json() if m.input else "sized from the dataset",
            "default_dataset": m.default_dataset,
            "params": [p.to_json() for p in m.params],
            "recipe": m.recipe.to_json(),
            # What tk train does unless told otherwise (--val-fraction, --monitor, ...).
            "selection": {
                "val_fraction": DEFAULT_FRACTION,
                "monitor": "val_loss",
                "early_stop": None,
            },
            "tolerance": {"atol": m.tolerance.atol, "rtol": m.tolerance.rtol},
            "plugin": {"distribution": src.distribution, "version": src.version},
        }
    if name in reg.datasets:
        d = reg.datasets[name]
        src = reg.source("dataset", name)
        return {
            "kind": "dataset",
            "name": d.name,
            "description": d.description,
            "target": d.target,
            "num_classes": d.num_classes,
            "class_names": list(d.class_names) if d.class_names else None,
            "target_dim": _target_dim(d),
            "feature_shape": list(d.feature_shape) if d.feature_shape else "auto",
            "feature_scale": d.feature_scale,
            "splits": list(d.splits),
            "params": [p.to_json() for p in d.params],
            "plugin": {"distribution": src.distribution, "version": src.version},
        }
    if name in reg.trackers:
        return _describe_tracker(reg, name)
    if name in reg.formats:
        src = reg.source("format", name)
        return {
            "kind": "format",
            **_format_row(reg, name),
            "aliases": ", ".join(reg.formats[name].aliases) or "-",
            "plugin": {"distribution": src.distribution, "version": src.version},
        }
    _unknown(reg, name)  # raises with "did you mean"
    raise AssertionError("unreachable")


def info(
    name: Annotated[str, typer.Argument(help="A model, dataset, tracker or format name.")],
    json_: JsonOpt = False,
) -> None:
    """Everything a spec declares: parameters, input, task, default recipe (or a
    tracker's options)."""
    from toolkit.plugins import get_registry

    obj = describe(get_registry(), name)
    if json_:
        emit_json(obj)
        return
    for key, value in obj.items():
        if key in ("params", "options"):
            typer.echo(f"{key}:" + ("" if value else " (none)"))
            for p in value:
                extra = f"  {p['help']}" if p.get("help") else ""
                typer.echo(f"  {p['name']}: {p['type']} = {p['default']!r}{extra}")
        elif isinstance(value, dict):
            typer.echo(f"{key}: " + ", ".join(f"{k}={v}" for k, v in value.items()))
        elif isinstance(value, list) and key == "requires":
            typer.echo(f"{key}: {', '.join(value) or '-'}")
        else:
            typer.echo(f"{key}: {value}")


@plugins_app.callback()
def plugins(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """Installed plugins: distribution, version, status and what each registered."""
    if ctx.invoked_subcommand is not None:
        return
    from toolkit.plugins import loaded

    rows = [p.to_json() for p in loaded().plugins]
    if json_:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no plugins loaded (TK_LOAD_PLUGINS may exclude them)")
        return
    cells = []
    for r in rows:
        names = r["models"] + r["datasets"] + r.get("trackers", []) + r.get("formats", [])
        registered = ", ".join(names) or "-"
        if len(names) > COLLAPSE:
            registered = f"{', '.join(names[:3])}, ... ({len(names)} in all)"
        status = r["status"] if r["status"] == "ok" else f"failed: {r['error']}"
        cells.append([r["entry_point"], r["distribution"], r["version"], status, registered])
    typer.echo(table(cells, ["PLUGIN", "DISTRIBUTION", "VERSION", "STATUS", "REGISTERED"]))


def register(app: typer.Typer) -> None:
    """Add ``tk list``, ``tk info`` and ``tk plugins`` to the tk app."""
    app.add_typer(list_app, name="list")
    app.command("info")(info)
    app.add_typer(plugins_app, name="plugins")
