"""Section 4: `tk predict` on an ONNX file vs raw onnxruntime vs the eager model."""

from __future__ import annotations

import contextlib
import io
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..baselines import fashion_mlp
from ..report import Goal, fmt, table
from ..timing import REPO, child_env, interleave, median, paired_ratio, run_process, tk_command
from ..workloads import FASHION_RECIPE, fashion_data, fashion_tensors

EXPORT_PAGE = REPO / "docs" / "benchmarks-export.md"
GOAL_TEXT = "`tk predict` / raw onnxruntime at batch 1024 (process start excluded)"
COMMAND = "tk predict: the command (predict + printed table)"
RAW = "raw onnxruntime: session + load + run + print"
# The steps of the breakdown that turn outputs into printed text.
OUTPUT_PIECES = ("interpret: labels and probabilities (numpy)", "text() + typer.echo of the table")

RAW_PREDICT_SCRIPT = """
import sys
import numpy as np
import onnxruntime as ort

path, inp, scale = sys.argv[1], sys.argv[2], float(sys.argv[3])
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
x = np.load(inp)
if x.dtype.kind in "iu":
    x = x.astype(np.float32) * np.float32(scale)
logits = session.run(None, {session.get_inputs()[0].name: x})[0]
z = np.exp(logits - logits.max(axis=1, keepdims=True))
probs = z / z.sum(axis=1, keepdims=True)
for i, p in enumerate(probs, start=1):
    print(i, int(p.argmax()), float(p.max()))
"""


def predict_available() -> str | None:
    """None when ``tk predict`` and ``tk export`` can be benchmarked, else why not."""
    try:
        from toolkit.export import export_run  # noqa: F401
        from toolkit.predict import Prediction, predict  # noqa: F401
    except ImportError as exc:
        return f"skipped: tk predict not available ({exc})"
    return None


def print_predictions(logits: np.ndarray, task: str) -> None:
    """Print ``row label probability`` per sample (the information `tk predict` prints)."""
    if task == "binary":
        with np.errstate(over="ignore"):  # exp overflows to inf for large logits: p = 0
            p1 = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        labels = (logits[:, 0] > 0).astype(np.int64)
        prob = np.where(labels == 1, p1, 1.0 - p1)
    else:
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = z / z.sum(axis=1, keepdims=True)
        labels = probs.argmax(axis=1)
        prob = probs[np.arange(len(labels)), labels]
    rows = zip(labels.tolist(), prob.tolist(), strict=True)
    print("\n".join(f"{i} {lab} {q:.6g}" for i, (lab, q) in enumerate(rows, start=1)))


def raw_onnx_predict(path: Path, npy: Path, task: str, scale: float | None) -> None:
    """What a person writes with onnxruntime alone: session, input, run, print the labels."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.load(npy)
    if x.dtype.kind in "iu" and scale is not None:
        x = x.astype(np.float32) * np.float32(scale)
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    print_predictions(logits, task)


def predict_command(path: str, npy: str) -> None:
    """What `tk predict PATH --input NPY` runs once its arguments are parsed."""
    import typer

    from toolkit.predict import predict

    typer.echo(predict(path, npy).text())  # one write, as the command does


def eager_predict(m: dict[str, Any], npy: Path) -> None:
    """The run's eager model: rebuild from the run directory, forward, print."""
    from toolkit.models import rebuild_model
    from toolkit.runs import open_run

    model = rebuild_model(open_run(m["run"]), m["registry"])
    x = np.load(npy)
    if x.dtype.kind in "iu":
        x = x.astype(np.float32) * np.float32(m["scale"])
    with torch.inference_mode():
        logits = model(torch.from_numpy(x)).numpy()
    print_predictions(logits, m["task"])


