"""Commands for plugin authors: ``tk new-plugin`` and ``tk plugins check``.

Importing this module is cheap (no torch): the work happens in toolkit.scaffold and
toolkit.testing, imported when a command runs.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from toolkit.errors import PluginError


def new_plugin(
    name: Annotated[str, typer.Argument(help="Distribution name, e.g. tk-hello.")],
    dir: Annotated[
        str | None, typer.Option("--dir", help="Directory to create (default: ./NAME).")
    ] = None,
) -> None:
    """Write a pip-installable plugin package: pyproject, module, test and README."""
    from toolkit.scaffold import names_for
    from toolkit.scaffold import new_plugin as write_package

    files = write_package(name, dir)
    n = names_for(name)
    root = files[0].parent
    typer.echo(f"created {root}/")
    for path in files:
        typer.echo(f"  {path.relative_to(root)}")
    typer.echo(
        "next:\n"
        f"  cd {root}\n"
        "  pip install -e .          # in the environment tk runs in\n"
        f"  tk list models            # shows {n.model}\n"
        f"  tk train {n.model}\n"
        f"  tk plugins check {n.dist}   # or: pytest"
    )


def check(
    name: Annotated[
        str, typer.Argument(help="Installed distribution or entry point (see `tk plugins`).")
    ],
    epochs: Annotated[int, typer.Option(help="Epochs to train each model.")] = 2,
    max_rows: Annotated[int, typer.Option(help="Rows per split used for training.")] = 256,
    workdir: Annotated[
        str | None,
        typer.Option(help="Keep run directories and exported files here (default: a temp dir)."),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")] = False,
) -> None:
    """Check a plugin: every model and dataset it registers is built, trained a few
    epochs on the CPU, exported to every format and verified. Exit 1 on any failure."""
    from toolkit.testing import check_plugin

    def show(c) -> None:
        if not json_:
            typer.echo(c.line())

    report = check_plugin(name, epochs=epochs, max_rows=max_rows, workdir=workdir, on_check=show)
    if json_:
        typer.echo(json.dumps(report.to_json(), indent=2))
    elif report.ok:
        typer.echo(report.summary())
    if not report.ok:
        raise PluginError(report.summary(), f"fix the plugin, then tk plugins check {name}")


def register(app: typer.Typer) -> None:
    """Add ``tk new-plugin`` and ``tk plugins check`` to the command line."""
    from toolkit.commands.catalog import plugins_app

    app.command("new-plugin")(new_plugin)
    plugins_app.command("check")(check)
