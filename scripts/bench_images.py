"""Benchmark: augmentation, fine-tuning a tk-pretrained backbone, and torch threads.

Usage::

    .venv/bin/python scripts/bench_images.py [--only fewshot,finetune,augcost,threads]
        [--rounds 3] [--out docs/benchmarks-images.md]

- fewshot: scikit-learn's digits as an image folder, 15 images a class in train/,
  the other 1,647 in test/; ``cnn`` with ``--augment standard`` against ``none``,
  test accuracy, mean of seeds 1, 2, 3 (goal: at least +3 points).
- finetune: ResNet-18 pretrained by tk on digits 0-4 (its weights saved in the
  torch hub cache under torchvision's file name), then fine-tuned on 20 images a
  class of digits 5-9: ``--pretrained --freeze backbone`` against ``--pretrained``
  (everything trains) against training from scratch: steps/s and test accuracy.
- augcost: samples/s of in-memory training epochs (``toolkit.train.fit``, a 1%
  validation split) with ``--augment standard`` against ``none``, ``cnn`` on the
  digits at 32x32 (goal: >= 0.8x).
- threads: ``tk train`` with the default threads against ``--threads 1`` and
  ``--threads 2`` for circle, digits-mlp, digits-cnn and resnet18 at 32x32 (goal:
  the default within 5% of the best), samples/s of the fit from summary.json.

Timed comparisons are interleaved round by round and reported as medians; the
accuracies are what the runs reached. The figures land in docs/benchmarks-images.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SECTIONS = ("fewshot", "finetune", "augcost", "threads")


def write_digits(root: Path, train_per_class: int, classes: range = range(10)) -> Path:
    """The digits as ``root/train/<d>/`` (``train_per_class`` each) and ``root/test/<d>/``."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    seen: dict[int, int] = {}
    for i, (image, label) in enumerate(zip(bunch.images, bunch.target, strict=True)):
        if int(label) not in classes:
            continue
        k = seen[int(label)] = seen.get(int(label), -1) + 1
        split = "train" if k < train_per_class else "test"
        folder = root / split / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.round(image * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels, "L").save(folder / f"{i:04d}.png")
    return root


def _train(**options: Any) -> dict[str, Any]:
    """``tk train`` in this process (quiet); the run's summary.json."""
    from toolkit.config import TrainConfig
    from toolkit.train import train

    config = TrainConfig(quiet=True, overwrite=True, **options)
    return train(config, echo=lambda _line: None).summary


# --------------------------------------------------------------------- few-shot
def bench_fewshot(tmp: Path, epochs: int = 60) -> dict[str, Any]:
    root = write_digits(tmp / "fewshot", 15)
    out: dict[str, Any] = {"epochs": epochs, "train_images": 150}
    for aug in ("none", "standard"):
        accs = []
        for seed in (1, 2, 3):
            data = {"path": str(root), "grayscale": True}
            summary = _train(model="cnn", dataset="imagefolder", epochs=epochs, batch_size=16,
                             data_params=data, seed=seed, augment=aug,
                             runs_dir=str(tmp / "runs"), name=f"{aug}-{seed}")  # fmt: skip
            accs.append(summary["test"]["accuracy"])
        out[aug] = {"accuracies": accs, "mean": statistics.mean(accs)}
    out["gain_points"] = 100 * (out["standard"]["mean"] - out["none"]["mean"])
    return out


# -------------------------------------------------------------------- fine-tuning
def _cache_weights(home: Path, state: dict[str, Any]) -> None:
    import torch

    path = home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def bench_finetune(tmp: Path, epochs: int = 10) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file
    from torchvision.models import resnet18

    home = tmp / "torch_home"
    os.environ["TORCH_HOME"], os.environ["TK_OFFLINE"] = str(home), "1"
    source = write_digits(tmp / "digits04", 100, range(5))
    target = write_digits(tmp / "digits59", 20, range(5, 10))
    # One thread for every variant: steps/s compare like with like on a shared machine.
    common = {"dataset": "imagefolder", "runs_dir": str(tmp / "runs"), "batch_size": 16,
              "threads": 1}  # fmt: skip
    size = {"grayscale": True, "size": "32x32"}
    # 1. the backbone tk pretrains: digits 0-4, from torchvision's initialization
    torch.manual_seed(0)
    _cache_weights(home, resnet18(weights=None).state_dict())
    pre = _train(model="resnet18", pretrained="default", params={"resize": 32}, epochs=3,
                 data_params={"path": str(source / "train"), **size}, name="pretrain",
                 **common)  # fmt: skip
    weights = load_file(str(tmp / "runs" / "resnet18" / "pretrain" / "model.safetensors"))
    _cache_weights(home, {k[4:]: v for k, v in weights.items() if k.startswith("net.")})
    # 2. digits 5-9, 20 images a class: frozen, fully fine-tuned, from scratch
    out: dict[str, Any] = {"pretrain_test_accuracy": pre["test"]["accuracy"], "epochs": epochs}
    variants = {
        "frozen backbone": {"pretrained": "default", "freeze": "backbone"},
        "full fine-tuning": {"pretrained": "default"},
        "scratch": {},
    }
    for name, extra in variants.items():
        params = {"resize": 32} if extra else {}
        summary = _train(model="resnet18", params=params, epochs=epochs,
                         data_params={"path": str(target), **size},
                         name=name.replace(" ", "-"), **common, **extra)  # fmt: skip
        out[name] = {
            "test_accuracy": summary["test"]["accuracy"],
            "steps_per_s": summary["steps"] / summary["seconds"],
            "threads": summary["torch_threads"],
        }
    return out


