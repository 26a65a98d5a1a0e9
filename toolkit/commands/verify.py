"""``tk verify`` and ``tk inspect``: run an exported file against its eager model, or read
the provenance it carries."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from toolkit.commands.common import JsonOpt, RunsDirOpt, TrustOpt, emit_json, resolve_runs_dir


def verify(
    file: Annotated[str, typer.Argument(help="An exported file (any of tk list formats).")],
    run: Annotated[
        str | None, typer.Option(help="Run directory (default: from the file's metadata).")
    ] = None,
    batch_sizes: Annotated[
        str | None, typer.Option(help="Comma-separated batch sizes (default 1,7,64).")
    ] = None,
    atol: Annotated[float | None, typer.Option(help="Absolute tolerance (default 1e-5).")] = None,
    rtol: Annotated[float | None, typer.Option(help="Relative tolerance (default 1e-4).")] = None,
    runs_dir: RunsDirOpt = None,
    json_: JsonOpt = False,
    trust: TrustOpt = False,
    min_agreement: Annotated[
        float | None,
        typer.Option(
            help="Least agreement with the eager model over the whole held-out split "
            "(default 1.0; 0.99 for quantized or fp16 files)."
        ),
    ] = None,
) -> None:
    """Run FILE in its runtime and compare it with the eager model of its run.

    The batch sweep (held-out, random and out-of-distribution inputs) checks the
    numbers; then the file and the eager model run over the run's whole held-out
    split: accuracy (or MAE) of each, label agreement and the rows that differ most.
    Exit 0 pass, 1 mismatch or agreement below --min-agreement, 3 the file cannot
    be loaded or run.
    """
    from toolkit.errors import ExportError
    from toolkit.verify import parse_batch_sizes, verify_file

    try:
        report = verify_file(
            file,
            run=run,
            batch_sizes=parse_batch_sizes(batch_sizes),
            atol=atol,
            rtol=rtol,
            runs_dir=resolve_runs_dir(runs_dir),
            trust=trust,
            min_agreement=min_agreement,
        )
    except ExportError as exc:
        if json_:  # machines still get a JSON verdict for an unloadable file
            emit_json({"path": file, "status": "error", "passed": False, "error": str(exc)})
        raise
    if json_:
        emit_json(report.to_json())
    else:
        report.render()
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def inspect(
    file: Annotated[str, typer.Argument(help="An exported file.")],
    json_: JsonOpt = False,
) -> None:
    """Print the provenance tk embedded in an exported file (no model code runs)."""
    from toolkit.errors import UsageError
    from toolkit.trust import read_metadata

    meta = read_metadata(file)
    if not meta:
        raise UsageError(f"{file} carries no tk metadata", "export it with tk export")
    if json_:
        emit_json(meta)
        return
    for key, value in meta.items():
        shown = (
            value if isinstance(value, (str, int, float)) or value is None else json.dumps(value)
        )
        typer.echo(f"{key}: {shown}")


def register(app: typer.Typer) -> None:
    """Add ``tk verify`` and ``tk inspect`` to the tk app."""
    app.command("verify")(verify)
    app.command("inspect")(inspect)
