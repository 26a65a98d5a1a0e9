"""Performance benchmarks: tk's shared loop against the loops people write by hand.

Usage::

    .venv/bin/python scripts/bench.py [--quick] [--out docs/benchmarks.md] [--threads 1]

Sections (each measured side by side, in one run of this script):

1. circle: 1000 full-batch epochs with a test evaluation each. ``toolkit.train.fit``
   (as a library) vs a plain hand-written loop vs the tutorial's DataLoader loop;
   then ``tk train circle`` as a whole process vs a plain-loop script process.
2. FashionMNIST-shaped data (60,000 random uint8 28x28 images, 10 classes), the
   tutorial MLP, batch 64, one epoch: tk vs the tutorial's torchvision
   Dataset+ToTensor+DataLoader path vs a hand-written in-memory loop vs
   forward+backward+step alone on a fixed batch (the compute bound).
3. Startup: ``tk --help``, ``tk list models``, ``tk plugins`` vs ``import typer`` and
   ``import torch``.
4. Inference: ``tk predict`` on an ONNX export vs raw onnxruntime vs eager.
5. Peak memory of one epoch, measured in a child process.
6. A profile of one tk epoch: where the remaining time goes.

Why the method looks like this: the machine is shared, so absolute times move from
run to run. Every comparison is timed *interleaved* (one call of each variant per
round, the order rotated each round), repeated, and summarised by medians; a ratio
is the median of the per-round ratios, so a burst of load from another process hits
both sides of a ratio alike. torch runs one intra-op thread (``--threads``) here and
in every child: on two shared cores a second thread mostly waits for a descheduled
peer, and timings swing by 2-3x. ``--only circle,startup`` runs some sections (the
page then holds only those).

"tk + suggested patch" rows run a patched copy of ``toolkit.train.fit`` (built here
from its source, see :func:`patched_train`) to show what the changes proposed in the
generated page would buy, without editing the toolkit.
"""

from __future__ import annotations
import __future__

import argparse
import contextlib
import importlib
import inspect
import io
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "docs" / "benchmarks.md"
EXPORT_PAGE = REPO / "docs" / "benchmarks-export.md"
MB = 1e6


# ============================================================================ sizes
@dataclass
class Sizes:
    """How much work each section does (``--quick`` shrinks everything)."""

    circle_epochs: int = 1000
    circle_rounds: int = 7
    tutorial_rounds: int = 2
    process_epochs: int = 1000
    process_rounds: int = 4
    fm_train: int = 60_000
    fm_test: int = 10_000
    fm_rounds: int = 4
    startup_rounds: int = 7
    predict_rounds: int = 15
    predict_process_rounds: int = 3
    memory_train: int = 60_000
    memory_variants: tuple[str, ...] = ("tk", "tk-patched", "hand")
    profile_train: int = 60_000
    quick: bool = False

    @classmethod
    def reduced(cls) -> Sizes:
        """A reduced run for the smoke test (well under 90 s on 2 loaded cores)."""
        return cls(
            circle_epochs=200,
            circle_rounds=2,
            tutorial_rounds=1,
            process_epochs=100,
            process_rounds=1,
            fm_train=6_000,
            fm_test=1_000,
            fm_rounds=2,
            startup_rounds=2,
            predict_rounds=5,
            predict_process_rounds=0,
            memory_train=12_000,
            memory_variants=("tk",),
            profile_train=3_000,
            quick=True,
        )