# ------------------------------------------------------------- augmentation cost
def bench_augcost(tmp: Path, rounds: int, epochs: int = 3) -> dict[str, Any]:
    import torch

    from toolkit.augment import parse
    from toolkit.models import build_model, load_data
    from toolkit.plugins import get_registry
    from toolkit.registry import Recipe
    from toolkit.splits import carve_validation
    from toolkit.train import fit
    from toolkit.train.state import FitOptions

    torch.set_num_threads(1)  # both variants alike; two threads on a busy machine thrash
    root = write_digits(tmp / "augcost", 10_000)
    reg = get_registry()
    spec = reg.dataset("imagefolder")
    params = spec.resolve_params({"path": str(root / "train"), "size": "32x32", "grayscale": True})
    data = carve_validation(load_data(spec, params), 0.01, 0)
    mspec = reg.model("cnn").for_dataset(data.spec)
    recipe = Recipe(optimizer="adam", lr=1e-3, epochs=epochs, batch_size=64)
    rates: dict[str, list[float]] = {"none": [], "standard": []}
    for r in range(rounds):
        for aug in ("none", "standard") if r % 2 == 0 else ("standard", "none"):
            model = build_model(mspec, mspec.resolve_params({}), 0)
            history = fit(model, data, recipe, task="multiclass",
                          options=FitOptions(augment=parse(aug)))  # fmt: skip
            rates[aug].append(history.samples / history.seconds)
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"rates": rates, "median": med, "ratio": med["standard"] / med["none"],
            "rows": len(data.train), "epochs": epochs}  # fmt: skip


# ------------------------------------------------------------------------ threads
def _tk(args: list[str], cwd: Path) -> dict[str, Any]:
    """``tk train ARGS`` in a fresh process (no OMP_NUM_THREADS): its summary.json. A
    process per run: a thread pool left spinning by a 2-thread run slows the next one."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-m", "toolkit", "train", *args, "--quiet",
                           "--overwrite", "--name", "t"], cwd=cwd, env=env,
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode:
        raise RuntimeError(proc.stderr)
    return json.loads((cwd / "runs" / args[0] / "t" / "summary.json").read_text())


def bench_threads(tmp: Path, rounds: int) -> dict[str, Any]:
    """samples/s of each model's fit with the default threads, 1 and 2 (interleaved)."""
    digits = write_digits(tmp / "threads", 20)
    image = ["--dataset", "imagefolder", "--data-param", f"path={digits / 'train'}",
             "--data-param", "grayscale=true", "--data-param", "size=32x32"]  # fmt: skip
    models = {
        "circle": ["circle"],
        "digits-mlp": ["digits-mlp", "--epochs", "5"],
        "digits-cnn": ["digits-cnn", "--epochs", "2"],
        "resnet18 32x32": ["resnet18", *image, "--epochs", "1"],
    }
    variants = {"default": [], "1 thread": ["--threads", "1"], "2 threads": ["--threads", "2"]}
    out: dict[str, Any] = {}
    for name, args in models.items():
        rates: dict[str, list[float]] = {v: [] for v in variants}
        chosen: list[int] = []
        for r in range(rounds):
            order = list(variants)[r % 3 :] + list(variants)[: r % 3]
            for v in order:
                summary = _tk([*args, *variants[v]], tmp)
                rates[v].append(summary["samples_per_second"])
                if v == "default":
                    chosen.append(summary["torch_threads"])
        med = {v: statistics.median(x) for v, x in rates.items()}
        out[name] = {"median": med, "default_threads": chosen,
                     "default_vs_best": med["default"] / max(med.values())}  # fmt: skip
    return out


