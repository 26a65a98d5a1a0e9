"""Section 2: one FashionMNIST-shaped epoch, tk against three references."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..baselines import bound_epoch, fashion_mlp, hand_epoch, tutorial_epoch
from ..report import Goal, fmt, table
from ..timing import interleave, median, paired_ratio
from ..workloads import fashion_data, fashion_recipe, fashion_tensors, last_epoch

TK = "tk fit()"
TUTORIAL = "tutorial Dataset+ToTensor+DataLoader"
HAND = "hand-written in-memory loop"
BOUND = "compute bound (fixed batch)"

# The per-step pieces (names of the micro-timings).
GATHER_TK = "batch gather with index_select + uint8->float (tk)"
GATHER_INDEXING = "batch gather with advanced indexing + uint8->float"
GATHER_HAND = "batch gather of float32 rows (hand-written)"
METRICS = "metrics on device (loss sum, correct count)"
ITEM = "loss.item() (the per-step NaN check)"


def write_idx(root: Path, t: dict[str, torch.Tensor]) -> Path:
    """Write the tensors as FashionMNIST's raw IDX files, the layout torchvision reads."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, x, y in (
        ("train", t["x_train"], t["y_train"]),
        ("t10k", t["x_test"], t["y_test"]),
    ):
        n = len(x)
        images = np.asarray(x.reshape(n, 28, 28).numpy(), dtype=np.uint8)
        head = np.array([0x803, n, 28, 28], dtype=">i4").tobytes()
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(head + images.tobytes())
        head = np.array([0x801, n], dtype=">i4").tobytes()
        labels = y.numpy().astype(np.uint8).tobytes()
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(head + labels)
    return root


def to_float(xb: torch.Tensor) -> torch.Tensor:
    """uint8 rows -> float32 scaled by 1/255: the op tk applies to every stored batch."""
    return xb.to(torch.float32).mul_(1 / 255)


def per_step_costs(t: dict[str, torch.Tensor], rounds: int) -> dict[str, float]:
    """Seconds per step of the pieces tk adds around the compute (interleaved micro-timings).

    Each piece is the op itself, written here, timed on the same 64-row shapes.
    """
    x, n = t["x_train"], len(t["x_train"])
    # Full batches only, so every piece sees the same 64-row shapes.
    idxs = [idx for idx in torch.randperm(n).split(64) if len(idx) == 64][:200]
    xf = x[: 64 * 200].float().div_(255)
    fidxs = list(torch.randperm(len(xf)).split(64))
    ybs = [t["y_train"].index_select(0, idx) for idx in idxs]
    out = torch.randn(64, 10)
    loss = torch.tensor(2.3)
    acc = torch.zeros(())

    def gather_tk() -> None:  # tk: index_select of uint8 rows, then -> float, scaled
        for idx in idxs:
            to_float(x.index_select(0, idx))

    def gather_indexing() -> None:  # the same rows by advanced indexing (for comparison)
        for idx in idxs:
            to_float(x[idx])

    def gather_f32() -> None:  # the hand-written loop: float rows, advanced indexing
        for idx in fidxs:
            xf[idx]

    def metrics() -> None:  # loss sum and correct count on the device
        for yb in ybs:
            acc.add_(loss.detach() * 64)
            acc.add_((out.argmax(1) == yb).sum())

    def item() -> None:  # the CPU NaN check
        for _ in idxs:
            loss.item()

    fns = {
        GATHER_TK: gather_tk,
        GATHER_INDEXING: gather_indexing,
        GATHER_HAND: gather_f32,
        METRICS: metrics,
        ITEM: item,
    }
    times, _ = interleave(fns, rounds)
    return {k: median(v) / len(idxs) for k, v in times.items()}


def tutorial_datasets(t: dict[str, torch.Tensor], tmp: Path) -> tuple[Any, Any]:
    """torchvision's FashionMNIST (train, test) over IDX files of the same tensors."""
    from torchvision import datasets
    from torchvision.transforms import ToTensor

    root = write_idx(tmp / "data", t)
    training_data = datasets.FashionMNIST(root, train=True, download=False, transform=ToTensor())
    test_data = datasets.FashionMNIST(root, train=False, download=False, transform=ToTensor())
    return training_data, test_data


def variants(t: dict[str, torch.Tensor], tutorial_data: tuple, bound_parts: list) -> dict:
    """The four epochs, each a call returning [train loss, test accuracy]."""
    from toolkit.train import fit

    data, recipe = fashion_data(t), fashion_recipe()
    training_data, test_data = tutorial_data

    def tk_fit() -> list[float]:
        last = last_epoch(fit(fashion_mlp(), data, recipe, task="multiclass", seed=0))
        return [last["train_loss"], last["test_accuracy"]]

    def bound() -> list[float]:
        bound_parts.append(bound_epoch(t, fashion_mlp()))
        return [math.nan, math.nan]

    return {
        TK: tk_fit,
        TUTORIAL: lambda: tutorial_epoch(training_data, test_data, fashion_mlp()),
        HAND: lambda: hand_epoch(t, fashion_mlp()),
        BOUND: bound,
    }