# ========================================================================== timing
def median(values: list[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else math.nan


def interleave(
    variants: dict[str, Callable[[], Any]], rounds: int
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Wall seconds of each variant per round, timed round-robin with a rotated order.

    Returns (times per variant, the last result each variant returned).
    """
    names = list(variants)
    times: dict[str, list[float]] = {k: [] for k in names}
    results: dict[str, Any] = {}
    for r in range(rounds):
        # Rotating the order keeps any variant from always running right after
        # (or before) a particular other one.
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            results[name] = variants[name]()
            times[name].append(time.perf_counter() - start)
    return times, results


def paired_ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b), both measured in the same round."""
    pairs = [x / y for x, y in zip(times[a], times[b], strict=True) if y > 0]
    return median(pairs)


def run_process(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one child process; raises when it fails.

    CPU time (user + system) moves much less than wall time when other processes
    compete for the cores, so it is a useful cross-check of a wall-time difference.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-800:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def child_env(threads: int) -> dict[str, str]:
    """The environment of every child process: same threads, no TK_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TK_")}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def tk_command() -> list[str]:
    """The installed ``tk`` console script next to this Python, else ``python -m toolkit``."""
    script = Path(sys.executable).with_name("tk")
    return [str(script)] if script.exists() else [sys.executable, "-m", "toolkit"]


# ================================================================== goal tracking
@dataclass
class Goal:
    """One goal of the issue: what was measured, the limit, and whether it held."""

    key: str
    text: str
    measured: float
    limit: float
    unit: str
    higher_is_better: bool
    detail: str = ""

    @property
    def met(self) -> bool:
        """Whether the measured figure is on the right side of the limit."""
        if math.isnan(self.measured):
            return False
        if self.higher_is_better:
            return self.measured >= self.limit
        return self.measured <= self.limit

    def shortfall(self) -> str:
        """How far from the limit, in words (empty when met)."""
        if self.met:
            return ""
        if math.isnan(self.measured):
            return "not measured"
        gap = abs(self.measured - self.limit)
        rel = gap / abs(self.limit) * 100 if self.limit else math.inf
        return f"missed by {fmt(gap)} {self.unit} ({rel:.0f}% of the limit)".replace("  ", " ")


@dataclass
class Report:
    """Everything a section measured, ready to render."""

    goals: list[Goal] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def fmt(x: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (thousands separated)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def table(header: list[str], rows: list[list[Any]], left: int = 1) -> list[str]:
    """A markdown table; the first ``left`` columns left-aligned, the rest right."""
    aligns = [":---" if i < left else "---:" for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |"]
    for row in rows:
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    return out


# ============================================================ patched train module
# The changes this page proposes for toolkit/train.py, as (function, old, new) source
# replacements. They are applied to a *copy* of the module's functions, compiled into
# a private namespace, so the toolkit itself is never edited. A replacement whose old
# text is gone (train.py changed) is reported, not silently skipped.
# One change = (what it does, its (function, old, new) replacements). A change is
# applied whole or not at all, so a train.py that moved on never yields a half-patched,
# broken loop.
Change = tuple[str, list[tuple[str, str, str]]]

SUGGESTED_PATCH: list[Change] = [
    (
        # torch's CPU default is the single-tensor Adam: a Python loop of several ops
        # per parameter. The fused kernel updates every parameter at once.
        "fused Adam/AdamW",
        [
            (
                "make_optimizer",
                "torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)",
                "torch.optim.Adam(\n"
                "    params, lr=recipe.lr, weight_decay=recipe.weight_decay, **_fused(params)\n"
                ")",
            ),
            (
                "make_optimizer",
                "torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)",
                "torch.optim.AdamW(\n"
                "    params, lr=recipe.lr, weight_decay=recipe.weight_decay, **_fused(params)\n"
                ")",
            ),
        ],
    ),
    (
        # The same rows, about 3x cheaper than advanced indexing for a 64x784 uint8
        # gather on this CPU.
        "index_select for the batch gather",
        [
            ("_batches", "split.x[local_idx]", "split.x.index_select(0, local_idx)"),
            ("_batches", "split.y[local_idx]", "split.y.index_select(0, local_idx)"),
        ],
    ),
    (
        # 8192 images are a 26 MB float copy plus two 17 MB activations on top of the
        # dataset; bounded in elements, an evaluation batch is at most 4 MB of input.
        "evaluation batches bounded in elements",
        [
            (
                "evaluate",
                "_eval_batches(split, data, batch, device, task)",
                "_eval_batches(split, data, _eval_rows(split, batch), device, task)",
            ),
        ],
    ),
    (
        # A full-batch epoch is one step, so per-epoch tensor ops count: the
        # evaluation's first batch is its accumulator (nothing allocated or added for a
        # one-batch split), the loss sum is one op, and the row counts stay Python ints
        # until the log point instead of two new tensors every epoch.
        "fewer tiny ops per epoch",
        [
            (
                "evaluate",
                "loss_sum = torch.zeros((), device=device)\n"
                "metric_sum = torch.zeros((), device=device)",
                "loss_sum = metric_sum = None",
            ),
            (
                "evaluate",
                "loss_sum += loss\nmetric_sum += _metric_sum(task, out, yb)",
                "metric = _metric_sum(task, out, yb)\n"
                "loss_sum = loss if loss_sum is None else loss_sum.add_(loss)\n"
                "metric_sum = metric if metric_sum is None else metric_sum.add_(metric)",
            ),
            (
                "evaluate",
                "return loss_sum, metric_sum, n",
                "if loss_sum is None:  # an empty split (a shard, say)\n"
                "    loss_sum = metric_sum = torch.zeros((), device=device)\n"
                "return loss_sum, metric_sum, n",
            ),
            (
                "fit",
                "loss_sum += loss.detach().float() * len(yb)",
                "loss_sum.add_(loss.detach().float(), alpha=len(yb))",
            ),
            (
                "fit",
                "pending.append(torch.stack([loss_sum, metric_sum, "
                "loss_sum.new_tensor(float(seen)), test_loss, test_metric, "
                "test_loss.new_tensor(float(n_test))]))",
                "pending.append(torch.stack([loss_sum, metric_sum, test_loss, test_metric]))\n"
                "counts.append((seen, n_test))",
            ),
            (
                "fit",
                "sums = torch.stack(pending)",
                "sums = torch.stack(pending)\n"
                "n = sums.new_tensor(counts)  # rows seen: Python ints until now\n"
                "sums = torch.cat([sums[:, :2], n[:, :1], sums[:, 2:], n[:, 1:]], dim=1)\n"
                "counts.clear()",
            ),
            (
                "fit",
                "pending: list[torch.Tensor] = []",
                "pending: list[torch.Tensor] = []\ncounts: list[tuple[int, int]] = []",
            ),
        ],
    ),
]

# How to tell that train.py already has a change (the lead adopts them as they
# come): the function, and a piece of text only the change brings.
ALREADY_IN: dict[str, tuple[str, str]] = {
    "fused Adam/AdamW": ("make_optimizer", '"fused": True'),
    "index_select for the batch gather": ("_batches", "index_select("),
    "evaluation batches bounded in elements": ("evaluate", "_eval_rows("),
    "fewer tiny ops per epoch": ("fit", "counts.append("),
}

# The CPU fit reads loss.item() every step (to stop on NaN before the bad step);
# this change turns that off, to measure what the check costs.
NO_ITEM_PATCH: list[Change] = [
    (
        "no per-step loss.item()",
        [("fit", 'check_every_step = device.type == "cpu"', "check_every_step = False")],
    ),
]

EVAL_ELEMENTS = 1 << 20  # features per evaluation batch in the patch: 4 MB of float32


def _fused(params: list[Any]) -> dict[str, bool]:
    """``{"fused": True}`` when every parameter is a float tensor on CPU or CUDA."""
    ok = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return {"fused": True} if ok and params else {}


def _eval_rows(split: Any, batch: int) -> int:
    """Rows per evaluation batch: ``batch`` at most, and at most EVAL_ELEMENTS features."""
    shape = getattr(getattr(split, "x", None), "shape", None)
    if shape is None:
        return batch
    per_row = max(1, math.prod(shape[1:]))
    return max(1, min(batch, EVAL_ELEMENTS // per_row))


def _loose(old: str) -> re.Pattern[str]:
    """A pattern matching ``old`` whatever the formatting: any whitespace between
    tokens, and an optional trailing comma before a closing bracket (ruff format)."""
    parts = []
    for tok in re.findall(r"\w+|[^\w\s]", old):
        if tok in ")]}":
            parts.append(r",?\s*" + re.escape(tok))
        else:
            parts.append(re.escape(tok))
    return re.compile(r"\s*".join(parts))


def _apply(src: str, old: str, new: str) -> str | None:
    """``src`` with ``old`` replaced by ``new`` (re-indented to the match), or None."""
    match = _loose(old).search(src)
    if match is None:
        return None
    line_start = src.rfind("\n", 0, match.start()) + 1
    indent = re.match(r"\s*", src[line_start : match.start()]).group(0)
    lines = new.split("\n")
    body = "\n".join([lines[0], *(indent + ln if ln else ln for ln in lines[1:])])
    return src[: match.start()] + body + src[match.end() :]


def patched_sources(patch: list[Change]) -> tuple[dict[str, str], list[str]]:
    """The patched source of every function ``patch`` touches (``fit`` always), and the
    changes that did not apply. A change applies whole or not at all."""
    from toolkit import train as tk_train

    sources = {"fit": inspect.getsource(tk_train.fit)}
    missing: list[str] = []
    for title, edits in patch:
        if title in already_in(patch):
            continue
        trial = dict(sources)
        for func, old, new in edits:
            src = trial.get(func) or inspect.getsource(getattr(tk_train, func))
            changed = _apply(src, old, new)
            if changed is None:
                missing.append(f"{title} ({func}: {' '.join(old.split())[:50]})")
                break
            trial[func] = changed
        else:
            sources = trial
    return sources, missing


def already_in(patch: list[Change]) -> list[str]:
    """Titles of the changes in ``patch`` that toolkit/train.py already has."""
    from toolkit import train as tk_train

    present = []
    for title, _edits in patch:
        func, marker = ALREADY_IN.get(title, ("", ""))
        if func and marker in inspect.getsource(getattr(tk_train, func)):
            present.append(title)
    return present


def patched_train(patch: list[Change]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``toolkit.train``'s namespace with ``patch`` applied to its functions.

    Each replacement ``(function, old, new)`` swaps ``old`` (matched whatever its
    formatting) for ``new`` in that function's source. Returns (namespace, the changes
    that did not apply). ``namespace["fit"]`` is a fit whose helper calls resolve to
    the patched helpers.
    """
    from toolkit import train as tk_train

    ns = dict(vars(tk_train))
    ns["_fused"] = _fused
    ns["_eval_rows"] = _eval_rows
    sources, missing = patched_sources(patch)
    for func, src in sources.items():
        # train.py uses postponed annotations; the copy must compile the same way.
        flags = __future__.annotations.compiler_flag
        code = compile(src, f"{tk_train.__file__} (patched {func})", "exec", flags, True)
        exec(code, ns)
    return ns, missing


def suggested_diff() -> str:
    """SUGGESTED_PATCH as a unified diff of toolkit/train.py (with the two helpers added)."""
    import difflib

    from toolkit import train as tk_train

    original = Path(tk_train.__file__).read_text()
    text = original
    for func, src in patched_sources(SUGGESTED_PATCH)[0].items():
        text = text.replace(inspect.getsource(getattr(tk_train, func)), src)
    present = already_in(SUGGESTED_PATCH)
    helpers = ""
    if "fused Adam/AdamW" not in present:
        helpers += f"\n\n{inspect.getsource(_fused)}"
    if "evaluation batches bounded in elements" not in present:
        helpers += (
            "\n\n# Evaluation batches hold at most this many features (4 MB of float32).\n"
            f"EVAL_ELEMENTS = 1 << 20\n\n\n{inspect.getsource(_eval_rows)}"
        )
    anchor = text.find("\ndef make_optimizer(")
    end = text.find("\n\n\ndef ", anchor + 1) if anchor >= 0 else -1
    if helpers and end >= 0:
        text = text[:end] + "\n" + helpers.rstrip("\n") + text[end:]
    diff = difflib.unified_diff(
        original.splitlines(keepends=True),
        text.splitlines(keepends=True),
        "a/toolkit/train.py",
        "b/toolkit/train.py",
        n=2,
    )
    return "".join(diff)


# ========================================================================== models
def circle_model() -> nn.Module:
    """circle-v2 (2-10-10-1 ReLU MLP), built exactly as the tk_circle plugin builds it."""
    from tk_circle import circle_v2

    torch.manual_seed(42)
    return circle_v2()


def fashion_mlp() -> nn.Module:
    """The PyTorch basics tutorial's FashionMNIST MLP, seeded so every variant starts alike."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 512),
        nn.ReLU(),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Linear(512, 10),
    )


def param_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


# ====================================================== 1. circle: the hand loops
def plain_circle_loop(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    epochs: int,
) -> list[list[float]]:
    """The loop a careful person writes for SEEDS.md §1: full batch, test eval each epoch.

    Loss and accuracy of train and test every epoch stay on the device; they are read
    (one host sync) only every 100 epochs, where the seed notes print.
    """
    rows = []
    for epoch in range(1, epochs + 1):
        model.train()
        logits = model(x_train).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(logits, y_train)
        acc = ((logits > 0) == (y_train > 0.5)).float().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.inference_mode():
            test_logits = model(x_test).squeeze(1)
            test_loss = F.binary_cross_entropy_with_logits(test_logits, y_test)
            test_acc = ((test_logits > 0) == (y_test > 0.5)).float().mean()
        if epoch % 100 == 0 or epoch == epochs:
            rows.append(torch.stack([loss.detach(), acc, test_loss, test_acc]).tolist())
    return rows


def tutorial_circle_loop(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    epochs: int,
) -> list[float]:
    """The PyTorch tutorial's train_loop/test_loop with DataLoaders, applied to circles.

    Full batch (800 rows, shuffled), ``.item()`` per batch as the tutorial does.
    """
    from torch.utils.data import DataLoader, TensorDataset

    train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=800, shuffle=True)
    test_loader = DataLoader(TensorDataset(x_test, y_test), batch_size=200)
    loss_fn = nn.BCEWithLogitsLoss()
    test_loss = correct = 0.0
    for _epoch in range(epochs):
        model.train()
        for xb, yb in train_loader:
            loss = loss_fn(model(xb).squeeze(1), yb)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            _ = loss.item()
        model.eval()
        test_loss = correct = 0.0
        with torch.no_grad():
            for xb, yb in test_loader:
                pred = model(xb).squeeze(1)
                test_loss += loss_fn(pred, yb).item()
                correct += (torch.round(torch.sigmoid(pred)) == yb).float().sum().item()
    return [test_loss / len(test_loader), correct / len(y_test)]


# `tk` with one change: gc.freeze() when main() returns (the suggested cli.py change).
FREEZE_WRAPPER = """
import gc
import sys

from toolkit.cli import main

try:
    main(sys.argv[1:])
finally:
    gc.freeze()
"""

# The plain-loop *process*: the same function as above, in a script of its own that
# does what `tk train circle` does minus tk (data, model, loop, save the weights).
PLAIN_SCRIPT_HEAD = '''"""A plain circle training script (generated by scripts/bench.py)."""
import json
import sys
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import make_circles
from sklearn.model_selection import train_test_split
from torch import nn

'''

PLAIN_SCRIPT_MAIN = """
def main():
    epochs, out = int(sys.argv[1]), sys.argv[2]
    x, y = make_circles(n_samples=1000, noise=0.03, factor=0.8, random_state=42)
    x_train, x_test, y_train, y_test = train_test_split(
        x.astype("float32"), y.astype("float32"), test_size=0.2, random_state=42
    )
    x_train, x_test, y_train, y_test = map(torch.from_numpy, (x_train, x_test, y_train, y_test))
    torch.manual_seed(42)
    model = nn.Sequential(
        nn.Linear(2, 10), nn.ReLU(), nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 1)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    start = time.perf_counter()
    rows = plain_circle_loop(model, optimizer, x_train, y_train, x_test, y_test, epochs)
    seconds = time.perf_counter() - start
    torch.save(model.state_dict(), out)
    print(json.dumps({"loop_seconds": seconds, "test_acc": rows[-1][3]}))


main()
"""


def circle_data() -> tuple[Any, dict[str, torch.Tensor]]:
    """The circles dataset through tk's own loader: (tk Data, the same tensors by name)."""
    from toolkit.data import prepare
    from toolkit.plugins import load_plugins

    registry = load_plugins(warn=False).registry
    spec = registry.dataset("circles")
    data = prepare(spec, spec.load(**spec.resolve_params({})))
    tensors = {
        "x_train": data.train.x,
        "y_train": data.train.y,
        "x_test": data.test.x,
        "y_test": data.test.y,
    }
    return data, tensors


def bench_circle(sizes: Sizes, threads: int, tmp: Path, report: Report) -> None:
    """Section 1: the library loop and the whole process, against hand-written ones."""
    from toolkit.plugins import load_plugins
    from toolkit.train import fit

    registry = load_plugins(warn=False).registry
    recipe = registry.model("circle").recipe  # Adam lr=0.01, full batch
    data, t = circle_data()
    patched, patch_missing = patched_train(SUGGESTED_PATCH)
    no_item, no_item_missing = patched_train(NO_ITEM_PATCH)

    def tk_fit(fit_fn: Callable[..., Any], epochs: int) -> Callable[[], float]:
        def run() -> float:
            r = replace_epochs(recipe, epochs)
            history = fit_fn(circle_model(), data, r, task="binary", seed=42, log_every=100)
            return history.last["test_accuracy"]

        return run

    def hand(loop: Callable[..., Any], epochs: int, fused: bool = False) -> Callable[[], float]:
        def run() -> float:
            model = circle_model()
            kw = {"fused": True} if fused else {}
            opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, **kw)
            out = loop(model, opt, t["x_train"], t["y_train"], t["x_test"], t["y_test"], epochs)
            return out[-1][3] if isinstance(out[-1], list) else out[-1]

        return run

    def variants(epochs: int) -> dict[str, Callable[[], float]]:
        v = {
            "tk fit()": tk_fit(fit, epochs),
            "tk fit(), no per-step .item()": tk_fit(no_item["fit"], epochs),
            "tk fit() + suggested patch": tk_fit(patched["fit"], epochs),
            "plain loop": hand(plain_circle_loop, epochs),
            "plain loop, fused Adam": hand(plain_circle_loop, epochs, fused=True),
        }
        if no_item_missing:
            del v["tk fit(), no per-step .item()"]
        return v

    base = "plain loop"
    tutorial = "tutorial DataLoader loop"
    interleave(variants(20), 1)  # warm-up: first calls allocate and pick kernels
    epochs = sizes.circle_epochs
    times, accs = interleave(variants(epochs), sizes.circle_rounds)
    # The tutorial's loop is ~7x slower: fewer rounds of it, paired with the plain loop.
    tut_times, tut_accs = interleave(
        {base: hand(plain_circle_loop, epochs), tutorial: hand(tutorial_circle_loop, epochs)},
        sizes.tutorial_rounds,
    )
    rows = []
    for name, ts in [*times.items(), (tutorial, tut_times[tutorial])]:
        ratio = paired_ratio(tut_times if name == tutorial else times, name, base)
        acc = tut_accs[name] if name == tutorial else accs[name]
        ms = median(ts) / epochs * 1e3
        rows.append([name, fmt(median(ts)), fmt(ms), fmt(ratio), f"{100 * acc:.1f}%"])
    loop_ratio = paired_ratio(times, "tk fit()", base)
    report.goals.append(
        Goal(
            "circle-loop",
            f"circle {epochs} epochs: tk loop / plain loop",
            loop_ratio,
            1.10,
            "x",
            higher_is_better=False,
            detail="tk + suggested patch: "
            f"{fmt(paired_ratio(times, 'tk fit() + suggested patch', base))}x",
        )
    )
    report.data["circle"] = {
        "times": times,
        "epochs": epochs,
        "patch_missing": patch_missing + no_item_missing,
    }

    # -- the whole process: `tk train circle` vs the plain script
    script = tmp / "plain_circle.py"
    script.write_text(PLAIN_SCRIPT_HEAD + inspect.getsource(plain_circle_loop) + PLAIN_SCRIPT_MAIN)
    env = child_env(threads)
    pe = sizes.process_epochs
    tk_cmd = [
        *tk_command(),
        "train",
        "circle",
        "--quiet",
        "--device",
        "cpu",
        "--epochs",
        str(pe),
        "--runs-dir",
        str(tmp / "runs"),
        "--name",
        "bench",
        "--overwrite",
    ]
    plain_cmd = [sys.executable, str(script), str(pe), str(tmp / "plain_circle.pt")]
    tk_name = f"tk train circle --epochs {pe}"
    plain_name = f"python plain_circle.py {pe}"
    freeze_name = "the same tk command + gc.freeze() at exit (suggested)"
    freeze_cmd = [sys.executable, "-c", FREEZE_WRAPPER, *tk_cmd[len(tk_command()) :]]
    cpu: dict[str, list[float]] = {tk_name: [], plain_name: [], freeze_name: []}

    def proc(name: str, cmd: list[str]) -> Callable[[], None]:
        def run() -> None:
            cpu[name].append(run_process(cmd, env, tmp)[1])

        return run

    ptimes, _ = interleave(
        {
            tk_name: proc(tk_name, tk_cmd),
            plain_name: proc(plain_name, plain_cmd),
            freeze_name: proc(freeze_name, freeze_cmd),
        },
        sizes.process_rounds,
    )
    summary = json.loads((tmp / "runs" / "circle" / "bench" / "summary.json").read_text())
    diffs = [a - b for a, b in zip(ptimes[tk_name], ptimes[plain_name], strict=True)]
    cpu_diffs = [a - b for a, b in zip(cpu[tk_name], cpu[plain_name], strict=True)]
    freeze_diffs = [a - b for a, b in zip(ptimes[freeze_name], ptimes[plain_name], strict=True)]
    report.goals.append(
        Goal(
            "circle-process",
            f"`tk train circle` process - plain script process ({pe} epochs)",
            median(diffs),
            0.5,
            "s",
            higher_is_better=False,
            detail=f"CPU time difference: {fmt(median(cpu_diffs))} s; with gc.freeze() at "
            f"exit: {fmt(median(freeze_diffs))} s",
        )
    )
    item_x = (
        paired_ratio(times, "tk fit(), no per-step .item()", base)
        if "tk fit(), no per-step .item()" in times
        else math.nan
    )
    report.data["circle"]["process"] = {
        "wall": diffs,
        "cpu": cpu_diffs,
        "freeze": freeze_diffs,
        "loop": summary["seconds"],
    }

    lines = [
        "## 1. circle: 1000 full-batch epochs with a test evaluation each",
        "",
        f"circle-v2 (2-10-10-1), Adam lr={recipe.lr}, the 800/200 split of make_circles; "
        f"{epochs} epochs, each a full-batch train step and a test evaluation computing "
        "loss and accuracy (SEEDS.md §1). Median of "
        f"{sizes.circle_rounds} interleaved rounds (after a warm-up; the tutorial loop: "
        f"{sizes.tutorial_rounds} rounds paired with the plain loop); *x plain* is the "
        "median of per-round ratios to the plain loop.",
        "",
        "- **tk fit()**: `toolkit.train.fit` called as a library.",
        "- **plain loop**: the hand-written loop in `plain_circle_loop` (metrics on the "
        "device, read every 100 epochs), `torch.optim.Adam` with its defaults.",
        "- **tutorial DataLoader loop**: the tutorial's train_loop/test_loop, DataLoaders "
        "over TensorDatasets, `.item()` per batch.",
        "- **no per-step .item()** and **+ suggested patch**: patched copies of `fit` "
        "(see the end of this page).",
        "",
        *table(["variant", "seconds", "ms / epoch", "x plain", "final test acc"], rows),
        "",
        f"The per-step `loss.item()` (the CPU NaN check): without it, {fmt(item_x)} x plain "
        f"against {fmt(loop_ratio)} x with it, a difference inside this run's noise; its "
        "direct cost, timed alone in section 2, is well under a microsecond per call.",
        "",
        "### The whole process",
        "",
        f"`tk train circle --quiet --epochs {pe}` (plugins, data, training, run directory "
        "with config, weights, metrics, checkpoint) vs `python plain_circle.py`, the same "
        "loop in a script that imports torch and scikit-learn, makes the data and saves "
        f"the weights with `torch.save`. {sizes.process_rounds} interleaved rounds; CPU = "
        "user + system time of the process.",
        "",
        *table(
            ["process", "median wall s", "min wall s", "max wall s", "median CPU s"],
            [
                [k, fmt(median(v)), fmt(min(v)), fmt(max(v)), fmt(median(cpu[k]))]
                for k, v in ptimes.items()
            ],
        ),
        "",
        f"tk - plain: **{fmt(median(diffs))} s** wall (median of per-round differences; "
        f"each round's: {', '.join(fmt(d) for d in diffs)}), {fmt(median(cpu_diffs))} s "
        f"CPU. tk's own loop took {fmt(summary['seconds'])} s (summary.json of the last "
        "run). Both processes import torch, torch._dynamo (through torch.optim) and "
        "scikit-learn; tk adds typer, pluggy and its own modules. Such a process spends "
        "about 0.7 s *after* its last line, in the interpreter's final garbage collections "
        "over torch._dynamo's and sympy's objects; `gc.freeze()` before exit makes those "
        "collections skip them (atexit handlers and file closing still run): the third "
        f"row, {fmt(median(freeze_diffs))} s against the plain script.",
        "",
    ]
    report.sections.append("\n".join(lines))


def replace_epochs(recipe: Any, epochs: int) -> Any:
    """The recipe with another epoch count."""
    from dataclasses import replace

    return replace(recipe, epochs=epochs)


# ======================================================= 2. FashionMNIST-shaped data
def fashion_tensors(n_train: int, n_test: int) -> dict[str, torch.Tensor]:
    """Random uint8 28x28 images and labels shaped like FashionMNIST (fixed seed)."""
    g = torch.Generator().manual_seed(0)
    return {
        "x_train": torch.randint(0, 256, (n_train, 1, 28, 28), dtype=torch.uint8, generator=g),
        "y_train": torch.randint(0, 10, (n_train,), generator=g),
        "x_test": torch.randint(0, 256, (n_test, 1, 28, 28), dtype=torch.uint8, generator=g),
        "y_test": torch.randint(0, 10, (n_test,), generator=g),
    }


def fashion_data(t: dict[str, torch.Tensor]) -> Any:
    """The tensors as tk Data: uint8 images kept as they are, scaled by 1/255 per batch."""
    from toolkit.data import Data, Split
    from toolkit.registry import DatasetSpec

    spec = DatasetSpec(
        name="fashion-shaped",
        load=lambda: {},
        feature_shape=(1, 28, 28),
        target="multiclass",
        num_classes=10,
        feature_scale=1 / 255,
    )
    splits = {
        "train": Split(t["x_train"], t["y_train"]),
        "test": Split(t["x_test"], t["y_test"]),
    }
    return Data(spec, splits)


FASHION_RECIPE = {"optimizer": "sgd", "lr": 1e-3, "epochs": 1, "batch_size": 64}


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


def tutorial_epoch(training_data: Any, test_data: Any, model: nn.Module) -> list[float]:
    """One epoch of the PyTorch basics tutorial: train_loop then test_loop, verbatim in spirit.

    DataLoader(batch_size=64) over torchvision's FashionMNIST with ToTensor();
    ``loss.item()`` every 100 batches (the tutorial prints there) and per test batch.
    """
    from torch.utils.data import DataLoader

    train_dataloader = DataLoader(training_data, batch_size=64)
    test_dataloader = DataLoader(test_data, batch_size=64)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    last = 0.0
    for batch, (x, y) in enumerate(train_dataloader):
        pred = model(x)
        loss = loss_fn(pred, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if batch % 100 == 0:
            last = loss.item()
    model.eval()
    test_loss, correct = 0.0, 0.0
    with torch.no_grad():
        for x, y in test_dataloader:
            pred = model(x)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    return [last, correct / len(test_data)]


def hand_epoch(t: dict[str, torch.Tensor], model: nn.Module, batch: int = 64) -> list[float]:
    """A hand-written in-memory epoch: the set as float32 once, shuffled index batches.

    Metrics accumulate on the device and are read once, after the test evaluation.
    """
    x = t["x_train"].float().div_(255)  # once per run: 188 MB of float32
    y = t["y_train"]
    x_test = t["x_test"].float().div_(255)
    y_test = t["y_test"]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    loss_sum = torch.zeros(())
    correct = torch.zeros((), dtype=torch.int64)
    for idx in torch.randperm(len(x)).split(batch):
        xb, yb = x[idx], y[idx]
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(yb)
        correct += (out.argmax(1) == yb).sum()
    model.eval()
    test_correct = torch.zeros((), dtype=torch.int64)
    with torch.inference_mode():
        for i in range(0, len(x_test), 1024):
            out = model(x_test[i : i + 1024])
            test_correct += (out.argmax(1) == y_test[i : i + 1024]).sum()
    return [(loss_sum / len(x)).item(), test_correct.item() / len(x_test)]


def bound_epoch(t: dict[str, torch.Tensor], model: nn.Module, batch: int = 64) -> dict:
    """The compute bound of the same epoch: forward+backward+step on one fixed batch.

    As many steps as an epoch has batches, then a forward pass over the (pre-converted)
    test set: no gather, no conversion, no metrics, no Python beyond the step itself.
    """
    steps = math.ceil(len(t["x_train"]) / batch)
    xb = t["x_train"][:batch].float().div_(255)
    yb = t["y_train"][:batch]
    x_test = t["x_test"].float().div_(255)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    mid = time.perf_counter()
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(x_test), 1024):
            model(x_test[i : i + 1024])
    return {"steps": mid - start, "eval": time.perf_counter() - mid}


def per_step_costs(t: dict[str, torch.Tensor], rounds: int) -> dict[str, float]:
    """Seconds per step of the pieces tk adds around the compute (interleaved micro-timings)."""
    from toolkit import train as tk_train

    data = fashion_data(t)
    x, n = t["x_train"], len(t["x_train"])
    # Full batches only, so every piece sees the same 64-row shapes.
    idxs = [idx for idx in torch.randperm(n).split(64) if len(idx) == 64][:200]
    xf = x[: 64 * 200].float().div_(255)
    fidxs = list(torch.randperm(len(xf)).split(64))
    ybs = [t["y_train"].index_select(0, idx) for idx in idxs]
    out = torch.randn(64, 10)
    loss = torch.tensor(2.3)
    acc = torch.zeros(())

    def gather_u8() -> None:  # tk today: advanced indexing, then uint8 -> float, scaled
        for idx in idxs:
            data.features(x[idx])

    def gather_u8_index_select() -> None:  # the suggested patch
        for idx in idxs:
            data.features(x.index_select(0, idx))

    def gather_f32() -> None:  # the hand-written loop: float rows, advanced indexing
        for idx in fidxs:
            xf[idx]

    def metrics() -> None:  # loss sum and correct count on the device
        for yb in ybs:
            acc.add_(loss.detach() * 64)
            acc.add_(tk_train._metric_sum("multiclass", out, yb))

    def item() -> None:  # the CPU NaN check
        for _ in idxs:
            loss.item()

    fns = {
        "batch gather + uint8->float (tk)": gather_u8,
        "batch gather with index_select + uint8->float (patch)": gather_u8_index_select,
        "batch gather of float32 rows (hand-written)": gather_f32,
        "metrics on device (loss sum, correct count)": metrics,
        "loss.item() (the per-step NaN check)": item,
    }
    times, _ = interleave(fns, rounds)
    return {k: median(v) / len(idxs) for k, v in times.items()}


def bench_fashion(sizes: Sizes, tmp: Path, report: Report) -> None:
    """Section 2: one FashionMNIST-shaped epoch, tk against three references."""
    from torchvision import datasets
    from torchvision.transforms import ToTensor

    from toolkit.registry import Recipe
    from toolkit.train import fit

    t = fashion_tensors(sizes.fm_train, sizes.fm_test)
    data = fashion_data(t)
    recipe = Recipe(**FASHION_RECIPE)
    patched, _ = patched_train(SUGGESTED_PATCH)
    root = write_idx(tmp / "data", t)
    training_data = datasets.FashionMNIST(root, train=True, download=False, transform=ToTensor())
    test_data = datasets.FashionMNIST(root, train=False, download=False, transform=ToTensor())
    bound_parts: list[dict] = []

    def tk_fit(fit_fn: Callable[..., Any]) -> Callable[[], list[float]]:
        def run() -> list[float]:
            h = fit_fn(fashion_mlp(), data, recipe, task="multiclass", seed=0)
            return [h.last["train_loss"], h.last["test_accuracy"]]

        return run

    def bound() -> list[float]:
        bound_parts.append(bound_epoch(t, fashion_mlp()))
        return [math.nan, math.nan]

    variants = {
        "tk fit()": tk_fit(fit),
        "tk fit() + suggested patch": tk_fit(patched["fit"]),
        "tutorial Dataset+ToTensor+DataLoader": lambda: tutorial_epoch(
            training_data, test_data, fashion_mlp()
        ),
        "hand-written in-memory loop": lambda: hand_epoch(t, fashion_mlp()),
        "compute bound (fixed batch)": bound,
    }
    # Warm-up on a slice: first calls allocate, pick kernels and import lazily.
    small = {k: v[:640] for k, v in t.items()}
    fit(fashion_mlp(), fashion_data(small), recipe, task="multiclass", seed=0)
    patched["fit"](fashion_mlp(), fashion_data(small), recipe, task="multiclass", seed=0)
    hand_epoch(small, fashion_mlp())
    bound_epoch(small, fashion_mlp())
    subset = torch.utils.data.Subset
    tutorial_epoch(subset(training_data, range(640)), subset(test_data, range(64)), fashion_mlp())
    times, results = interleave(variants, sizes.fm_rounds)
    n = sizes.fm_train
    rows = []
    for name, ts in times.items():
        res = results[name]
        rows.append(
            [
                name,
                fmt(median(ts)),
                fmt(n / median(ts)),
                fmt(paired_ratio(times, name, "tk fit()")),
                fmt(res[0], 4) if not math.isnan(res[0]) else "-",
                f"{100 * res[1]:.1f}%" if not math.isnan(res[1]) else "-",
            ]
        )
    steps_only = median([b["steps"] for b in bound_parts])
    eval_only = median([b["eval"] for b in bound_parts])
    costs = per_step_costs(t, rounds=max(3, sizes.fm_rounds * 2))
    report.data["fashion"] = {
        "times": times,
        "n": n,
        "steps": math.ceil(n / 64),
        "bound_steps": steps_only,
        "bound_eval": eval_only,
        "costs": costs,
    }
    tutorial_x = 1 / paired_ratio(times, "tk fit()", "tutorial Dataset+ToTensor+DataLoader")
    hand_x = 1 / paired_ratio(times, "tk fit()", "hand-written in-memory loop")
    bound_x = 1 / paired_ratio(times, "tk fit()", "compute bound (fixed batch)")
    patched_name = "tk fit() + suggested patch"
    report.goals += [
        Goal(
            "fm-tutorial",
            "FashionMNIST-shaped epoch: tk samples/s / tutorial path samples/s",
            tutorial_x,
            2.0,
            "x",
            higher_is_better=True,
        ),
        Goal(
            "fm-hand",
            "FashionMNIST-shaped epoch: tk samples/s / hand-written in-memory loop",
            hand_x,
            0.95,
            "x",
            higher_is_better=True,
            detail="tk + suggested patch: "
            f"{fmt(1 / paired_ratio(times, patched_name, 'hand-written in-memory loop'))}x",
        ),
        Goal(
            "fm-bound",
            "FashionMNIST-shaped epoch: tk samples/s / compute bound",
            bound_x,
            0.70,
            "x",
            higher_is_better=True,
            detail="tk + suggested patch: "
            f"{fmt(1 / paired_ratio(times, patched_name, 'compute bound (fixed batch)'))}x",
        ),
    ]
    steps = math.ceil(n / 64)
    cost_rows = [[k, fmt(v * 1e6), fmt(v * steps * 1e3)] for k, v in costs.items()]
    lines = [
        "## 2. FashionMNIST-shaped epoch",
        "",
        f"{n:,} random uint8 1x28x28 training images and {sizes.fm_test:,} test images, "
        "10 classes (FashionMNIST's shapes; the real set cannot be downloaded here). The "
        "tutorial MLP (784-512-512-10), SGD lr=1e-3, batch 64, one epoch = one pass over "
        "the training images plus an evaluation of the test set, for every variant. "
        f"Median of {sizes.fm_rounds} interleaved rounds after a warm-up; samples/s = "
        "training images / epoch seconds; *time / tk time* is the median per-round ratio "
        "(above 1: tk is faster).",
        "",
        "- **tk fit()**: the uint8 images kept as they are, gathered and scaled per batch.",
        "- **tutorial**: torchvision's `datasets.FashionMNIST` (reading IDX files written "
        "from the same tensors) with `transform=ToTensor()`, `DataLoader(batch_size=64)`, "
        "the tutorial's train_loop and test_loop.",
        "- **hand-written in-memory loop**: the set converted to float32 once (inside the "
        "timed epoch), `randperm` index batches, metrics on the device.",
        "- **compute bound**: forward+backward+step on one fixed float batch, as many "
        "steps as the epoch has batches, plus a forward pass over the test set.",
        "",
        *table(
            [
                "variant",
                "seconds",
                "samples/s",
                "time / tk time",
                "train loss",
                "test acc",
            ],
            rows,
        ),
        "",
        f"Compute bound split: {fmt(steps_only)} s of train steps "
        f"({fmt(n / steps_only)} samples/s alone), {fmt(eval_only)} s of test forward.",
        "",
        "### What tk adds around the compute, per step",
        "",
        f"Micro-timings of the pieces (200 steps each, interleaved); x {steps} steps "
        "gives the cost per epoch.",
        "",
        *table(["piece", "µs / step", "ms / epoch"], cost_rows),
        "",
    ]
    report.sections.append("\n".join(lines))


# ================================================================== 3. startup
# Prints which heavy modules a tk command imported (the startup promise).
IMPORT_PROBE = """
import sys
from toolkit.cli import main
try:
    main({args!r})
except SystemExit:
    pass
heavy = [m for m in ("torch", "onnx", "onnxruntime", "torchvision") if m in sys.modules]
print("PROBE", ",".join(heavy) or "-", file=sys.stderr)
"""


def bench_startup(sizes: Sizes, threads: int, tmp: Path, report: Report) -> None:
    """Section 3: wall time of listing commands vs importing typer and torch."""
    env = child_env(threads)
    tk = tk_command()
    py = sys.executable
    commands = {
        "tk --help": [*tk, "--help"],
        "tk list models": [*tk, "list", "models"],
        "tk plugins": [*tk, "plugins"],
        'python -c "pass"': [py, "-c", "pass"],
        'python -c "import typer"': [py, "-c", "import typer"],
        'python -c "import torch"': [py, "-c", "import torch"],
    }
    variants = {k: (lambda c=c: run_process(c, env, tmp)) for k, c in commands.items()}
    interleave(variants, 1)  # warm-up: the OS file cache
    times, _ = interleave(variants, sizes.startup_rounds)
    imported = {}
    probes = {
        "tk --help": ["--help"],
        "tk list models": ["list", "models"],
        "tk plugins": ["plugins"],
    }
    for name, args in probes.items():
        proc = subprocess.run(
            [py, "-c", IMPORT_PROBE.format(args=args)],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        probe = [ln for ln in proc.stderr.splitlines() if ln.startswith("PROBE")]
        imported[name] = probe[-1].split(" ", 1)[1] if probe else "probe failed"
    rows = [
        [k, fmt(median(v)), fmt(min(v)), fmt(max(v)), imported.get(k, "")] for k, v in times.items()
    ]
    help_s, list_s = median(times["tk --help"]), median(times["tk list models"])
    report.goals += [
        Goal(
            "startup-help",
            "`tk --help` wall time (median)",
            help_s,
            0.25,
            "s",
            higher_is_better=False,
            detail=f"imports: {imported['tk --help']}",
        ),
        Goal(
            "startup-list",
            "`tk list models` wall time (median)",
            list_s,
            0.5,
            "s",
            higher_is_better=False,
            detail=f"imports: {imported['tk list models']}",
        ),
    ]
    report.data["startup"] = times
    lines = [
        "## 3. Startup",
        "",
        f"Wall time of each command as a fresh process, {sizes.startup_rounds} interleaved "
        "rounds after a warm-up round. *heavy imports* lists which of torch, onnx, "
        "onnxruntime and torchvision the command imported (`-`: none).",
        "",
        *table(["command", "median s", "min s", "max s", "heavy imports"], rows),
        "",
    ]
    report.sections.append("\n".join(lines))


# ================================================================= 4. inference
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
        from toolkit.commands.export import predict as command  # noqa: F401
        from toolkit.export import export_run  # noqa: F401
        from toolkit.predict import predict  # noqa: F401
    except ImportError as exc:
        return f"skipped: tk predict not available ({exc})"
    return None


def raw_onnx_predict(path: Path, npy: Path, task: str, scale: float | None) -> None:
    """What a person writes with onnxruntime alone: session, input, run, print the labels."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.load(npy)
    if x.dtype.kind in "iu" and scale is not None:
        x = x.astype(np.float32) * np.float32(scale)
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    print_predictions(logits, task)


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


def inference_models(tmp: Path, quick: bool) -> list[dict[str, Any]]:
    """Train and export circle and the FashionMNIST MLP; the ONNX paths and metadata."""
    from toolkit.config import TrainConfig
    from toolkit.export import export_run
    from toolkit.plugins import load_plugins
    from toolkit.registry import DatasetSpec, InputSpec, ModelSpec, Recipe, Registry, Source
    from toolkit.train import train

    builtin = load_plugins(warn=False).registry
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
    out = []
    rng = np.random.default_rng(0)
    for name, reg, epochs in (
        ("circle", builtin, 50 if quick else 200),
        ("fashion-mlp", local, 1),
    ):
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
        results = export_run(
            run_dir,
            "onnx",
            overwrite=True,
            registry=reg,
            echo=lambda _s: None,
            echo_err=lambda _s: None,
        )
        mspec = reg.model(name)
        scale = reg.dataset(mspec.default_dataset).feature_scale
        inputs = {}
        for batch in (1, 1024):
            if name == "circle":
                x = rng.standard_normal((batch, 2)).astype(np.float32)
            else:  # uint8 images, as a user would store them: tk predict scales them
                x = rng.integers(0, 256, (batch, 1, 28, 28), dtype=np.uint8)
            npy = tmp / f"{name}-{batch}.npy"
            np.save(npy, x)
            inputs[batch] = npy
        out.append(
            {
                "name": name,
                "run": run_dir,
                "onnx": results[0].path,
                "task": mspec.task,
                "scale": scale,
                "inputs": inputs,
                "registry": reg,
            }
        )
    return out


def predict_pieces(m: dict[str, Any], batch: int, rounds: int) -> dict[str, float]:
    """Seconds of each step `tk predict` takes for one input file (interleaved, medians)."""
    import typer

    from toolkit.predict import Prediction, _meaning, read_input
    from toolkit.verify import load_runners, read_metadata

    path, npy = m["onnx"], m["inputs"][batch]
    meta = read_metadata(path)
    shape = [int(d) for d in meta["input"]["shape"][1:]]
    x = read_input(npy, shape, meta.get("feature_scale"))
    runner = load_runners(path, "onnx")[0]
    y = np.asarray(runner.run(x)[0]).astype(np.float64).reshape(len(x), -1)
    pred = Prediction(str(path), runner.name, meta["task"], _meaning(y, meta))

    def echo_lines() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            for line in pred.lines():
                typer.echo(line)

    pieces = {
        "read_metadata: onnx.load of the whole file": lambda: read_metadata(path),
        "read_input: the .npy file": lambda: read_input(npy, shape, meta.get("feature_scale")),
        "load_runners: the onnxruntime session": lambda: load_runners(path, "onnx"),
        "runner.run": lambda: runner.run(x),
        "_meaning: one dict per row": lambda: _meaning(y, meta),
        "lines() + one typer.echo per row": echo_lines,
    }
    interleave(pieces, 1)
    times, _ = interleave(pieces, rounds)
    return {k: median(v) for k, v in times.items()}


def bench_inference(sizes: Sizes, threads: int, tmp: Path, report: Report) -> None:
    """Section 4: `tk predict` on an ONNX file vs raw onnxruntime vs the eager model."""
    skipped = predict_available()
    if skipped is not None:
        print(skipped, file=sys.stderr)
        report.goals.append(
            Goal(
                "predict",
                "`tk predict` / raw onnxruntime at batch 1024 (process start excluded)",
                math.nan,
                1.10,
                "x",
                higher_is_better=False,
                detail=skipped,
            )
        )
        report.sections.append(f"## 4. Inference\n\n{skipped}\n")
        return
    import onnxruntime as ort

    from toolkit.cli import main as tk_main
    from toolkit.commands.export import predict as predict_command
    from toolkit.predict import predict
    from toolkit.runs import open_run
    from toolkit.train import rebuild_model

    models = inference_models(tmp, sizes.quick)

    def quietly(fn: Callable[[], Any]) -> Callable[[], None]:
        # Output goes to a string: printing is part of the work, the terminal is not.
        def run() -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                fn()

        return run

    def via_main(args: list[str]) -> None:
        try:
            tk_main(args)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise RuntimeError(f"tk {' '.join(args)} exited {exc.code}") from None

    def eager(m: dict[str, Any], npy: Path) -> None:
        model = rebuild_model(open_run(m["run"]), m["registry"])
        x = np.load(npy)
        if x.dtype.kind in "iu":
            x = x.astype(np.float32) * np.float32(m["scale"])
        with torch.inference_mode():
            logits = model(torch.from_numpy(x)).numpy()
        print_predictions(logits, m["task"])

    command = "tk predict: the command (predict + printed table)"
    raw = "raw onnxruntime: session + load + run + print"
    rows = []
    goal_ratio: dict[str, float] = {}
    pieces: dict[str, dict[str, float]] = {}
    for m in models:
        session = ort.InferenceSession(str(m["onnx"]), providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        for batch in (1, 1024):
            npy = m["inputs"][batch]
            x_run = np.load(npy)
            if x_run.dtype.kind in "iu":
                x_run = x_run.astype(np.float32) * np.float32(m["scale"])
            onnx_path = str(m["onnx"])
            variants = {
                command: quietly(lambda p=onnx_path, n=npy: predict_command(p, str(n))),
                "tk predict via cli.main() (adds Typer's parsing)": quietly(
                    lambda p=onnx_path, n=npy: via_main(["predict", p, "--input", str(n)])
                ),
                "toolkit.predict.predict() (no printing)": lambda p=onnx_path, n=npy: predict(p, n),
                raw: quietly(
                    lambda m=m, n=npy: raw_onnx_predict(m["onnx"], n, m["task"], m["scale"])
                ),
                "raw onnxruntime: run only (session reused)": (
                    lambda x=x_run, s=session, i=input_name: s.run(None, {i: x})
                ),
                "eager: rebuild from run + forward + print": quietly(
                    lambda m=m, n=npy: eager(m, n)
                ),
            }
            interleave(variants, 2)  # warm-up: imports, first sessions
            times, _ = interleave(variants, sizes.predict_rounds)
            for name, ts in times.items():
                rows.append(
                    [
                        m["name"],
                        batch,
                        name,
                        fmt(median(ts) * 1e3),
                        fmt(paired_ratio(times, name, raw)),
                    ]
                )
            if batch == 1024:
                goal_ratio[m["name"]] = paired_ratio(times, command, raw)
                try:
                    pieces[m["name"]] = predict_pieces(m, batch, sizes.predict_rounds)
                except Exception as exc:  # private helpers may move; the rest stands
                    print(f"bench: predict breakdown skipped: {exc}", file=sys.stderr)
    worst = max(goal_ratio.values())
    report.goals.append(
        Goal(
            "predict",
            "`tk predict` / raw onnxruntime at batch 1024 (process start excluded)",
            worst,
            1.10,
            "x",
            higher_is_better=False,
            detail=", ".join(f"{k}: {fmt(v)}x" for k, v in goal_ratio.items()),
        )
    )
    report.data["predict"] = goal_ratio
    report.data["predict_pieces"] = pieces

    proc_lines: list[str] = []
    if sizes.predict_process_rounds:
        m = models[-1]
        script = tmp / "raw_predict.py"
        script.write_text(RAW_PREDICT_SCRIPT)
        env = child_env(threads)
        npy = str(m["inputs"][1024])
        procs = {
            "tk predict model.onnx --input x.npy": lambda: run_process(
                [*tk_command(), "predict", str(m["onnx"]), "--input", npy], env, tmp
            ),
            "python raw_predict.py model.onnx x.npy": lambda: run_process(
                [sys.executable, str(script), str(m["onnx"]), npy, str(m["scale"])], env, tmp
            ),
        }
        ptimes, _ = interleave(procs, sizes.predict_process_rounds)
        proc_lines = [
            "### As whole processes (for reference; not a goal)",
            "",
            f"{m['name']}, batch 1024, {sizes.predict_process_rounds} interleaved rounds.",
            "",
            *table(["process", "median s"], [[k, fmt(median(v))] for k, v in ptimes.items()]),
            "",
        ]
    lines = [
        "## 4. Inference",
        "",
        "Each model trained by tk and exported with `tk export --format onnx` (the "
        "library call). End to end from a file path and an input `.npy` file to the "
        "labels and probabilities printed (into a string), in this process: imports "
        "warm, process start and Typer's argument parsing excluded (the *via cli.main()* "
        "row shows what parsing adds). *raw onnxruntime* is the same job written with "
        "onnxruntime and numpy alone. "
        f"Median of {sizes.predict_rounds} interleaved rounds; *x raw* = median per-round "
        "time / the raw end-to-end time. The FashionMNIST MLP's inputs are uint8 images "
        "(scaled by 1/255 on the way in, as `tk predict` does).",
        "",
        *table(["model", "batch", "path", "ms", "x raw"], rows, left=3),
        "",
    ]
    if pieces:
        names = list(pieces)
        steps = list(pieces[names[0]])
        lines += [
            "Where `tk predict`'s time goes at batch 1024 (each step timed alone, ms):",
            "",
            *table(
                ["step", *names],
                [[k, *(fmt(pieces[n][k] * 1e3) for n in names)] for k in steps],
            ),
            "",
        ]
    lines += proc_lines
    if EXPORT_PAGE.exists():
        lines += [
            "Steady-state latency per runtime (eager, onnxruntime, TorchScript, pt2) and "
            "export times: [benchmarks-export.md](benchmarks-export.md).",
            "",
        ]
    report.sections.append("\n".join(lines))


# ================================================================ 5. peak memory
def _status_kib(key: str) -> int:
    """A ``/proc/self/status`` figure in KiB (VmRSS, VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def memory_child(variant: str, n_train: int, threads: int) -> None:
    """Child process: peak RSS of one epoch above the RSS right after ``import torch``.

    Prints one JSON line with the steps in between, so the page can say what is the
    loop's own and what is torch's fixed cost. ``torch`` is already imported (this
    module imports it first).
    """
    from toolkit.registry import Recipe

    torch.set_num_threads(threads)
    recipe = Recipe(**FASHION_RECIPE)
    if variant == "hand":

        def epoch(t: dict[str, torch.Tensor]) -> None:
            hand_epoch(t, fashion_mlp())
    else:
        if variant == "tk":
            from toolkit.train import fit
        else:
            fit = patched_train(SUGGESTED_PATCH)[0]["fit"]

        def epoch(t: dict[str, torch.Tensor]) -> None:
            fit(fashion_mlp(), fashion_data(t), recipe, task="multiclass", seed=0)

    rss = {"import torch": _status_kib("VmRSS")}
    # torch.optim imports torch._dynamo the first time an optimizer is built (its
    # add_param_group is wrapped by torch._compile._disable_dynamo): a fixed cost of
    # any loop using torch.optim, measured apart by importing it first.
    importlib.import_module("torch._dynamo")
    rss["torch._dynamo"] = _status_kib("VmRSS")
    # A tiny epoch first: lazy imports, kernel and allocator first use (fixed costs).
    epoch(fashion_tensors(640, 64))
    rss["warm-up"] = _status_kib("VmRSS")
    t = fashion_tensors(n_train, max(1, n_train // 6))
    rss["data"] = _status_kib("VmRSS")
    # Reset the high-water mark ("5" to clear_refs) so the peak is the epoch's own;
    # the dataset is resident, so it is inside the peak, as the goal counts it.
    reset = True
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        reset = False
    epoch(t)
    rss["peak"] = _status_kib("VmHWM")
    print(
        json.dumps(
            {
                "rss_bytes": {k: v * 1024 for k, v in rss.items()},
                "dataset_bytes": t["x_train"].numel(),
                "test_bytes": t["x_test"].numel(),
                "param_bytes": param_bytes(fashion_mlp()),
                "hwm_reset": reset,
            }
        )
    )


def bench_memory(sizes: Sizes, threads: int, tmp: Path, report: Report) -> None:
    """Section 5: each variant's epoch in a fresh child process, peak memory measured there."""
    env = child_env(threads)
    labels = {
        "tk": "tk fit()",
        "tk-patched": "tk fit() + suggested patch",
        "hand": "hand-written in-memory loop",
    }
    results = {}
    for variant in sizes.memory_variants:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child-memory",
            variant,
            "--n-train",
            str(sizes.memory_train),
            "--threads",
            str(threads),
        ]
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"memory child {variant} failed: {proc.stderr[-800:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        b = r["rss_bytes"]
        # Each step's increase, in MB; "epoch" is the peak above the loaded data.
        r["steps"] = {
            "torch._dynamo": (b["torch._dynamo"] - b["import torch"]) / MB,
            "warm-up": (b["warm-up"] - b["torch._dynamo"]) / MB,
            "data": (b["data"] - b["warm-up"]) / MB,
            "epoch": (b["peak"] - b["data"]) / MB,
            "total": (b["peak"] - b["import torch"]) / MB,
        }
        results[variant] = r
    first = results[sizes.memory_variants[0]]
    budget = (2 * first["dataset_bytes"] + 4 * first["param_bytes"]) / MB
    rows = []
    for variant, r in results.items():
        st = r["steps"]
        rows.append(
            [
                labels[variant],
                fmt(st["torch._dynamo"]),
                fmt(st["warm-up"]),
                fmt(st["data"]),
                fmt(st["epoch"]),
                fmt(st["total"]),
                fmt(st["total"] / budget),
                fmt((st["data"] + st["epoch"]) / budget),
            ]
        )
    tk = results["tk"]["steps"]
    notes = [
        f"torch._dynamo {fmt(tk['torch._dynamo'])} MB + warm-up {fmt(tk['warm-up'])} MB; "
        f"data + epoch alone: {fmt(tk['data'] + tk['epoch'])} MB "
        f"= {fmt((tk['data'] + tk['epoch']) / budget)} x the limit"
    ]
    if "tk-patched" in results:
        p = results["tk-patched"]["steps"]
        notes.append(f"with the suggested patch: {fmt(p['data'] + p['epoch'])} MB")
    report.goals.append(
        Goal(
            "memory",
            f"peak memory of one epoch above `import torch` ({sizes.memory_train:,} images)",
            tk["total"],
            budget,
            "MB",
            higher_is_better=False,
            detail="; ".join(notes),
        )
    )
    report.data["memory"] = {"results": results, "budget": budget}
    lines = [
        "## 5. Peak memory of one epoch",
        "",
        "Each variant in a fresh child process, RSS measured after each step (MB = 10^6 "
        "bytes): `import torch` (the base); `import torch._dynamo` (torch.optim imports "
        "it the first time any optimizer is built, so every variant pays it; importing it "
        "first measures it apart); a warm-up epoch on 640 images (lazy imports, first use "
        "of kernels and allocator); the data "
        f"({sizes.memory_train:,} training and {first['test_bytes'] // 784:,} test "
        "images, uint8); then the high-water mark is reset and one epoch runs; *epoch* is "
        "its peak (VmHWM) above the loaded data. The goal counts everything above the "
        "base. Limit: 2 x the training set's uint8 size "
        f"({fmt(first['dataset_bytes'] / MB)} MB) + 4 x the parameters "
        f"({fmt(first['param_bytes'] / MB)} MB) = **{fmt(budget)} MB**.",
        "",
        *table(
            [
                "variant",
                "torch._dynamo",
                "warm-up",
                "data",
                "epoch",
                "total above base",
                "x limit",
                "data + epoch, x limit",
            ],
            rows,
        ),
        "",
    ]
    if not first["hwm_reset"]:
        lines += ["(The high-water mark could not be reset: the peak includes data setup.)", ""]
    report.sections.append("\n".join(lines))


# ==================================================================== 6. profile
def bench_profile(sizes: Sizes, report: Report) -> None:
    """Section 6: torch.profiler over one tk epoch, and the time budget of that epoch."""
    from torch.profiler import ProfilerActivity, profile

    from toolkit.registry import Recipe
    from toolkit.train import fit

    t = fashion_tensors(sizes.profile_train, max(1, sizes.profile_train // 6))
    data = fashion_data(t)
    recipe = Recipe(**FASHION_RECIPE)
    fit(
        fashion_mlp(),
        fashion_data({k: v[:640] for k, v in t.items()}),
        recipe,
        task="multiclass",
        seed=0,
    )  # warm-up
    try:  # the profiler's C++ side logs to stderr (no GPU here): not for the reader
        from toolkit.verify import quiet_native
    except ImportError:
        quiet_native = contextlib.nullcontext
    with quiet_native(), profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        fit(fashion_mlp(), data, recipe, task="multiclass", seed=0)
        wall = time.perf_counter() - start
    events = [e for e in prof.key_averages() if not e.key.startswith("ProfilerStep")]
    total_self = sum(e.self_cpu_time_total for e in events)  # µs
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    rows = [
        [
            f"`{e.key}`",
            e.count,
            fmt(e.self_cpu_time_total / 1e3),
            f"{100 * e.self_cpu_time_total / total_self:.1f}%",
        ]
        for e in top
    ]
    groups = {
        "matrix multiplies (addmm, mm)": ("aten::addmm", "aten::mm"),
        "batch gather (index, index_select)": ("aten::index", "aten::index_select"),
        "uint8->float conversion and scaling (copy_, to, mul_)": (
            "aten::copy_",
            "aten::_to_copy",
            "aten::mul_",
        ),
        "optimizer (add_)": ("aten::add_",),
    }
    by_key = {e.key: e.self_cpu_time_total for e in events}
    group_rows = [
        [
            name,
            fmt(sum(by_key.get(k, 0) for k in keys) / 1e3),
            f"{100 * sum(by_key.get(k, 0) for k in keys) / total_self:.1f}%",
        ]
        for name, keys in groups.items()
    ]
    report.data["profile"] = {"wall": wall, "ops": total_self / 1e6}
    lines = [
        "## 6. Profile of one tk epoch",
        "",
        f"`torch.profiler` (CPU) around `fit()` for one epoch of {sizes.profile_train:,} "
        f"FashionMNIST-shaped images: {fmt(wall)} s wall under the profiler, "
        f"{fmt(total_self / 1e6)} s inside aten operators (self time); the rest "
        f"({fmt(100 * (1 - total_self / 1e6 / wall))}%) is Python and the profiler's own "
        "per-op overhead. Top operators by self time:",
        "",
        *table(["operator", "calls", "self ms", "share"], rows),
        "",
        "Grouped (`aten::add_` is mostly SGD's update, plus the metric sums):",
        "",
        *table(["group", "self ms", "share"], group_rows),
        "",
    ]
    report.sections.append("\n".join(lines))


# ===================================================================== analysis
def time_budget(report: Report) -> list[str]:
    """Where one tk FashionMNIST-shaped epoch's time goes, from the measured pieces."""
    fm = report.data.get("fashion")
    if not fm:
        return []
    tk_s = median(fm["times"]["tk fit()"])
    steps = fm["steps"]
    costs = fm["costs"]
    pieces = [
        ("forward+backward+step (compute bound, train)", fm["bound_steps"]),
        ("test-set forward (compute bound, eval)", fm["bound_eval"]),
        ("batch gather + uint8->float", costs["batch gather + uint8->float (tk)"] * steps),
        ("metrics on the device", costs["metrics on device (loss sum, correct count)"] * steps),
        ("per-step loss.item()", costs["loss.item() (the per-step NaN check)"] * steps),
    ]
    rest = tk_s - sum(s for _, s in pieces)
    pieces.append(("the rest: Python loop, generators, allocator, cache effects", rest))
    rows = [[k, fmt(s), f"{100 * s / tk_s:.1f}%"] for k, s in pieces]
    return [
        "### Where the time of one tk epoch goes",
        "",
        f"The median tk epoch ({fmt(tk_s)} s, section 2) split into the measured pieces "
        "(compute from the fixed-batch bound, the rest from the per-step micro-timings "
        "x steps); *the rest* is the difference and carries the run's noise.",
        "",
        *table(["piece", "seconds", "share"], rows),
        "",
    ]


def why(goal: Goal, data: dict[str, Any]) -> str:
    """The reason a goal was missed, from what the sections measured."""
    key = goal.key
    if math.isnan(goal.measured):
        return goal.detail or "not measured"
    if key == "circle-loop" and "circle" in data:
        c = data["circle"]
        per = (median(c["times"]["tk fit()"]) - median(c["times"]["plain loop"])) / c["epochs"]
        same_optimizer = paired_ratio(
            c["times"], "tk fit() + suggested patch", "plain loop, fused Adam"
        )
        return (
            f"tk spends {fmt(per * 1e6)} µs more per epoch than the plain loop (medians). "
            "A full-batch epoch is one step, so every per-epoch tensor op counts: tk's "
            "epoch allocates zero accumulators for the train and test sums and two count "
            "tensors, stacks six values for the per-epoch record, and runs a generator, "
            "the precision context and the stop check around the step; each costs 1-5 µs "
            "against a sub-millisecond epoch. The suggested patch gives "
            f"{goal.detail.split(': ')[-1]}; against a plain loop with fused Adam it is "
            f"{fmt(same_optimizer)}x: the rest is Python structure (the batch generator, "
            "the evaluate call, the metric helper, the stop check), tens of µs per epoch."
        )
    if key == "circle-process" and "circle" in data:
        p = data["circle"]["process"]
        cpu, wall = median(p["cpu"]), median(p["wall"])
        if abs(cpu - wall) < 0.15:
            lead = f"the CPU-time difference ({fmt(cpu)} s) matches the wall one: it is work"
        else:
            lead = (
                f"the CPU-time difference is {fmt(cpu)} s against {fmt(wall)} s of wall time, "
                "so part of the gap is contention; the work"
            )
        return (
            f"{lead}: tk imports typer, pluggy and its modules (~0.1 s, see "
            "`tk --help` in section 3), discovers its plugins, runs the slightly slower loop "
            "of the row above, and writes the run directory; and more imported modules make "
            "the interpreter's final garbage collections longer. With `gc.freeze()` at exit "
            f"(suggested for cli.main) tk - plain is {fmt(median(p['freeze']))} s."
        )
    if key in ("fm-hand", "fm-bound") and "fashion" in data:
        c = data["fashion"]["costs"]
        return (
            "tk keeps the images as uint8 and gathers with advanced indexing, "
            f"{fmt(c['batch gather + uint8->float (tk)'] * 1e6)} µs/step against "
            f"{fmt(c['batch gather of float32 rows (hand-written)'] * 1e6)} µs for the "
            "hand loop's float gather and "
            f"{fmt(c['batch gather with index_select + uint8->float (patch)'] * 1e6)} µs "
            f"with index_select; {goal.detail}."
        )
    if key == "fm-tutorial":
        return "the tutorial path is unusually fast on this run (its PIL+ToTensor cost)."
    if key in ("startup-help", "startup-list"):
        return f"the command's imports ({goal.detail}) and Python start-up on a loaded CPU."
    if key == "predict":
        pieces = data.get("predict_pieces", {})
        parts = []
        for name, p in pieces.items():
            output = p["_meaning: one dict per row"] + p["lines() + one typer.echo per row"]
            parts.append(
                f"{name}: {fmt(output * 1e3)} ms of output against "
                f"{fmt(p['runner.run'] * 1e3)} ms of onnxruntime run"
            )
        split = "; ".join(parts)
        return (
            "the model run is the same; the difference is Python per row: `_meaning` builds "
            "one dict (with every class probability as a Python list) per row, and the "
            "command prints the table with one `typer.echo` per row, while the raw script "
            "formats numpy arrays and prints once"
            + (f" ({split})" if split else "")
            + f". Per model: {goal.detail}."
        )
    if key == "memory" and "memory" in data:
        m = data["memory"]
        tk = m["results"]["tk"]["steps"]
        own = tk["data"] + tk["epoch"]
        text = (
            f"{fmt(tk['torch._dynamo'])} MB of it is `torch._dynamo`, which torch.optim "
            "imports when the first optimizer is built (any loop using torch.optim pays "
            f"it, the hand-written one included), and {fmt(tk['warm-up'])} MB is first-use "
            f"warm-up; the data and the epoch itself take {fmt(own)} MB "
            f"({fmt(own / m['budget'])} x the limit)"
        )
        if own > m["budget"]:
            text += (
                ". Beyond the data, the test evaluation runs in batches of up to 8192 rows: "
                "a float32 copy of 8192 images (26 MB) plus two 8192x512 activations "
                f"(17 MB each); the patch bounds it to {EVAL_ELEMENTS:,} features per batch"
            )
        return text + "."
    return goal.shortfall()


def render(report: Report, args: argparse.Namespace, seconds: float, load: list) -> str:
    """The markdown page."""
    import onnxruntime
    import torchvision

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cmd = (
        "make bench"
        if not args.quick and Path(args.out) == DEFAULT_OUT
        else ("python scripts/bench.py " + " ".join(sys.argv[1:]))
    )
    lines = [
        "# Benchmarks: the shared loop against hand-written loops",
        "",
        "Produced by:",
        "",
        f"    {cmd}    # .venv/bin/python scripts/bench.py{' --quick' if args.quick else ''}",
        "",
        f"Machine: {cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}, numpy {np.__version__}, onnxruntime "
        f"{onnxruntime.__version__}. torch runs {args.threads} intra-op thread(s) here and in "
        f"every child process (OMP_NUM_THREADS={args.threads}). "
        f"Date {time.strftime('%Y-%m-%d %H:%M')}; the whole run took {seconds:.0f} s.",
        "",
        f"Load average (1 min) at start {load[0]:.2f}, at end {load[1]:.2f}: other "
        "processes shared the CPU. Absolute times move from run to run; every comparison "
        "is timed interleaved in this one run (one call of each variant per round, the "
        "order rotated), and ratios are medians of per-round ratios.",
        "",
    ]
    if args.quick:
        lines += [
            "**--quick**: reduced sizes (fewer epochs, images and rounds) for a smoke "
            "test; the goals' conditions are those of the full run.",
            "",
        ]
    rows = []
    for g in report.goals:
        sign = ">=" if g.higher_is_better else "<="
        rows.append(
            [
                g.text,
                f"{sign} {fmt(g.limit)} {g.unit}",
                f"ratio: {fmt(g.measured)} {g.unit}"
                if g.unit == "x"
                else f"{fmt(g.measured)} {g.unit}",
                "met" if g.met else "**missed**",
                g.detail,
            ]
        )
    header = ["goal", "limit", "measured", "", "note"]
    lines += ["## Goals", "", *table(header, rows, left=len(header)), ""]
    missed = [g for g in report.goals if not g.met]
    if missed:
        lines += ["Missed goals, by how much and why:", ""]
        for g in missed:
            lines.append(f"- **{g.text}**: {g.shortfall()}; {why(g, report.data)}")
        lines.append("")
    lines += report.sections
    lines += time_budget(report)
    lines += [
        "## The suggested patch",
        "",
    ]
    present = already_in(SUGGESTED_PATCH)
    pending = [title for title, _ in SUGGESTED_PATCH if title not in present]
    if present:
        lines += [
            "Already in toolkit/train.py (so inside the *tk fit()* rows): "
            + "; ".join(present)
            + ".",
            "",
        ]
    if pending:
        lines += [
            "The *+ suggested patch* rows run a copy of `toolkit.train.fit` and its helpers "
            "with the remaining changes applied (`SUGGESTED_PATCH` in scripts/bench.py; the "
            "toolkit itself is unchanged): " + "; ".join(pending) + ". As a diff of "
            "today's train.py (before `ruff format`):",
            "",
            "```diff",
            suggested_diff().rstrip("\n"),
            "```",
            "",
        ]
    lines += [
        "Separately, for `cli.main`: `gc.freeze()` in a `finally:` around the app call "
        "(measured in section 1's process table).",
    ]
    missing = report.data.get("circle", {}).get("patch_missing", [])
    if missing:
        lines += ["", "Could not apply (train.py has changed): " + "; ".join(missing)]
    if report.data.get("train_changed"):
        lines += [
            "",
            "**toolkit/train.py changed while this ran** (another edit in the tree): "
            "sections may have measured different versions; run `make bench` again.",
        ]
    lines.append("")
    return "\n".join(lines)


# ========================================================================== main
def main(argv: list[str] | None = None) -> int:
    """Run every section and write the page; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (smoke test)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="the markdown page to write")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--only", help="comma-separated sections (circle,fashion,startup,predict,memory,profile)"
    )
    parser.add_argument("--child-memory", help=argparse.SUPPRESS)
    parser.add_argument("--n-train", type=int, default=60_000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))  # run from a checkout without the editable install too
    if args.child_memory:
        memory_child(args.child_memory, args.n_train, args.threads)
        return 0

    torch.set_num_threads(args.threads)
    sizes = Sizes.reduced() if args.quick else Sizes()
    report = Report()
    sections: list[tuple[str, Callable[[Path], None]]] = [
        ("circle", lambda tmp: bench_circle(sizes, args.threads, tmp, report)),
        ("fashion", lambda tmp: bench_fashion(sizes, tmp, report)),
        ("startup", lambda tmp: bench_startup(sizes, args.threads, tmp, report)),
        ("predict", lambda tmp: bench_inference(sizes, args.threads, tmp, report)),
        ("memory", lambda tmp: bench_memory(sizes, args.threads, tmp, report)),
        ("profile", lambda tmp: bench_profile(sizes, report)),
    ]
    only = set(args.only.split(",")) if args.only else None
    train_py = REPO / "toolkit" / "train.py"
    train_before = train_py.read_bytes() if train_py.exists() else b""
    failed = []
    load = [os.getloadavg()[0]]
    start = time.perf_counter()
    for name, run in sections:
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix=f"tk-bench-{name}-") as tmp:
            try:
                run(Path(tmp))
            except Exception as exc:
                # One broken section must not hide the others' figures: say so and go on.
                traceback.print_exc()
                failed.append(name)
                report.sections.append(f"## {name}\n\nfailed: {exc}\n")
        print(f"bench: {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    load.append(os.getloadavg()[0])
    if train_py.exists() and train_py.read_bytes() != train_before:
        report.data["train_changed"] = True
        print("bench: warning: toolkit/train.py changed during the run", file=sys.stderr)
    page = render(report, args, time.perf_counter() - start, load)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    print(f"bench: wrote {out}", file=sys.stderr)
    for g in report.goals:
        print(f"  {'met   ' if g.met else 'MISSED'} {g.text}: {fmt(g.measured)} {g.unit}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