# --------------------------------------------------------------------------- page
def page(results: dict[str, Any], args: argparse.Namespace, took: float) -> str:
    lines = [
        "# Images: augmentation, fine-tuning, threads",
        "",
        "Measured by `scripts/bench_images.py` (command below) on "
        f"{platform.machine()} with {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {took / 60:.1f} minutes. The machine's two cores "
        "were shared with other engineers' work while it ran, so every timed figure is a "
        "ratio of variants measured interleaved in the same run (medians of "
        f"{args.rounds} rounds), never an absolute time to compare across runs.",
        "",
        "    .venv/bin/python scripts/bench_images.py --rounds " + str(args.rounds),
        "",
    ]
    fs = results.get("fewshot")
    if fs:
        ok = "met" if fs["gain_points"] >= 3 else "NOT met"
        lines += [
            "## Few-shot digits: `--augment standard` against `none`",
            "",
            f"`cnn`, {fs['train_images']} training images (15 a class, 10% of them held out "
            f"for validation), {fs['epochs']} epochs, batch 16; test accuracy on the other "
            "1,647 digits. `standard` is `crop=0.8,rotate=10,color=0.2` (no flip: a flipped "
            "digit is another digit or none).",
            "",
            "| augment | seed 1 | seed 2 | seed 3 | mean |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for aug in ("none", "standard"):
            a = fs[aug]["accuracies"]
            lines.append(f"| {aug} | " + " | ".join(f"{100 * x:.2f}%" for x in a)
                         + f" | **{100 * fs[aug]['mean']:.2f}%** |")  # fmt: skip
        lines += ["", f"Gain: **{fs['gain_points']:+.2f} points** (goal: +3; {ok}).", ""]
    ft = results.get("finetune")
    if ft:
        lines += [
            "## Fine-tuning a backbone tk pretrained",
            "",
            "ResNet-18 trained by tk on 100 images a class of digits 0-4 (32x32 grayscale, "
            "3 epochs, test "
            f"accuracy {100 * ft['pretrain_test_accuracy']:.2f}%), its weights saved in the "
            "torch hub cache as `resnet18-f37072fd.pth` (torchvision's file name), then "
            f"trained on 20 images a class of digits 5-9 for {ft['epochs']} epochs (batch 16, "
            "one thread each; `--param resize=32` keeps the pretrained runs at the images' "
            "size). Test accuracy on the other digits 5-9.",
            "",
            "| run | test accuracy | steps/s | threads |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name in ("frozen backbone", "full fine-tuning", "scratch"):
            r = ft[name]
            lines.append(f"| {name} | {100 * r['test_accuracy']:.2f}% | "
                         f"{r['steps_per_s']:.1f} | {r['threads']} |")  # fmt: skip
        lines.append("")
    ac = results.get("augcost")
    if ac:
        ok = "met" if ac["ratio"] >= 0.8 else "NOT met"
        med = ac["median"]
        lines += [
            "## Augmentation cost (in memory, on the training device)",
            "",
            f"`cnn` on the 1,797 digits at 32x32 ({ac['rows']} training rows), batch 64, "
            f"{ac['epochs']} epochs per round through `toolkit.train.fit`, one thread.",
            "",
            "| augment | samples/s (median) |",
            "| --- | ---: |",
            f"| none | {med['none']:,.0f} |",
            f"| standard | {med['standard']:,.0f} |",
            "",
            f"standard / none: **{ac['ratio']:.2f}x** (goal >= 0.8x; {ok}).",
            "",
        ]
    th = results.get("threads")
    if th:
        lines += [
            "## Threads: the default against 1 and 2",
            "",
            "`tk train` in a fresh process per run (no `OMP_NUM_THREADS`), the variants "
            "interleaved, samples/s of the fit from summary.json. The default is one thread when a "
            "training step is under 1e8 floating-point operations (counted once with "
            "`torch.utils.flop_counter`), else every core the machine leaves idle (cores "
            "less the smaller of the 1-minute load average and the processes runnable now); "
            "the column gives what it chose in each round.",
            "",
            "| model | default threads | default | 1 thread | 2 threads | default / best |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, r in th.items():
            m = r["median"]
            chose = "/".join(str(t) for t in r["default_threads"])
            lines.append(f"| {name} | {chose} | {m['default']:,.0f} | "
                         f"{m['1 thread']:,.0f} | {m['2 threads']:,.0f} | "
                         f"{r['default_vs_best']:.2f} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections and write the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks-images.md"))
    parser.add_argument("--json", default=None, help="also write the raw figures here")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    start = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for section in chosen:
            t0 = time.perf_counter()
            if section == "fewshot":
                results[section] = bench_fewshot(tmp)
            elif section == "finetune":
                results[section] = bench_finetune(tmp)
            elif section == "augcost":
                results[section] = bench_augcost(tmp, args.rounds)
            elif section == "threads":
                results[section] = bench_threads(tmp, args.rounds)
            print(f"{section}: {time.perf_counter() - t0:.0f} s", json.dumps(results[section]),
                  flush=True)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    Path(args.out).write_text(page(results, args, time.perf_counter() - start) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
