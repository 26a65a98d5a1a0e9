"""Export and inference benchmark: export wall time per format, and eager vs
onnxruntime vs TorchScript vs pt2 latency at batch 1 / 64 / 1024.

Usage::

    .venv/bin/python scripts/bench_export.py [--out docs/benchmarks-export.md] [--quick]

Two models: ``circle`` (the registered 2-10-10-1 MLP) and the FashionMNIST MLP of
the PyTorch basics tutorial (Flatten-784-512-ReLU-512-ReLU-10: the registered
``fashion-mnist-mlp``, or the same layers built here when it is not registered),
trained one epoch on random 28x28 uint8 images, because FashionMNIST cannot be
downloaded on this machine; latency does not depend on the weights.

Runtimes are timed round-robin (one call each, in turn, the order rotated, many
rounds; ``bench.timing.interleave``, shared with ``scripts/bench``) and each is
summarised by its median, so a burst of load from another process hits all of
them alike; the figures that matter are the ratios within one run.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.baselines import fashion_mlp  # noqa: E402  (scripts/ is this script's path)
from bench.page import cpu_name  # noqa: E402
from bench.timing import interleave, median  # noqa: E402

from toolkit.config import TrainConfig  # noqa: E402
from toolkit.export import export_run  # noqa: E402
from toolkit.models import rebuild_model  # noqa: E402
from toolkit.plugins import load_plugins  # noqa: E402
from toolkit.registry import DatasetSpec, InputSpec, ModelSpec, Recipe, Registry  # noqa: E402
from toolkit.runs import open_run  # noqa: E402
from toolkit.train import train  # noqa: E402
from toolkit.verify import load_runners  # noqa: E402

BATCHES = (1, 64, 1024)


def random_images(n: int = 2048) -> dict[str, Any]:
    """FashionMNIST-shaped stand-in data: uint8 28x28 images, 10 classes."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, 1, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=n)
    return {"train": (x[: n - 256], y[: n - 256]), "test": (x[n - 256 :], y[n - 256 :])}


def registries() -> dict[str, tuple[Registry, str]]:
    """(registry, model name) for each benchmarked model."""
    from toolkit.registry import Source

    builtin = load_plugins(warn=False).registry
    local = Registry()
    source = Source("bench", "tk-bench", "0")
    # The registered model when the built-in plugin has it (same architecture).
    registered = builtin.models.get("fashion-mnist-mlp")
    local.add(
        ModelSpec(
            name="fashion-mlp",
            build=registered.build if registered else fashion_mlp,
            params=registered.params if registered else (),
            input=registered.input if registered else InputSpec((1, 28, 28), name="images"),
            task="multiclass",
            default_dataset="random-images",
            recipe=Recipe(optimizer="sgd", lr=1e-3, epochs=1, batch_size=64),
        ),
        source,
    )
    local.add(
        DatasetSpec(
            name="random-images",
            load=random_images,
            feature_shape=(1, 28, 28),
            target="multiclass",
            num_classes=10,
            feature_scale=1 / 255,
        ),
        source,
    )
    return {"circle": (builtin, "circle"), "fashion-mlp": (local, "fashion-mlp")}


