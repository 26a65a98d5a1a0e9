"""``tk export``, ``tk verify``, ``tk inspect`` and ``tk predict``: thin wrappers.

Each command parses its options and calls one library function (toolkit.export,
toolkit.verify, toolkit.predict). Nothing heavy is imported here at import time:
``tk --help`` must stay free of torch and onnx.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
RunsDirOpt = Annotated[
    str | None, typer.Option("--runs-dir", help="Root of run directories (default runs).")
]


def _runs_dir(value: str | None) -> str:
    return value or os.environ.get("TK_RUNS_DIR") or "runs"


def _emit_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


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
            runs_dir=_runs_dir(runs_dir),
            echo=(lambda _line: None) if json_ else typer.echo,
        )
    except TkError as exc:
        if json_ and hasattr(exc, "results"):  # what was exported before the failure
            _emit_json([r.to_json() for r in exc.results])
        raise
    if json_:
        _emit_json([r.to_json() for r in results])


def verify(
    file: Annotated[str, typer.Argument(help="An exported .onnx, .torchscript.pt or .pt2 file.")],
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
    trust: Annotated[
        bool, typer.Option("--trust", help="Load a TorchScript file no tk run vouches for.")
    ] = False,
) -> None:
    """Run FILE in its runtime and compare it with the eager model of its run.

    Exit 0 pass, 1 mismatch, 3 the file cannot be loaded or run.
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
            runs_dir=_runs_dir(runs_dir),
            trust=trust,
        )
    except ExportError as exc:
        if json_:  # machines still get a JSON verdict for an unloadable file
            _emit_json({"path": file, "status": "error", "passed": False, "error": str(exc)})
        raise
    if json_:
        _emit_json(report.to_json())
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
    from toolkit.verify import read_metadata

    meta = read_metadata(file)
    if not meta:
        raise UsageError(f"{file} carries no tk metadata", "export it with tk export")
    if json_:
        _emit_json(meta)
        return
    for key, value in meta.items():
        shown = (
            value if isinstance(value, (str, int, float)) or value is None else json.dumps(value)
        )
        typer.echo(f"{key}: {shown}")


def predict(
    target: Annotated[str, typer.Argument(help="An exported file, a run directory, or 'latest'.")],
    input_: Annotated[
        str, typer.Option("--input", "-i", help="Samples: points.csv, x.npy or x.json.")
    ],
    runs_dir: RunsDirOpt = None,
    json_: JsonOpt = False,
    trust: Annotated[
        bool, typer.Option("--trust", help="Load a TorchScript file no tk run vouches for.")
    ] = False,
) -> None:
    """Predict on user data: probabilities and labels, or values for regression."""
    from toolkit.predict import predict as run_predict

    result = run_predict(target, input_, runs_dir=_runs_dir(runs_dir), trust=trust)
    if json_:
        _emit_json(result.to_json())
        return
    typer.echo("\n".join(result.lines()))  # one write, not one per row


def register(app: typer.Typer) -> None:
    """Add export, verify, inspect and predict to the tk app."""
    app.command("export")(export)
    app.command("verify")(verify)
    app.command("inspect")(inspect)
    app.command("predict")(predict)
