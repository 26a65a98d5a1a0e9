"""``tk list models|datasets``, ``tk info NAME`` and ``tk plugins``: what is installed.

These commands read specs only: no model is built, no data loaded, no torch imported.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from toolkit.commands.common import JsonOpt, emit_json, table

list_app = typer.Typer(help="List registered models or datasets.", no_args_is_help=True)
plugins_app = typer.Typer(
    help="Show installed plugins: version, status and what each registered.",
    invoke_without_command=True,
)

# kind -> (row builder, table columns): one listing for both kinds of spec.
_COLUMNS = {
    "models": ["NAME", "TASK", "INPUT", "DATASET", "PLUGIN", "DESCRIPTION"],
    "datasets": ["NAME", "TARGET", "CLASSES", "FEATURES", "PLUGIN", "DESCRIPTION"],
}


def _model_row(reg: Any, name: str) -> dict[str, Any]:
    m = reg.models[name]
    return {
        "name": name,
        "task": m.task,
        "input": list(m.input.shape),
        "dataset": m.default_dataset,
        "plugin": reg.source("model", name).distribution,
        "description": m.description,
    }


def _dataset_row(reg: Any, name: str) -> dict[str, Any]:
    d = reg.datasets[name]
    return {
        "name": name,
        "target": d.target,
        "classes": d.num_classes,
        "features": list(d.feature_shape),
        "plugin": reg.source("dataset", name).distribution,
        "description": d.description,
    }


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return "x".join(map(str, value))
    return "-" if value is None else str(value)


def _listing(kind: str, json_: bool) -> None:
    from toolkit.plugins import get_registry

    reg = get_registry()
    names = sorted(reg.models if kind == "models" else reg.datasets)
    build = _model_row if kind == "models" else _dataset_row
    rows = [build(reg, name) for name in names]
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


def describe(reg: Any, name: str) -> dict[str, Any]:
    """What ``tk info`` shows: everything a model or dataset spec declares."""
    if name in reg.models:
        m = reg.models[name]
        src = reg.source("model", name)
        return {
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
            "feature_shape": list(d.feature_shape),
            "splits": list(d.splits),
            "params": [p.to_json() for p in d.params],
            "plugin": {"distribution": src.distribution, "version": src.version},
        }
    reg.model(name)  # raises with "did you mean"
    raise AssertionError("unreachable")


def info(
    name: Annotated[str, typer.Argument(help="A model or dataset name.")],
    json_: JsonOpt = False,
) -> None:
    """Everything a spec declares: parameters, input, task, default recipe."""
    from toolkit.plugins import get_registry

    obj = describe(get_registry(), name)
    if json_:
        emit_json(obj)
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
        registered = ", ".join(r["models"] + r["datasets"]) or "-"
        status = r["status"] if r["status"] == "ok" else f"failed: {r['error']}"
        cells.append([r["entry_point"], r["distribution"], r["version"], status, registered])
    typer.echo(table(cells, ["PLUGIN", "DISTRIBUTION", "VERSION", "STATUS", "REGISTERED"]))


def register(app: typer.Typer) -> None:
    """Add ``tk list``, ``tk info`` and ``tk plugins`` to the tk app."""
    app.add_typer(list_app, name="list")
    app.command("info")(info)
    app.add_typer(plugins_app, name="plugins")