def fashion_registry() -> Any:
    """A registry with the FashionMNIST MLP and a small FashionMNIST-shaped dataset."""
    from toolkit.registry import DatasetSpec, InputSpec, ModelSpec, Recipe, Registry, Source

    local = Registry()
    source = Source("bench", "tk-bench", "0")
    small = fashion_tensors(1024, 256)
    local.add(
        ModelSpec(
            name="fashion-mlp",
            build=fashion_mlp,
            input=InputSpec((1, 28, 28), name="images"),
            task="multiclass",
            default_dataset="fashion-shaped",
            recipe=Recipe(**FASHION_RECIPE),
        ),
        source,
    )
    spec = fashion_data(small).spec
    local.add(
        DatasetSpec(
            name=spec.name,
            load=lambda: {
                "train": (small["x_train"], small["y_train"]),
                "test": (small["x_test"], small["y_test"]),
            },
            feature_shape=spec.feature_shape,
            target=spec.target,
            num_classes=spec.num_classes,
            feature_scale=spec.feature_scale,
        ),
        source,
    )
    return local


def train_and_export(name: str, reg: Any, epochs: int, tmp: Path) -> tuple[Path, Path]:
    """(run directory, ONNX file) of a model trained by tk and exported by tk."""
    from toolkit.config import TrainConfig
    from toolkit.export import export_run
    from toolkit.train import train

    config = TrainConfig(
        model=name,
        epochs=epochs,
        runs_dir=str(tmp / "runs"),
        name="predict",
        overwrite=True,
        device="cpu",
        quiet=True,
    )
    run_dir = train(config, registry=reg, echo=lambda _s: None).run_dir
    quiet = {"echo": lambda _s: None, "echo_err": lambda _s: None}
    results = export_run(run_dir, "onnx", overwrite=True, registry=reg, **quiet)
    return run_dir, results[0].path


def inference_models(tmp: Path, quick: bool) -> list[dict[str, Any]]:
    """Train and export circle and the FashionMNIST MLP; the ONNX paths and metadata."""
    from toolkit.plugins import load_plugins

    builtin = load_plugins(warn=False).registry
    out = []
    rng = np.random.default_rng(0)
    for name, reg, epochs in (
        ("circle", builtin, 50 if quick else 200),
        ("fashion-mlp", fashion_registry(), 1),
    ):
        run_dir, onnx_path = train_and_export(name, reg, epochs, tmp)
        mspec = reg.model(name)
        inputs = {}
        for batch in (1, 1024):
            if name == "circle":
                x = rng.standard_normal((batch, 2)).astype(np.float32)
            else:  # uint8 images, as a user would store them: tk predict scales them
                x = rng.integers(0, 256, (batch, 1, 28, 28), dtype=np.uint8)
            inputs[batch] = tmp / f"{name}-{batch}.npy"
            np.save(inputs[batch], x)
        out.append(
            {
                "name": name,
                "run": run_dir,
                "onnx": onnx_path,
                "task": mspec.task,
                "scale": reg.dataset(mspec.default_dataset).feature_scale,
                "inputs": inputs,
                "registry": reg,
            }
        )
    return out


def quietly(fn: Callable[[], Any]) -> Callable[[], None]:
    """``fn`` with its output going to a string: printing is work, the terminal is not."""

    def run() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            fn()

    return run


def via_main(args: list[str]) -> None:
    """``tk ARGS`` through ``toolkit.cli.main`` in this process (Typer's parsing included)."""
    from toolkit.cli import main

    try:
        main(args)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"tk {' '.join(args)} exited {exc.code}") from None


