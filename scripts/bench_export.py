"""Export benchmark: fp32 vs int8-dynamic vs int8-static vs fp16 ONNX vs TorchScript vs pt2 vs
eager, for four models at batch 1 / 64 / 1024: latency, file size, held-out agreement; and
`tk predict` against raw onnxruntime.

Usage::

    .venv/bin/python scripts/bench_export.py [--out docs/benchmarks-export.md] [--quick]

Models: ``circle`` (registered, trained on make_circles), ``digits-cnn`` (registered,
sklearn's real 8x8 digits), the FashionMNIST MLP of the PyTorch tutorial
(784-512-512-10) trained one epoch on random 28x28 uint8 images (FashionMNIST
cannot be downloaded here), and torchvision's ``resnet18(weights=None,
num_classes=10)`` at 3x32x32, one epoch on random images. Random data leaves the
last two with near-tie logits, so their agreement figures are a pessimistic bound.

Every file is made with ``export_run`` (quantized ones from the verified float32
ONNX, with ``min_agreement=0`` so that each is written and its agreement shown)
and timed with ``toolkit.bench.bench_files``: all variants of a model and its eager
model round-robin in one loop per batch size, the same thread count for all.
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(REPO / "scripts"))

from bench.baselines import fashion_mlp  # noqa: E402  (scripts/ is this script's path)
from bench.page import cpu_name  # noqa: E402

from toolkit.bench import bench_files  # noqa: E402
from toolkit.config import TrainConfig  # noqa: E402
from toolkit.export import export_run  # noqa: E402
from toolkit.plugins import load_plugins  # noqa: E402
from toolkit.registry import (  # noqa: E402
    DatasetSpec,
    InputSpec,
    ModelSpec,
    Recipe,
    Registry,
    Source,
    Tolerance,
)
from toolkit.train import train  # noqa: E402

BATCHES = (1, 64, 1024)
SCHEMES = ("int8-dynamic", "int8-static", "fp16")
VARIANTS = ("fp32", *SCHEMES, "torchscript", "pt2")  # eager is timed beside them
# Timed rounds per batch size (each round calls every variant once), per model cost.
ROUNDS = {"small": (200, 100, 30), "resnet": (40, 10, 3)}
QUICK_ROUNDS = {"small": (30, 15, 5), "resnet": (5, 2, 1)}


def random_images(n: int, shape: tuple[int, ...], seed: int = 0) -> dict[str, Any]:
    """uint8 images of ``shape`` with random labels of 10 classes; the last 256 held out."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    y = rng.integers(0, 10, size=n)
    return {"train": (x[: n - 256], y[: n - 256]), "test": (x[n - 256 :], y[n - 256 :])}


def resnet18_32() -> torch.nn.Module:
    """torchvision's ResNet-18, untrained weights, 10 classes (run on 3x32x32 inputs)."""
    from torchvision.models import resnet18

    return resnet18(weights=None, num_classes=10)


def local_registry(quick: bool) -> Registry:
    """The fashion-shaped MLP and resnet18@32 with their random-image datasets."""
    reg = Registry()
    src = Source("bench", "tk-bench", "0")
    n_fashion, n_resnet = (1280, 512) if quick else (2304, 1280)
    specs = [
        ("fashion-mlp", fashion_mlp, (1, 28, 28), "random-28", n_fashion, Tolerance()),
        # Deep float32 convolutions differ from eager by ~1e-5 relative per layer.
        ("resnet18-32", resnet18_32, (3, 32, 32), "random-32", n_resnet, Tolerance(1e-4, 1e-3)),
    ]
    for name, build, shape, data, n, tol in specs:
        reg.add(
            ModelSpec(
                name=name,
                build=build,
                input=InputSpec(shape, name="images"),
                task="multiclass",
                default_dataset=data,
                recipe=Recipe(optimizer="adam", lr=1e-3, epochs=1, batch_size=64),
                tolerance=tol,
            ),
            src,
        )
        reg.add(
            DatasetSpec(
                name=data,
                load=lambda n=n, shape=shape: random_images(n, shape),
                feature_shape=shape,
                target="multiclass",
                num_classes=10,
                feature_scale=1 / 255,
            ),
            src,
        )
    return reg


def models(quick: bool) -> list[tuple[str, Registry, str, int]]:
    """(label, registry, model name, epochs) of every benchmarked model."""
    builtin = load_plugins(warn=False).registry
    local = local_registry(quick)
    return [
        ("circle", builtin, "circle", 100 if quick else 300),
        ("digits-cnn", builtin, "digits-cnn", 2 if quick else 5),
        ("fashion-mlp", local, "fashion-mlp", 1),
        ("resnet18@32", local, "resnet18-32", 1),
    ]


