"""``tk bench``: latency of exported files in their runtimes, next to the eager model."""

from __future__ import annotations

from typing import Annotated

import typer

from toolkit.commands.common import JsonOpt, RunsDirOpt, TrustOpt, emit_json, resolve_runs_dir


def bench(
    files: Annotated[
        list[str], typer.Argument(help="Exported files (.onnx, .pt, .pt2, a plugin's format).")
    ],
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,64,1024",
    threads: Annotated[
        int | None,
        typer.Option(help="Threads for every runtime (default: torch's, i.e. OMP_NUM_THREADS)."),
    ] = None,
    rounds: Annotated[int, typer.Option(help="Timed calls of each target per batch size.")] = 20,
    plot: Annotated[
        str | None, typer.Option("--plot", help="Also write a PNG bar chart here.")
    ] = None,
    runs_dir: RunsDirOpt = None,
    json_: JsonOpt = False,
    trust: TrustOpt = False,
) -> None:
    """Latency p50/p90/p99 and rows/s of each FILE in its runtime and of its run's eager
    model, timed interleaved in one run, with file sizes."""
    from toolkit import bench as lib
    from toolkit.verify import parse_batch_sizes

    report = lib.bench_files(
        files,
        batch_sizes=parse_batch_sizes(batch_sizes) or [],
        threads=threads,
        rounds=rounds,
        trust=trust,
        runs_dir=resolve_runs_dir(runs_dir),
    )
    if plot:
        lib.plot(report, plot)
    if json_:
        emit_json({**report.to_json(), "plot": plot})
        return
    lib.render(report)
    if plot:
        typer.echo(f"wrote {plot}")


def register(app: typer.Typer) -> None:
    """Add ``tk bench`` to the tk app."""
    app.command("bench")(bench)
