"""``tk export``: a run's model to ONNX, TorchScript or pt2, each file verified first."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from toolkit.commands.common import JsonOpt, RunsDirOpt, emit_json, resolve_runs_dir

QuantizeOpt = Annotated[
    str | None,
    typer.Option(
        help="ONNX only: write an int8-dynamic, int8-static or fp16 version of the "
        "verified float32 file (checked on the held-out split)."
    ),
]
CalibrationRowsOpt = Annotated[int, typer.Option(help="Training rows int8-static calibrates on.")]
CalibrationDataOpt = Annotated[
    str | None,
    typer.Option(help="Calibrate int8-static on these rows instead (.npy, .csv or .json)."),
]
WeightsOpt = Annotated[
    str,
    typer.Option(help="best: the epoch validation selected (model.safetensors); last: the last."),
]
OptimizeOpt = Annotated[
    bool, typer.Option(help="ONNX: onnxruntime's basic offline graph optimization.")
]
MinAgreementOpt = Annotated[
    float | None,
    typer.Option(
        help="Held-out agreement with the eager model the file must reach "
        "(default 1.0; 0.99 with --quantize)."
    ),
]


RunArg = Annotated[
    str | None,
    typer.Argument(
        help="Run directory (default: the newest run, runs/latest); a study with --best."
    ),
]
BestOpt = Annotated[
    bool, typer.Option("--best", help="RUN is a tk tune study: export its best trial's run.")
]
StorageOpt = Annotated[
    str | None, typer.Option(help="With --best: the study's storage URL (default: tk tune's).")
]
FormatOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--format",
        "-f",
        help="onnx, torchscript, pt2, a plugin's format (tk list formats) or all (tk's own "
        "three); repeat or comma-separate.",
    ),
]
OutOpt = Annotated[
    str | None, typer.Option(help="Output file (one format) or directory (several).")
]
OpsetOpt = Annotated[int | None, typer.Option(help="ONNX opset (default: the exporter's).")]
StaticBatchOpt = Annotated[
    int | None, typer.Option(help="Export for exactly this batch size (default: dynamic).")
]
VerifyOpt = Annotated[
    bool, typer.Option("--verify/--no-verify", help="Verify each file before writing it.")
]
TritonRepoOpt = Annotated[
    str | None,
    typer.Option(
        "--triton-repo",
        help="Write a Triton model repository here: NAME/config.pbtxt, NAME/1/model.onnx "
        "(the verified ONNX file), NAME/labels.txt.",
    ),
]
TritonNameOpt = Annotated[
    str | None,
    typer.Option("--triton-name", help="The model's name in --triton-repo (default: the model's)."),
]


def export(
    run: RunArg = None,
    format_: FormatOpt = None,
    out: OutOpt = None,
    opset: OpsetOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing files.")] = False,
    static_batch: StaticBatchOpt = None,
    verify: VerifyOpt = True,
    quantize: QuantizeOpt = None,
    calibration_rows: CalibrationRowsOpt = 256,
    calibration_data: CalibrationDataOpt = None,
    optimize: OptimizeOpt = False,
    min_agreement: MinAgreementOpt = None,
    weights: WeightsOpt = "best",
    runs_dir: RunsDirOpt = None,
    json_: JsonOpt = False,
    best: BestOpt = False,
    storage: StorageOpt = None,
    triton_repo: TritonRepoOpt = None,
    triton_name: TritonNameOpt = None,
) -> None:
    """Export a run's model to ONNX, TorchScript, pt2 or a plugin's format (tk list
    formats), verified against the eager model: model.onnx, model.torchscript.pt or
    model.pt2 in the run directory (--quantize: model.int8-dynamic.onnx, int8-static,
    fp16). A file failing verification is not written (exit 1); a model that cannot be
    exported leaves nothing behind (exit 3).
    """
    from toolkit.errors import TkError
    from toolkit.export import export_run

    run = _best_of(run, storage, resolve_runs_dir(runs_dir)) if best else run
    options = {
        "out": out,
        "opset": opset,
        "overwrite": overwrite,
        "static_batch": static_batch,
        "verify": verify,
        "quantize": quantize,
        "calibration_rows": calibration_rows,
        "optimize": optimize,
        "min_agreement": min_agreement,
        "weights": weights,
    }
    calibration = _calibration(calibration_data, run, resolve_runs_dir(runs_dir))
    echo = (lambda _line: None) if json_ else typer.echo
    try:
        if triton_repo is not None:
            triton = (triton_repo, triton_name)
            results = _triton(run, triton, format_, runs_dir, echo, calibration, options)
        else:
            results = export_run(
                run, format_ or ["onnx"], runs_dir=resolve_runs_dir(runs_dir), echo=echo,
                calibration=calibration, **options,
            )  # fmt: skip
    except TkError as exc:
        if json_ and hasattr(exc, "results"):  # what was exported before the failure
            emit_json([r.to_json() for r in exc.results])
        raise
    if json_:
        emit_json([r.to_json() for r in results])


def _triton(
    run: str | None,
    triton: tuple[str, str | None],
    formats: list[str] | None,
    runs_dir: str | None,
    echo: Any,
    calibration: Any,
    options: dict[str, Any],
) -> list[Any]:
    """``--triton-repo``: the ONNX export written into a Triton model repository."""
    from toolkit.errors import UsageError
    from toolkit.serve.triton import export_triton_repo

    if formats and formats != ["onnx"]:
        raise UsageError(
            "--triton-repo writes an ONNX file only", "--format onnx --triton-repo DIR"
        )
    if options.pop("out") is not None:
        raise UsageError("--triton-repo says where the file goes", "drop --out")
    repo, name = triton
    return export_triton_repo(
        run,
        repo,
        name=name,
        runs_dir=resolve_runs_dir(runs_dir),
        echo=echo,
        calibration=calibration,
        **options,
    )


def _best_of(study: str | None, storage: str | None, runs_dir: str) -> str:
    """``--best``: the run of the study's best trial (``tk tune``)."""
    from toolkit.errors import UsageError
    from toolkit.tune.show import best_run

    if study is None:
        raise UsageError("--best needs a study name", "tk export STUDY --best")
    return str(best_run(study, storage, runs_dir))


def _calibration(path: str | None, run: str | None, runs_dir: str) -> Any:
    """Calibration rows read like ``tk predict``'s input (scaled as the run's dataset is)."""
    if path is None:
        return None
    from toolkit import runs
    from toolkit.predict import read_input

    config = runs.open_run(run, runs_dir).config
    shape = [int(d) for d in config["input"]["shape"][1:]]
    return read_input(path, shape, config.get("feature_scale"))


def register(app: typer.Typer) -> None:
    """Add ``tk export`` to the tk app."""
    app.command("export")(export)
