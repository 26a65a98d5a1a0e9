"""``tk plot [RUN]``: draw a run's pictures (PNG files in its run directory)."""

from __future__ import annotations

from typing import Annotated

import typer

from toolkit.commands.common import RunsDirOpt, resolve_runs_dir


def plot(
    run: Annotated[str | None, typer.Argument(help="Run directory, or 'latest' (default).")] = None,
    runs_dir: RunsDirOpt = None,
) -> None:
    """Draw loss/metric curves and, where they fit, the decision boundary, the fitted
    curve or a grid of sample images, as PNG files in the run directory."""
    # Imported here: matplotlib and torch load only when a picture is asked for.
    from toolkit.plot import plot_run
    from toolkit.runs import resolve_run

    path = resolve_run(run, resolve_runs_dir(runs_dir))
    for written in plot_run(path):
        typer.echo(str(written))


def register(app: typer.Typer) -> None:
    """Add ``tk plot`` to the ``tk`` app."""
    app.command("plot")(plot)
