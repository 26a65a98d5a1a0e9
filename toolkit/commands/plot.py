"""``tk plot [RUN]``: draw a run's pictures (PNG files in its run directory)."""

from __future__ import annotations

import os
from typing import Annotated

import typer


def plot(
    run: Annotated[str | None, typer.Argument(help="Run directory, or 'latest' (default).")] = None,
    runs_dir: Annotated[
        str | None, typer.Option(help="Root of run directories (default runs).")
    ] = None,
) -> None:
    """Draw loss/metric curves and, where they fit, the decision boundary, the fitted
    curve or a grid of sample images, as PNG files in the run directory."""
    # Imported here: matplotlib and torch load only when a picture is asked for.
    from toolkit.plot import plot_run
    from toolkit.runs import resolve_run

    path = resolve_run(run, runs_dir or os.environ.get("TK_RUNS_DIR") or "runs")
    for written in plot_run(path):
        typer.echo(str(written))


def register(app: typer.Typer) -> None:
    """Add ``tk plot`` to the ``tk`` app."""
    app.command("plot")(plot)