def export_all(run_dir: Path, reg: Registry) -> dict[str, dict[str, Any]]:
    """Every variant of one run: path, size, agreement, export and verify seconds."""
    quiet = {"registry": reg, "echo": lambda _s: None, "echo_err": lambda _s: None}
    out: dict[str, dict[str, Any]] = {}
    jobs: list[tuple[str, dict[str, Any]]] = [
        ("fp32", {"formats": "onnx"}),
        *((s, {"formats": "onnx", "quantize": s, "min_agreement": 0.0}) for s in SCHEMES),
        ("torchscript", {"formats": "torchscript"}),
        ("pt2", {"formats": "pt2"}),
    ]
    for variant, kw in jobs:
        (r,) = export_run(run_dir, overwrite=True, **kw, **quiet)
        held = r.verify.heldout[0] if r.verify and r.verify.heldout else None
        out[variant] = {
            "path": r.path,
            "size": r.size,
            "agreement": held.agreement if held else None,
            "accuracy": held.export if held else None,
            "eager_accuracy": held.eager if held else None,
            "export_s": r.seconds,
            "verify_s": r.verify_seconds,
            "passed": bool(r.verify and r.verify.passed),
        }
    return out


def bench_model(label: str, reg: Registry, model: str, epochs: int, root: Path, args: Any) -> Any:
    """Train, export every variant, and time them all next to eager."""
    t0 = time.perf_counter()
    config = TrainConfig(
        model=model, epochs=epochs, runs_dir=str(root), name="bench", seed=0, device="cpu",
        quiet=True,
    )  # fmt: skip
    run_dir = train(config, registry=reg, echo=lambda _s: None).run_dir
    train_s = time.perf_counter() - t0
    files = export_all(run_dir, reg)
    table = QUICK_ROUNDS if args.quick else ROUNDS
    rounds = table["resnet" if "resnet" in model else "small"]
    latency: dict[int, dict[str, dict[str, float]]] = {}
    paths = [files[v]["path"] for v in VARIANTS]
    names = {str(files[v]["path"]): v for v in VARIANTS}
    for batch, n in zip(BATCHES, rounds, strict=True):
        report = bench_files(paths, batch_sizes=[batch], threads=args.threads, rounds=n,
                             registry=reg)  # fmt: skip
        latency[batch] = {names.get(str(t.path), "eager"): t.latency[batch] for t in report.targets}
    eager_size = (run_dir / "model.safetensors").stat().st_size
    return {"files": files, "latency": latency, "train_s": train_s, "eager_size": eager_size}


def predict_ratios(tmp: Path, quick: bool) -> dict[str, float]:
    """`tk predict` / raw onnxruntime at batch 1024 (the goal of scripts/bench, section 4)."""
    from bench.sections.inference import COMMAND, RAW, batch_variants, inference_models
    from bench.timing import interleave, paired_ratio

    out = {}
    for m in inference_models(tmp, quick):
        variants = {k: v for k, v in batch_variants(m, 1024).items() if k in (COMMAND, RAW)}
        interleave(variants, 3)
        times, _ = interleave(variants, 15 if quick else 60)
        out[m["name"]] = paired_ratio(times, COMMAND, RAW)
    return out


def _size(n: int) -> str:
    return f"{n / 1024:.1f} kB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MB"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def render_models(results: dict[str, Any]) -> list[str]:
    """One table per model: every variant's size, agreement and p50 at each batch size."""
    lines = []
    for label, res in results.items():
        files, lat = res["files"], res["latency"]
        fp32 = files["fp32"]["size"]
        acc = files["fp32"]["eager_accuracy"]
        lines += [
            f"### {label}",
            "",
            f"Trained in {res['train_s']:.1f} s; eager held-out accuracy {_pct(acc)}.",
            "",
            "| variant | size | x fp32 size | agreement | accuracy | "
            + " | ".join(f"p50 ms @{b}" for b in BATCHES)
            + " | x eager @1024 |",
            "|---|---:|---:|---:|---:|" + "---:|" * len(BATCHES) + "---:|",
        ]
        for v in ("eager", *VARIANTS):
            f = files.get(v)
            size = f["size"] if f else res["eager_size"]
            agree = _pct(f["agreement"]) if f else "-"
            if f and f["agreement"] is not None and f["agreement"] < 0.99:
                agree += " (refused by default)"
            cells = [f"{lat[b][v]['p50_ms']:.3f}" for b in BATCHES]
            x = lat[1024]["eager"]["p50_ms"] / lat[1024][v]["p50_ms"]
            lines.append(
                f"| {v} | {_size(size)} | {size / fp32:.2f} | {agree} | "
                f"{_pct(f['accuracy']) if f else _pct(acc)} | "
                + " | ".join(cells)
                + f" | {x:.2f} |"
            )
        lines.append("")
    return lines