def warm_up(t: dict[str, torch.Tensor], tutorial_data: tuple) -> None:
    """Every variant on a slice: first calls allocate, pick kernels and import lazily."""
    from toolkit.train import fit

    small = {k: v[:640] for k, v in t.items()}
    fit(fashion_mlp(), fashion_data(small), fashion_recipe(), task="multiclass", seed=0)
    hand_epoch(small, fashion_mlp())
    bound_epoch(small, fashion_mlp())
    subset = torch.utils.data.Subset
    training_data, test_data = tutorial_data
    tutorial_epoch(subset(training_data, range(640)), subset(test_data, range(64)), fashion_mlp())


def measure(sizes: Any, threads: int, tmp: Path) -> tuple[dict[str, Any], list[str]]:
    """Interleaved epochs of every variant, then the per-step micro-timings."""
    t = fashion_tensors(sizes.fm_train, sizes.fm_test)
    bound_parts: list[dict] = []
    tutorial_data = tutorial_datasets(t, tmp)
    v = variants(t, tutorial_data, bound_parts)
    warm_up(t, tutorial_data)
    times, results = interleave(v, sizes.fm_rounds)
    n = sizes.fm_train
    rows = []
    for name, ts in times.items():
        res = results[name]
        rows.append(
            [
                name,
                fmt(median(ts)),
                fmt(n / median(ts)),
                fmt(paired_ratio(times, name, TK)),
                fmt(res[0], 4) if not math.isnan(res[0]) else "-",
                f"{100 * res[1]:.1f}%" if not math.isnan(res[1]) else "-",
            ]
        )
    figures = {
        "times": times,
        "n": n,
        "n_test": sizes.fm_test,
        "rounds": sizes.fm_rounds,
        "steps": math.ceil(n / 64),
        "bound_steps": median([b["steps"] for b in bound_parts]),
        "bound_eval": median([b["eval"] for b in bound_parts]),
        "costs": per_step_costs(t, rounds=max(3, sizes.fm_rounds * 2)),
        "rows": rows,
    }
    return figures, lines(figures)


def goals(figures: dict[str, Any]) -> list[Goal]:
    """tk's samples/s against the tutorial, the hand loop and the compute bound."""
    times = figures["times"]
    text = "FashionMNIST-shaped epoch: tk samples/s / "
    return [
        Goal(
            "fm-tutorial",
            text + "tutorial path samples/s",
            1 / paired_ratio(times, TK, TUTORIAL),
            2.0,
            "x",
            higher_is_better=True,
        ),
        Goal(
            "fm-hand",
            text + "hand-written in-memory loop",
            1 / paired_ratio(times, TK, HAND),
            0.95,
            "x",
            higher_is_better=True,
        ),
        Goal(
            "fm-bound",
            text + "compute bound",
            1 / paired_ratio(times, TK, BOUND),
            0.70,
            "x",
            higher_is_better=True,
        ),
    ]


def lines(f: dict[str, Any]) -> list[str]:
    """The epoch table, the bound's split and the per-step pieces."""
    n, steps = f["n"], f["steps"]
    cost_rows = [[k, fmt(v * 1e6), fmt(v * steps * 1e3)] for k, v in f["costs"].items()]
    header = ["variant", "seconds", "samples/s", "time / tk time", "train loss", "test acc"]
    return [
        "## 2. FashionMNIST-shaped epoch",
        "",
        f"{n:,} random uint8 1x28x28 training images and {f['n_test']:,} test images, "
        "10 classes (FashionMNIST's shapes; the real set cannot be downloaded here). The "
        "tutorial MLP (784-512-512-10), SGD lr=1e-3, batch 64, one epoch = one pass over "
        "the training images plus an evaluation of the test set, for every variant. "
        f"Median of {f['rounds']} interleaved rounds after a warm-up; samples/s = "
        "training images / epoch seconds; *time / tk time* is the median per-round ratio "
        "(above 1: tk is faster).",
        "",
        "- **tk fit()**: the uint8 images kept as they are, each batch gathered with "
        "`index_select` and scaled to float.",
        "- **tutorial**: torchvision's `datasets.FashionMNIST` (reading IDX files written "
        "from the same tensors) with `transform=ToTensor()`, `DataLoader(batch_size=64)`, "
        "the tutorial's train_loop and test_loop.",
        "- **hand-written in-memory loop**: the set converted to float32 once (inside the "
        "timed epoch), `randperm` index batches, metrics on the device.",
        "- **compute bound**: forward+backward+step on one fixed float batch, as many "
        "steps as the epoch has batches, plus a forward pass over the test set.",
        "",
        *table(header, f["rows"]),
        "",
        f"Compute bound split: {fmt(f['bound_steps'])} s of train steps "
        f"({fmt(n / f['bound_steps'])} samples/s alone), {fmt(f['bound_eval'])} s of test "
        "forward.",
        "",
        "### What tk adds around the compute, per step",
        "",
        f"Micro-timings of the pieces, each op written out here (200 steps each, "
        f"interleaved); x {steps} steps gives the cost per epoch.",
        "",
        *table(["piece", "µs / step", "ms / epoch"], cost_rows),
        "",
    ]