def batch_variants(m: dict[str, Any], batch: int) -> dict[str, Callable[[], Any]]:
    """Every path from (ONNX file, .npy input) to predictions, for one model and batch."""
    import onnxruntime as ort

    from toolkit.predict import predict

    session = ort.InferenceSession(str(m["onnx"]), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    npy, path = m["inputs"][batch], str(m["onnx"])
    x = np.load(npy)
    if x.dtype.kind in "iu":
        x = x.astype(np.float32) * np.float32(m["scale"])
    return {
        COMMAND: quietly(lambda: predict_command(path, str(npy))),
        "tk predict via cli.main() (adds Typer's parsing)": quietly(
            lambda: via_main(["predict", path, "--input", str(npy)])
        ),
        "toolkit.predict.predict() (no printing)": lambda: predict(path, npy),
        RAW: quietly(lambda: raw_onnx_predict(m["onnx"], npy, m["task"], m["scale"])),
        "raw onnxruntime: run only (session reused)": lambda: session.run(None, {input_name: x}),
        "eager: rebuild from run + forward + print": quietly(lambda: eager_predict(m, npy)),
    }


def predict_pieces(m: dict[str, Any], batch: int, rounds: int) -> dict[str, float]:
    """Seconds of each step `tk predict` takes for one input file (interleaved, medians)."""
    import typer

    from toolkit import predict as tk_predict

    path, npy = m["onnx"], m["inputs"][batch]
    opened = tk_predict.open_target(path, "runs", None)
    opened.settle()
    meta = opened.meta
    shape = [int(d) for d in meta["input"]["shape"][1:]]
    x = tk_predict.read_input(npy, shape, meta.get("feature_scale"))
    runner = opened.load()
    y = np.asarray(runner.run(x)[0]).astype(np.float64).reshape(len(x), -1)
    pred = tk_predict.predict(path, npy)

    def open_settled() -> None:
        tk_predict.open_target(path, "runs", None).settle()

    def echo_table() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            typer.echo(pred.text())

    pieces = {
        "open_target: read once, metadata, sha256 against the manifest": open_settled,
        "read_input: the .npy file": lambda: tk_predict.read_input(
            npy, shape, meta.get("feature_scale")
        ),
        "load: the onnxruntime session (from the bytes)": opened.load,
        "runner.run": lambda: runner.run(x),
        OUTPUT_PIECES[0]: lambda: tk_predict.interpret(y, meta),
        OUTPUT_PIECES[1]: echo_table,
    }
    interleave(pieces, 1)
    times, _ = interleave(pieces, rounds)
    return {k: median(v) for k, v in times.items()}


def goal_ratio(command: Callable[[], Any], raw: Callable[[], Any], rounds: int) -> float:
    """Median over rounds of time(command) / time(raw), the two paths alone.

    In the six-path table each path always follows the same other one, and the eager
    path (rebuilding a torch model) leaves garbage that the next path's allocations
    pay for in a collection: the command, every time. Here the two alternate, and
    each round starts after a ``gc.collect()``, so neither pays for the other's.
    """
    import gc
    import time

    ratios = []
    for r in range(max(rounds, 2) * 10):  # cheap: the pair alone, many rounds
        gc.collect()
        pair = (command, raw) if r % 2 == 0 else (raw, command)
        took = []
        for fn in pair:
            t0 = time.perf_counter()
            fn()
            took.append(time.perf_counter() - t0)
        a, b = took if r % 2 == 0 else took[::-1]
        ratios.append(a / b)
    return median(ratios)


def measure_model(m: dict[str, Any], rounds: int, figures: dict[str, Any]) -> list[list]:
    """The table rows of one model at batch 1 and 1024; the goal ratio into ``figures``."""
    rows = []
    for batch in (1, 1024):
        variants = batch_variants(m, batch)
        interleave(variants, 2)  # warm-up: imports, first sessions
        times, _ = interleave(variants, rounds)
        for name, ts in times.items():
            ratio = paired_ratio(times, name, RAW)
            rows.append([m["name"], batch, name, fmt(median(ts) * 1e3), fmt(ratio)])
        if batch == 1024:
            figures["ratios"][m["name"]] = goal_ratio(variants[COMMAND], variants[RAW], rounds)
            try:
                figures["pieces"][m["name"]] = predict_pieces(m, batch, rounds)
            except Exception as exc:  # the breakdown is optional; the rest stands
                print(f"bench: predict breakdown skipped: {exc}", file=sys.stderr)
    return rows


def measure_processes(m: dict[str, Any], rounds: int, threads: int, tmp: Path) -> list[str]:
    """`tk predict` and the raw script as whole processes (for reference; not a goal)."""
    script = tmp / "raw_predict.py"
    script.write_text(RAW_PREDICT_SCRIPT)
    env = child_env(threads)
    npy, onnx = str(m["inputs"][1024]), str(m["onnx"])
    procs = {
        "tk predict model.onnx --input x.npy": lambda: run_process(
            [*tk_command(), "predict", onnx, "--input", npy], env, tmp
        ),
        "python raw_predict.py model.onnx x.npy": lambda: run_process(
            [sys.executable, str(script), onnx, npy, str(m["scale"])], env, tmp
        ),
    }
    ptimes, _ = interleave(procs, rounds)
    return [
        "### As whole processes (for reference; not a goal)",
        "",
        f"{m['name']}, batch 1024, {rounds} interleaved rounds.",
        "",
        *table(["process", "median s"], [[k, fmt(median(v))] for k, v in ptimes.items()]),
        "",
    ]


def measure(sizes: Any, threads: int, tmp: Path) -> tuple[dict[str, Any], list[str]]:
    """Every path for both models, the breakdown, and (full runs) whole processes."""
    skipped = predict_available()
    if skipped is not None:
        print(skipped, file=sys.stderr)
        return {"skipped": skipped}, ["## 4. Inference", "", skipped, ""]
    models = inference_models(tmp, sizes.quick)
    figures: dict[str, Any] = {"ratios": {}, "pieces": {}}
    rows = []
    for m in models:
        rows += measure_model(m, sizes.predict_rounds, figures)
    proc_lines = []
    if sizes.predict_process_rounds:
        proc_lines = measure_processes(models[-1], sizes.predict_process_rounds, threads, tmp)
    return figures, lines(figures, rows, sizes.predict_rounds) + proc_lines + export_link()


def goals(figures: dict[str, Any]) -> list[Goal]:
    """The worst model's `tk predict` / raw ratio at batch 1024."""
    ratios = figures.get("ratios", {})
    return [
        Goal(
            "predict",
            GOAL_TEXT,
            max(ratios.values()) if ratios else math.nan,
            1.10,
            "x",
            higher_is_better=False,
            detail=figures.get("skipped")
            or ", ".join(f"{k}: {fmt(v)}x" for k, v in ratios.items()),
        )
    ]


def lines(figures: dict[str, Any], rows: list[list], rounds: int) -> list[str]:
    """The table of paths and the breakdown of `tk predict`'s time."""
    out = [
        "## 4. Inference",
        "",
        "Each model trained by tk and exported with `tk export --format onnx` (the "
        "library call). End to end from a file path and an input `.npy` file to the "
        "labels and probabilities printed (into a string), in this process: imports "
        "warm, process start and Typer's argument parsing excluded (*the command* is "
        "`toolkit.predict.predict()` plus one `typer.echo` of `Prediction.lines()`, what "
        "`tk predict` runs after parsing; the *via cli.main()* row shows what parsing "
        "adds). *raw onnxruntime* is the same job written with onnxruntime and numpy "
        f"alone. Median of {rounds} interleaved rounds; *x raw* = median per-round "
        "time / the raw end-to-end time. The FashionMNIST MLP's inputs are uint8 images "
        "(scaled by 1/255 on the way in, as `tk predict` does). The goal's ratio is "
        "measured apart: the command and the raw path alone, alternating, each round "
        "after a `gc.collect()` (in the table the command always runs right after the "
        "eager path, and pays for the garbage rebuilding a torch model leaves).",
        "",
        *table(["model", "batch", "path", "ms", "x raw"], rows, left=3),
        "",
    ]
    pieces = figures["pieces"]
    if pieces:
        names = list(pieces)
        steps = list(pieces[names[0]])
        out += [
            "Where `tk predict`'s time goes at batch 1024 (each step timed alone, ms):",
            "",
            *table(
                ["step", *names],
                [[k, *(fmt(pieces[n].get(k, math.nan) * 1e3) for n in names)] for k in steps],
            ),
            "",
        ]
    return out


def export_link() -> list[str]:
    """A pointer to the export benchmark's page, when it exists."""
    if not EXPORT_PAGE.exists():
        return []
    return [
        "Steady-state latency per runtime (eager, onnxruntime, TorchScript, pt2) and "
        "export times: [benchmarks-export.md](benchmarks-export.md).",
        "",
    ]
