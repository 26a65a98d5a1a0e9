"""Benchmark: tk's ``csv`` and ``imagefolder`` loaders against pyarrow and torchvision alone.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_data.py \
        [--rows 1000000] [--images 10000] [--workers 2] [--rounds 5] [--out docs/benchmarks-data.md]

CSV: a 1,000,000-row x 20-column file (19 float features, an integer class
target) read by ``pyarrow.csv.read_csv`` alone, by the ``csv`` loader (read, infer
the task, check every value, split), and by the loader plus ``toolkit.data.prepare``
(tensors, what ``tk train`` holds). Goal: the loader under 3x pyarrow alone.

Images: 10,000 32x32 RGB PNGs in 10 class folders. A hand-written torchvision
loop (``ImageFolder`` + ``ToTensor`` + ``DataLoader(batch 64, shuffle, N workers,
persistent)``) against tk's two paths through tk's own batching code: streamed
(``max-memory-mb=0``: the ``ImageFiles`` Dataset in tk's persistent ``Stream``,
N workers) and in memory (decoded once, batches by ``index_select``). Figures
are images per second of an epoch after the first (workers up) and of the
first epoch including all set-up (the folder scan, tk's up-front check of every
file, worker start). Goal: tk >= 1.0x torchvision.

Every comparison is interleaved round by round (``scripts/bench/timing.py``) and
reported as medians.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench.timing import interleave, median, paired_ratio  # noqa: E402  (scripts/ on the path)

EPOCHS = 3  # per round: the first (set-up included) and two steady ones
BATCH = 64


# --------------------------------------------------------------------------- CSV
def write_csv(path: Path, rows: int) -> None:
    """``rows`` x 20 columns: f0..f18 floats and an integer class target y (0..2)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(0)
    cols = {f"f{i}": rng.normal(size=rows).round(6) for i in range(19)}
    cols["y"] = rng.integers(0, 3, size=rows)
    pacsv.write_csv(pa.table(cols), str(path))


def bench_csv(path: Path, rounds: int) -> dict[str, Any]:
    """Interleaved times of pyarrow alone, the loader, and the loader plus prepare."""
    import pyarrow.csv as pacsv
    from tk_data.tabular import load_csv

    from toolkit.data import prepare
    from toolkit.plugins import get_registry

    spec = get_registry().dataset("csv")
    variants = {
        "pyarrow": lambda: pacsv.read_csv(str(path)).num_rows,
        "loader": lambda: len(load_csv(path=str(path), target="y")["train"][0]),
        "prepare": lambda: len(prepare(spec, load_csv(path=str(path), target="y")).train),
    }
    for run in variants.values():  # imports done and the page cache warm for everyone
        run()
    times, _ = interleave(variants, rounds)
    return {
        "times": times,
        "loader_ratio": paired_ratio(times, "loader", "pyarrow"),
        "prepare_ratio": paired_ratio(times, "prepare", "pyarrow"),
    }


# ------------------------------------------------------------------------ images
def write_pngs(root: Path, n: int) -> None:
    """``n`` 32x32 RGB PNGs over 10 class folders: smooth blobs plus noise, like photos."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(10):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((32, 32), Image.Resampling.BILINEAR)
        noisy = np.clip(np.asarray(img, np.int16) + rng.integers(-8, 9, (32, 32, 3)), 0, 255)
        Image.fromarray(noisy.astype(np.uint8)).save(root / f"class{i % 10}" / f"{i:05d}.png")


def _epochs(batches: Any, epochs: int) -> tuple[list[float], int]:
    """Seconds of each epoch of ``batches()`` (an iterator per epoch), images seen."""
    seen, times = 0, []
    for _ in range(epochs):
        start = time.perf_counter()
        for x, _y in batches():
            x.sum()  # touch the batch, as a model's first layer would
            seen += len(x)
        times.append(time.perf_counter() - start)
    return times, seen


def torchvision_loop(root: Path, workers: int) -> dict[str, Any]:
    """The hand-written baseline: ImageFolder + ToTensor + a persistent DataLoader."""
    import torch
    from torchvision import datasets, transforms

    start = time.perf_counter()
    ds = datasets.ImageFolder(str(root), transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(
        ds, batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )
    setup = time.perf_counter() - start
    times, _ = _epochs(lambda: iter(loader), EPOCHS)
    return {"n": len(ds), "setup": setup, "epochs": times}


def tk_loop(root: Path, workers: int, stream: bool) -> dict[str, Any]:
    """tk's loader and batching: the ``Stream`` DataLoader, or index batches in memory."""
    import torch
    from tk_data.images import load_imagefolder

    from toolkit.data import prepare
    from toolkit.plugins import get_registry
    from toolkit.tasks import get_task
    from toolkit.train.batches import Stream, train_batches

    start = time.perf_counter()
    raw = load_imagefolder(path=str(root), test_fraction=0.2, max_memory_mb=0 if stream else 1024)
    data = prepare(get_registry().dataset("imagefolder"), raw)
    device, task = torch.device("cpu"), get_task(data.spec.target)
    gen = torch.Generator().manual_seed(0)
    feed = Stream(data.train, BATCH, gen, device, (0, 1), workers) if stream else None
    setup = time.perf_counter() - start

    def batches() -> Any:
        for x, y, _n in train_batches(data.train, data, BATCH, gen, device, task, stream=feed):
            yield x, y

    times, _ = _epochs(batches, EPOCHS)
    return {"n": len(data.train), "setup": setup, "epochs": times}


