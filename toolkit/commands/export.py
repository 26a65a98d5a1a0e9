"""``tk export``: a run's model to ONNX, TorchScript or pt2, each file verified first."""

from __future__ import annotations

from typing import Annotated

import typer

from toolkit.commands.common import JsonOpt, RunsDirOpt, emit_json, resolve_runs_dir


def export(
    run: Annotated[
        str | None, typer.Argument(help="Run directory (default: the newest run, runs/latest).")
    ] = None,
    format_: Annotated[
        list[str] | None,
        typer.Option(
            "--format", "-f", help="onnx, torchscript, pt2 or all (repeat or comma-separate)."
        ),
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="Output file (one format) or directory (several).")
    ] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the exporter's).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing files.")] = False,
    static_batch: Annotated[
        int | None, typer.Option(help="Export for exactly this batch size (default: dynamic).")
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Verify each file before writing it.")
    ] = True,
    runs_dir: RunsDirOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Export a run's model to ONNX, TorchScript or pt2, verified against the eager model.

    Default files, in the run directory: model.onnx (weights embedded),
    model.torchscript.pt, model.pt2. A file failing verification is not written
    (exit 1); a model that cannot be exported leaves nothing behind (exit 3).
    """
    from toolkit.errors import TkError
    from toolkit.export import export_run

    try:
        results = export_run(
            run,
            format_ or ["onnx"],
            out=out,
            opset=opset,
            overwrite=overwrite,
            static_batch=static_batch,
            verify=verify,
            runs_dir=resolve_runs_dir(runs_dir),
            echo=(lambda _line: None) if json_ else typer.echo,
        )
    except TkError as exc:
        if json_ and hasattr(exc, "results"):  # what was exported before the failure
            emit_json([r.to_json() for r in exc.results])
        raise
    if json_:
        emit_json([r.to_json() for r in results])


def register(app: typer.Typer) -> None:
    """Add ``tk export`` to the tk app."""
    app.command("export")(export)