def render_tails(results: dict[str, Any]) -> list[str]:
    """p50 / p90 / p99 of every variant at every batch size."""
    lines = [
        "## Latency percentiles (ms): p50 / p90 / p99",
        "",
        "| model | batch | " + " | ".join(("eager", *VARIANTS)) + " |",
        "|---|---:|" + "---:|" * (len(VARIANTS) + 1),
    ]
    for label, res in results.items():
        for b in BATCHES:
            cells = [
                "{p50_ms:.3f} / {p90_ms:.3f} / {p99_ms:.3f}".format(**res["latency"][b][v])
                for v in ("eager", *VARIANTS)
            ]
            lines.append(f"| {label} | {b} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def render_exports(results: dict[str, Any]) -> list[str]:
    """Export and verification wall time of every variant."""
    lines = [
        "## Export and verification wall time (s)",
        "",
        "One `export_run` per variant (the quantized ones re-export and verify the float32",
        "ONNX file first, then quantize and verify the result); *verify* is the batch sweep",
        "plus the held-out check, for the float32 source and the file written.",
        "",
        "| model | " + " | ".join(VARIANTS) + " |",
        "|---|" + "---:|" * len(VARIANTS),
    ]
    for label, res in results.items():
        f = res["files"]
        cells = [f"{f[v]['export_s']:.2f} + {f[v]['verify_s']:.2f}" for v in VARIANTS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def header(args: Any, seconds: float) -> list[str]:
    """Title, the command that made the page, the machine."""
    import onnx
    import onnxruntime

    return [
        "# Export and inference benchmark",
        "",
        "Produced by:",
        "",
        f"    .venv/bin/python scripts/bench_export.py{' --quick' if args.quick else ''}"
        + (f" --threads {args.threads}" if args.threads != 1 else ""),
        "",
        f"Machine: {cpu_name()} ({platform.machine()}), {os.cpu_count()} CPUs, "
        f"{args.threads} thread(s) for every runtime (torch and onnxruntime alike), "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime "
        f"{onnxruntime.__version__} (CPUExecutionProvider). Date {time.strftime('%Y-%m-%d')}; "
        f"the whole run took {seconds:.0f} s.",
        "",
        "Other processes may share the CPU: absolute times move from run to run, the",
        "ratios (measured interleaved, in the same loop) much less.",
        "",
        "## Every variant, per model",
        "",
        "*fp32* is `tk export --format onnx`; *int8-dynamic*, *int8-static*, *fp16* are",
        "`--quantize` made from it (static calibration: 256 training rows); *torchscript*,",
        "*pt2* the other formats; *eager* the run's model under `torch.inference_mode()`.",
        "*agreement*: identical predicted labels with the eager model over the whole",
        "held-out split (`tk verify`'s held-out check; `tk export --quantize` refuses a file",
        "below 99%, this script writes it anyway to show the figure). *x eager* = eager",
        "p50 / variant p50 at batch 1024 (above 1: faster). Sizes are file sizes (eager:",
        "`model.safetensors`).",
        "",
    ]


def render(results: dict[str, Any], ratios: dict[str, float], args: Any, seconds: float) -> str:
    """The markdown page."""
    worst = max(ratios.values()) if ratios else float("nan")
    lines = header(args, seconds) + render_models(results) + render_tails(results)
    lines += render_exports(results)
    lines += [
        "## `tk predict` vs raw onnxruntime",
        "",
        "Batch 1024, end to end from an ONNX file and a `.npy` file to the printed labels and",
        "probabilities, in this process (scripts/bench section 4's *command* and *raw*",
        "paths, interleaved; median of the per-round ratios). Goal: at most 1.10x.",
        "",
        "| model | tk predict / raw onnxruntime |",
        "|---|---:|",
        *(f"| {k} | {v:.2f}x |" for k, v in ratios.items()),
        "",
        f"Worst: {worst:.2f}x ({'met' if worst <= 1.10 else 'missed'}).",
        "",
        "## Notes",
        "",
        "- fashion-mlp and resnet18@32 are trained one epoch on random images with random",
        "  labels: their logits sit near ties, so a small numeric change flips a label and",
        "  their agreement is a pessimistic bound (circle and digits-cnn learn real data).",
        "- int8 pays off where the weights dominate (the MLPs, resnet18); for a 2-10-10-1",
        "  MLP the quantize/dequantize nodes cost more than the tiny matrix products.",
        "- fp16 on onnxruntime's CPU provider halves the file; most CPU kernels compute in",
        "  float32, so casts are added and it is rarely faster there (it is meant for GPUs).",
        "- Optimized graphs (`--optimize`, onnxruntime's basic level) verify like any",
        "  export; onnxruntime applies the same basic optimizations when it loads a file,",
        "  so they change load time rather than run time, and are not timed here.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the benchmark and write the markdown page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks-export.md"))
    parser.add_argument("--quick", action="store_true", help="smaller data, fewer rounds")
    parser.add_argument("--threads", type=int, default=1, help="threads for every runtime")
    args = parser.parse_args()
    # One thread by default: on a machine shared with other work, multi-threaded
    # kernels mostly measure the scheduler, not the runtime.
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, reg, model, epochs in models(args.quick):
            print(f"benchmarking {label} ...", flush=True)
            results[label] = bench_model(label, reg, model, epochs, Path(tmp) / "runs", args)
        print("timing tk predict ...", flush=True)
        ratios = predict_ratios(Path(tmp) / "predict", args.quick)
    page = render(results, ratios, args, time.perf_counter() - start)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(page)
    print(page)


if __name__ == "__main__":
    main()
