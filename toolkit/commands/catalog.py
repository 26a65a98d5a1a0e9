"""``tk list models|datasets|trackers``, ``tk info NAME`` and ``tk plugins``: what is installed.

These commands read specs only: no model is built, no data loaded, no torch imported.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from toolkit.commands.common import JsonOpt, emit_json, table

list_app = typer.Typer(help="List registered models, datasets or trackers.", no_args_is_help=True)
plugins_app = typer.Typer(
    help="Show installed plugins: version, status and what each registered.",
    invoke_without_command=True,
)

# kind -> (row builder, table columns): one listing for both kinds of spec.
_COLUMNS = {
    "models": ["NAME", "TASK", "INPUT", "DATASET", "PLUGIN", "DESCRIPTION"],
    "datasets": ["NAME", "TARGET", "CLASSES", "FEATURES", "PLUGIN", "DESCRIPTION"],
    "trackers": ["NAME", "OPTIONS", "PLUGIN", "DESCRIPTION"],
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


_ROWS = {"models": _model_row, "datasets": _dataset_row, "trackers": _tracker_row}


def _cell(value: Any) -> str:
    if isinstance(value, list) and not value:
        return "-"
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return "x".join(map(str, value))  # a shape
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "-" if value is None else str(value)


def _listing(kind: str, json_: bool) -> None:
    from toolkit.plugins import get_registry

    reg = get_registry()
    build = _ROWS[kind]
    rows = [build(reg, name) for name in sorted(getattr(reg, kind))]
    if json_:
        emit_json(rows)
        return
    typer.echo(table([[_cell(v) for v in r.values()] for r in rows], _COLUMNS[kind]))


@list_app.command("models")
def list_models(json_: JsonOpt = False) -> None:
    """Registered models: name, task, input, default dataset, plugin."""
    _listing("models", json_)


@list_app.command("datasets")
def list_datasets(json_: JsonOpt = False) -> None:
    """Registered datasets: name, target kind, classes, feature shape, plugin."""
    _listing("datasets", json_)


@list_app.command("trackers")
def list_trackers(json_: JsonOpt = False) -> None:
    """Registered experiment trackers: name, options, plugin (tk train --tracker NAME)."""
    _listing("trackers", json_)


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

    for kind in ("models", "datasets", "trackers"):
        if difflib.get_close_matches(name, list(getattr(reg, kind)), n=1, cutoff=0.6):
            getattr(reg, kind[:-1])(name)
    reg.model(name)


def describe(reg: Any, name: str) -> dict[str, Any]:
    """What ``tk info`` shows: everything a model, dataset or tracker spec declares."""
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
            "feature_shape": list(d.feature_shape) if d.feature_shape else "auto",
            "splits": list(d.splits),
            "params": [p.to_json() for p in d.params],
            "plugin": {"distribution": src.distribution, "version": src.version},
        }
    if name in reg.trackers:
        return _describe_tracker(reg, name)
    _unknown(reg, name)  # raises with "did you mean"
    raise AssertionError("unreachable")


def info(
    name: Annotated[str, typer.Argument(help="A model, dataset or tracker name.")],
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
        registered = ", ".join(r["models"] + r["datasets"] + r.get("trackers", [])) or "-"
        status = r["status"] if r["status"] == "ok" else f"failed: {r['error']}"
        cells.append([r["entry_point"], r["distribution"], r["version"], status, registered])
    typer.echo(table(cells, ["PLUGIN", "DISTRIBUTION", "VERSION", "STATUS", "REGISTERED"]))


def register(app: typer.Typer) -> None:
    """Add ``tk list``, ``tk info`` and ``tk plugins`` to the tk app."""
    app.add_typer(list_app, name="list")
    app.command("info")(info)
    app.add_typer(plugins_app, name="plugins")