def _rate(run: dict[str, Any], steady: bool) -> float:
    """Images per second: of a steady epoch, or of the first one with the set-up."""
    if steady:
        return run["n"] / median(run["epochs"][1:])
    return run["n"] / (run["setup"] + run["epochs"][0])


def bench_images(root: Path, workers: int, rounds: int) -> dict[str, Any]:
    """Images per second, steady and first epoch, of each loop; ratios to torchvision."""
    runs: dict[str, list[dict[str, Any]]] = {"torchvision": [], "tk-stream": [], "tk-memory": []}
    variants = {
        "torchvision": lambda: runs["torchvision"].append(torchvision_loop(root, workers)),
        "tk-stream": lambda: runs["tk-stream"].append(tk_loop(root, workers, stream=True)),
        "tk-memory": lambda: runs["tk-memory"].append(tk_loop(root, workers, stream=False)),
    }
    for name, run in variants.items():  # imports done and the files in the page cache
        run()
        runs[name].clear()
    interleave(variants, rounds)
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        steady, first = [_rate(r, True) for r in rs], [_rate(r, False) for r in rs]
        out[name] = {"steady": median(steady), "first": median(first), "runs": rs}
    for name in ("tk-stream", "tk-memory"):
        pairs = list(zip(runs[name], runs["torchvision"], strict=True))
        out[name]["steady_ratio"] = median([_rate(a, True) / _rate(b, True) for a, b in pairs])
        out[name]["first_ratio"] = median([_rate(a, False) / _rate(b, False) for a, b in pairs])
    return out


# -------------------------------------------------------------------------- page
def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def page(args: argparse.Namespace, csv: dict[str, Any], img: dict[str, Any], took: float) -> str:
    """The markdown page: the command, the machine, the figures and what they mean."""
    t = {k: median(v) for k, v in csv["times"].items()}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    tv = img["torchvision"]
    rows = []
    for name, label in (("tk-stream", "streamed"), ("tk-memory", "in memory")):
        r = img[name]
        rows.append(
            f"| tk {label}, steady epoch | >= 1.0x | {r['steady']:,.0f} img/s vs "
            f"{tv['steady']:,.0f} | {r['steady_ratio']:.2f}x | {_verdict(r['steady_ratio'] >= 1)} |"
        )
        rows.append(
            f"| tk {label}, first epoch with set-up | - | {r['first']:,.0f} img/s vs "
            f"{tv['first']:,.0f} | {r['first_ratio']:.2f}x | - |"
        )
    loader, prepared = csv["loader_ratio"], csv["prepare_ratio"]
    csv_rows = [
        f"| `pyarrow.csv.read_csv` alone | - | {t['pyarrow']:.2f} s | 1.00x | - |",
        f"| the `csv` loader (read, infer, check, split) | < 3x | {t['loader']:.2f} s | "
        f"{loader:.2f}x | {_verdict(loader < 3)} |",
        f"| the loader + `toolkit.data.prepare` (tensors) | - | {t['prepare']:.2f} s | "
        f"{prepared:.2f}x | - |",
    ]
    csv_calls = ", ".join(f"{v:.2f}" for v in csv["times"]["loader"])
    return f"""# Data loading benchmark

Produced by:

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_data.py --rows {args.rows} \\
        --images {args.images} --workers {args.workers} --rounds {args.rounds}

Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()};
Python {platform.python_version()}. Date {time.strftime("%Y-%m-%d %H:%M")}; load average
(1 min) {load:.2f} (other jobs share these cores); the whole run took {took:.0f} s.
Medians of {args.rounds} interleaved rounds.

## CSV: {args.rows:,} rows x 20 columns

| what | goal | median | vs pyarrow alone | |
| :--- | :--- | ---: | ---: | :--- |
{chr(10).join(csv_rows)}

Loader calls: {csv_calls} s. The loader's own work after pyarrow's read: a
missing-value and finiteness check of every cell, the target's distinct values,
one float32 matrix filled column by column, and the seeded stratified test split
(a gather of 80% and 20% of the rows). ``prepare`` adds the tensor wrap (no copy).

## Image folder: {args.images:,} PNGs, 32x32 RGB, {args.workers} workers, batch {BATCH}

| what | goal | tk vs torchvision | ratio | |
| :--- | :--- | ---: | ---: | :--- |
{chr(10).join(rows)}

torchvision's loop iterates all {tv["runs"][0]["n"]:,} images per epoch; tk's its
training split ({img["tk-memory"]["runs"][0]["n"]:,} images: 20% are held out for the
test), so the figures are images per second. The in-memory path pays its decode
once, at load time, in parallel worker processes (PIL ``verify()`` plus a full
decode of every file, so no epoch can stop on a bad file); after that an epoch
is an ``index_select`` per batch and a scale to float. The streamed path checks
every file with ``verify()`` at load time, then decodes in ``__getitem__`` in the
DataLoader's workers and sends uint8 pixels between processes (a quarter of
``ToTensor``'s float32 bytes); the scale to [0, 1] happens per batch in the
training process. "First epoch with set-up" counts everything from the folder
scan to the end of the first epoch.
"""


def main(argv: list[str] | None = None) -> int:
    """Write the data, time both comparisons, write the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks-data.md"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "table.csv"
        write_csv(csv_path, args.rows)
        csv = bench_csv(csv_path, args.rounds)
        csv_path.unlink()
        images = Path(tmp) / "images"
        write_pngs(images, args.images)
        img = bench_images(images, args.workers, args.rounds)
    text = page(args, csv, img, time.perf_counter() - start)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