def onnx_session(path: Path, threads: int) -> Any:
    """An onnxruntime CPU session using ``threads`` intra-op threads, as a function."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def time_round_robin(
    fns: dict[str, Any], x: np.ndarray, min_seconds: float, min_rounds: int = 20
) -> dict[str, float]:
    """Median seconds per call of each function on ``x``, timed in interleaved rounds."""
    calls = {k: functools.partial(fn, x) for k, fn in fns.items()}
    interleave(calls, 3)  # warm-up: first calls allocate and pick kernels
    times, _ = interleave(calls, min_rounds, min_seconds)
    return {k: median(v) for k, v in times.items()}


def bench_model(label: str, reg: Registry, model: str, root: Path, args: Any) -> dict[str, Any]:
    """Train, export (timed, repeated) and time every runtime for one model."""
    epochs = 300 if model == "circle" else 1
    config = TrainConfig(
        model=model, epochs=epochs, runs_dir=str(root), name=label, seed=0, device="cpu", quiet=True
    )
    run_dir = train(config, registry=reg, echo=lambda _s: None).run_dir

    exports: dict[str, list[float]] = {}
    verifies: dict[str, list[float]] = {}
    paths: dict[str, Path] = {}
    for _ in range(args.repeats):
        results = export_run(
            run_dir,
            "all",
            overwrite=True,
            registry=reg,
            echo=lambda _s: None,
            echo_err=lambda _s: None,
        )
        for r in results:
            exports.setdefault(r.format, []).append(r.seconds)
            verifies.setdefault(r.format, []).append(r.verify_seconds)
            paths[r.format] = r.path

    eager = rebuild_model(open_run(run_dir), reg)

    def run_eager(x: np.ndarray) -> Any:
        with torch.inference_mode():
            return eager(torch.from_numpy(x))

    def run_eager_grad(x: np.ndarray) -> Any:
        # What a plain model(x) costs when the caller forgets no_grad/inference_mode.
        return eager(torch.from_numpy(x))

    fns = {
        "eager": run_eager,
        "eager-grad": run_eager_grad,
        "onnxruntime-cpu": onnx_session(paths["onnx"], args.threads),
    }
    for fmt in ("torchscript", "pt2"):
        runner = load_runners(paths[fmt], fmt)[0]
        fns[runner.name] = runner.run
    shape = reg.model(model).input.shape
    latency = {}
    rng = np.random.default_rng(0)
    for batch in BATCHES:
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        latency[batch] = time_round_robin(fns, x, args.seconds)
    return {"exports": exports, "verifies": verifies, "latency": latency}


def render(results: dict[str, Any], args: Any, seconds: float) -> str:
    """The markdown page."""
    import onnx
    import onnxruntime

    lines = [
        "# Export and inference benchmark",
        "",
        "Produced by:",
        "",
        f"    .venv/bin/python scripts/bench_export.py{' --quick' if args.quick else ''}"
        + (f" --threads {args.threads}" if args.threads != 1 else ""),
        "",
        f"Machine: {cpu_name()} ({platform.machine()}), {os.cpu_count()} CPUs, "
        f"{args.threads} thread(s) for "
        "every runtime (torch and onnxruntime alike), "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, onnx {onnx.__version__}, "
        f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider). "
        f"Date {time.strftime('%Y-%m-%d')}; the whole run took {seconds:.0f} s.",
        "",
        "Other processes may share the CPU (2 cores here): absolute times move from run",
        "to run, the ratios (measured interleaved, in the same run) much less.",
        "",
        "## Export wall time per format",
        "",
        f"`export_run(..., 'all')` repeated {args.repeats} times per model in one process;",
        "*first* is a model's first export (for the first model also the process's first,",
        "which pays one-time imports such as onnxscript for the dynamo exporter), *warm*",
        "the median of the others. Verify = the batch sweep",
        "(1, 7, 64; four input cases) against the eager model.",
        "",
        "| model | format | first (s) | warm (s) | verify (s) |",
        "|---|---|---:|---:|---:|",
    ]
    for label, res in results.items():
        for fmt, times in res["exports"].items():
            warm = median(times[1:]) if len(times) > 1 else times[0]
            ver = median(res["verifies"][fmt])
            lines.append(f"| {label} | {fmt} | {times[0]:.2f} | {warm:.2f} | {ver:.2f} |")
    lines += [
        "",
        "## Latency: eager vs onnxruntime vs TorchScript vs pt2",
        "",
        "Median time per call (ms) on CPU, input already a float32 numpy array; eager",
        "runs under `torch.inference_mode()`. *x eager* = eager time / runtime time",
        "(above 1: faster than eager). *eager+grad* is a plain `model(x)` with autograd",
        "recording (no `no_grad`/`inference_mode`), the way a quick script often calls it.",
        "TorchScript and pt2 are loaded with `torch.jit.load` / `torch.export.load(...).module()`",
        "and called under `torch.no_grad()`, as `tk verify` runs them.",
        "",
        "| model | batch | eager ms | eager+grad ms | x eager | onnxruntime ms | x eager "
        "| TorchScript ms | x eager | pt2 ms | x eager |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, res in results.items():
        for batch, t in res["latency"].items():
            e = t["eager"]
            cells = [f"{1e3 * e:.3f}"]
            for name in ("eager-grad", "onnxruntime-cpu", "torch.jit", "torch.export"):
                cells += [f"{1e3 * t[name]:.3f}", f"{e / t[name]:.2f}"]
            lines.append(f"| {label} | {batch} | " + " | ".join(cells) + " |")

    def ratios(name: str) -> str:
        return "; ".join(
            f"{label} "
            + " / ".join(f"{t['eager'] / t[name]:.1f}x" for t in res["latency"].values())
            for label, res in results.items()
        )

    sizes = "/".join(map(str, BATCHES))
    lines += [
        "",
        "## Summary",
        "",
        f"Speed-up over eager at batch {sizes} (above 1: faster):",
        "",
        f"- onnxruntime: {ratios('onnxruntime-cpu')}",
        f"- TorchScript: {ratios('torch.jit')}",
        f"- pt2 (`ExportedProgram.module()`): {ratios('torch.export')}",
        "",
        "DESIGN.md's note that onnxruntime runs the tiny models 3-4x faster than eager at",
        "batch 1 is not reproduced by this script, which times eager under",
        "`inference_mode` on the same thread count as onnxruntime, interleaved.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the benchmark and write the markdown page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks-export.md"))
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke test)")
    parser.add_argument("--threads", type=int, default=1, help="threads for every runtime")
    args = parser.parse_args()
    args.repeats = 2 if args.quick else 4
    args.seconds = 0.3 if args.quick else 2.0
    # Every runtime gets the same number of threads. One by default: on a machine
    # shared with other work, multi-threaded kernels mostly measure the scheduler
    # (a descheduled worker stalls the whole batch), not the runtime.
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (reg, model) in registries().items():
            print(f"benchmarking {label} ...", flush=True)
            results[label] = bench_model(label, reg, model, Path(tmp), args)
    page = render(results, args, time.perf_counter() - start)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(page)
    print(page)


if __name__ == "__main__":
    main()
