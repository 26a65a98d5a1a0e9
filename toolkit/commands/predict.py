"""``tk predict``: an exported file or a run's eager model on the user's own samples."""

from __future__ import annotations

from typing import Annotated

import typer

from toolkit.commands.common import JsonOpt, RunsDirOpt, TrustOpt, emit_json, resolve_runs_dir


def predict(
    target: Annotated[str, typer.Argument(help="An exported file, a run directory, or 'latest'.")],
    more: Annotated[
        list[str] | None,
        typer.Argument(
            help="More inputs, after the target (what a shell glob like *.png expands to)."
        ),
    ] = None,
    input_: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            "-i",
            help=(
                "Samples (repeat for several): points.csv, x.npy, x.json; a table run:"
                " CSV/Parquet with a header; an image run: image files or a folder."
            ),
        ),
    ] = None,
    runs_dir: RunsDirOpt = None,
    json_: JsonOpt = False,
    trust: TrustOpt = False,
) -> None:
    """Predict on user data: probabilities and labels, or values for regression.

    Every input is predicted, one row per sample: the --input ones in the order
    given, then the inputs after the target.
    """
    from toolkit.errors import UsageError
    from toolkit.predict import predict as run_predict

    inputs = [*(input_ or []), *(more or [])]
    if not inputs:
        raise UsageError("no input given", f"tk predict {target} --input FILE")
    result = run_predict(target, inputs, runs_dir=resolve_runs_dir(runs_dir), trust=trust)
    if json_:
        emit_json(result.to_json())
        return
    typer.echo(result.text())  # one write, not one per row


def register(app: typer.Typer) -> None:
    """Add ``tk predict`` to the tk app."""
    app.command("predict")(predict)
