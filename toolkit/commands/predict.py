"""``tk predict``: an exported file or a run's eager model on the user's own samples."""

from __future__ import annotations

from typing import Annotated

import typer

from toolkit.commands.common import JsonOpt, RunsDirOpt, emit_json, resolve_runs_dir


def predict(
    target: Annotated[str, typer.Argument(help="An exported file, a run directory, or 'latest'.")],
    input_: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help=(
                "Samples: points.csv, x.npy, x.json; a table run: CSV/Parquet with a"
                " header; an image run: image files or a folder."
            ),
        ),
    ],
    runs_dir: RunsDirOpt = None,
    json_: JsonOpt = False,
    trust: Annotated[
        bool, typer.Option("--trust", help="Load a TorchScript file no tk run vouches for.")
    ] = False,
) -> None:
    """Predict on user data: probabilities and labels, or values for regression."""
    from toolkit.predict import predict as run_predict

    result = run_predict(target, input_, runs_dir=resolve_runs_dir(runs_dir), trust=trust)
    if json_:
        emit_json(result.to_json())
        return
    typer.echo(result.text())  # one write, not one per row


def register(app: typer.Typer) -> None:
    """Add ``tk predict`` to the tk app."""
    app.command("predict")(predict)
