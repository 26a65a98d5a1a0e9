"""``tk bench``: latency of exported files, each in its runtime, next to their eager models.

Every file is loaded in the runtime that serves it (onnxruntime on CPU, TorchScript,
pt2) and the eager model of each file's run is rebuilt beside it; then, per batch
size, all of them are timed in one interleaved loop (:func:`toolkit.speed.interleave`:
one call each in turn, the order rotated every round), so a burst of load from
another process hits all of them alike. Every runtime gets the same number of
threads (torch's intra-op threads, onnxruntime's ``intra_op_num_threads``).

Inputs are random float32 samples of each model's input shape (seeded): latency
does not depend on the values. Static-batch files are timed at their own batch only.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import runs
from toolkit.errors import UsageError
from toolkit.formats import quantization, size_text, static_batch
from toolkit.speed import interleave, latency
from toolkit.trust import clear

if TYPE_CHECKING:
    import numpy as np

    from toolkit.registry import Registry

DEFAULT_BATCH_SIZES = (1, 64, 1024)
DEFAULT_ROUNDS = 20
WARMUP_ROUNDS = 2  # first calls allocate and pick kernels: not timed
SEED = 0


@dataclass
class Target:
    """One thing being timed: an exported file in its runtime, or a run's eager model."""

    name: str
    format: str  # onnx | torchscript | pt2 | eager
    runtime: str
    size: int  # bytes of the file (eager: of the run's weights)
    run: str
    shape: tuple[int, ...]
    call: Callable[[np.ndarray], Any]
    path: str | None = None
    quantization: str | None = None
    static: int | None = None
    latency: dict[int, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Everything but the callable; latency keyed by batch size."""
        return {
            "name": self.name,
            "path": self.path,
            "format": self.format,
            "runtime": self.runtime,
            "size": self.size,
            "run": self.run,
            "quantization": self.quantization,
            "static_batch": self.static,
            "latency": {str(b): v for b, v in self.latency.items()},
        }


@dataclass
class BenchReport:
    """Every target's latency at every batch size, measured in one interleaved run."""

    threads: int
    batch_sizes: list[int]
    rounds: int
    targets: list[Target]

    def eager_of(self, t: Target) -> Target | None:
        """The eager model of ``t``'s run."""
        return next((e for e in self.targets if e.format == "eager" and e.run == t.run), None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly dict (``tk bench --json``)."""
        return {
            "threads": self.threads,
            "batch_sizes": self.batch_sizes,
            "rounds": self.rounds,
            "inputs": f"random standard-normal float32 rows (seed {SEED})",
            "results": [t.to_json() for t in self.targets],
        }


def bench_files(
    files: Sequence[str | Path],
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    threads: int | None = None,
    rounds: int = DEFAULT_ROUNDS,
    trust: bool = False,
    runs_dir: str | Path = "runs",
    registry: Registry | None = None,
) -> BenchReport:
    """Time every file and the eager model of every file's run, interleaved.

    :param threads: threads for every runtime (default: torch's current setting).
    :param rounds: timed calls of each target per batch size.
    :param trust: load TorchScript and torch.export files this tk installation did
        not export (loading them runs code).
    :raises UsageError: a missing file, one without tk metadata, an unknown run, a
        TorchScript or pt2 file tk did not export without ``trust``, bad sizes (exit 2).
    """
    import torch

    if not files:
        raise UsageError("no files to benchmark", "tk bench runs/circle/demo/model.onnx")
    if rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {rounds}")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()
    before = torch.get_num_threads()
    threads = threads or before
    torch.set_num_threads(threads)
    try:
        targets = _load(files, threads, trust, runs_dir, registry)
        sizes = sorted({int(b) for b in batch_sizes})
        for batch in sizes:
            _time_batch(targets, batch, rounds)
    finally:
        torch.set_num_threads(before)  # a library call leaves the process as it found it
    return BenchReport(threads, sizes, rounds, targets)


def _load(
    files: Sequence[str | Path], threads: int, trust: bool, runs_dir: Any, registry: Registry
) -> list[Target]:
    """A Target per file (through the integrity gate), then one eager model per run."""
    from toolkit.verify import find_run

    targets: list[Target] = []
    runs_seen: dict[str, Any] = {}
    for f in files:
        path = runs.guard_path(f, runs_dir)  # runs/latest/model.onnx stays in the runs root
        if not path.is_file():
            raise UsageError(f"{path} not found", "tk export, then the path of the file it wrote")
        cleared = clear(path, trust=trust)
        meta = cleared.metadata()
        if not meta:
            raise UsageError(f"{path} carries no tk metadata", "export it with tk export")
        run = find_run(path, meta, None, runs_dir)
        fmt = cleared.format
        runner = cleared.runners(cuda=False, threads=threads)[0]
        targets.append(
            Target(
                name=path.name,
                format=fmt,
                runtime=runner.name,
                size=path.stat().st_size,
                run=str(run.path),
                shape=tuple(int(d) for d in meta["input"]["shape"][1:]),
                call=runner.run,
                path=str(path),
                quantization=quantization(meta),
                static=static_batch(meta),
            )
        )
        runs_seen.setdefault(str(run.path), (run, targets[-1].shape))
    return targets + [_eager(run, shape, registry) for run, shape in runs_seen.values()]


def _eager(run: Any, shape: tuple[int, ...], registry: Registry) -> Target:
    """The run's eager model under ``torch.inference_mode`` (how it serves fastest)."""
    import torch

    from toolkit.models import rebuild_model

    model = rebuild_model(run, registry)

    def call(x: np.ndarray) -> Any:
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    name = f"eager ({Path(run.path).parent.name}/{Path(run.path).name})"
    size = run.weights.stat().st_size
    return Target(name, "eager", "torch", size, str(run.path), shape, call)


def _time_batch(targets: list[Target], batch: int, rounds: int) -> None:
    """Time every target that can take ``batch`` rows, interleaved; fill their latency."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    inputs: dict[tuple[int, ...], np.ndarray] = {}
    calls: dict[str, Callable[[], Any]] = {}
    for i, t in enumerate(targets):
        if t.static is not None and t.static != batch:
            continue  # a static-batch file runs at its own batch only
        if t.shape not in inputs:
            inputs[t.shape] = rng.standard_normal((batch, *t.shape)).astype(np.float32)
        calls[str(i)] = functools.partial(t.call, inputs[t.shape])
    if not calls:
        return
    interleave(calls, WARMUP_ROUNDS)
    times = interleave(calls, rounds)
    for key, values in times.items():
        targets[int(key)].latency[batch] = latency(values, batch)


def speedup(report: BenchReport, t: Target, batch: int) -> float:
    """Eager p50 / this target's p50 at ``batch`` (above 1: faster than eager)."""
    eager = report.eager_of(t)
    if eager is None or batch not in eager.latency or batch not in t.latency:
        return math.nan
    return eager.latency[batch]["p50_ms"] / t.latency[batch]["p50_ms"]


def render(report: BenchReport, file: Any = None) -> None:
    """A rich table: one row per target and batch size, eager models alongside."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, highlight=False, soft_wrap=False, width=160)
    table = Table(title=f"tk bench: {report.threads} thread(s), {report.rounds} rounds")
    for col in ("target", "format", "runtime", "size", "batch"):
        table.add_column(col, no_wrap=True)
    for col in ("p50 ms", "p90 ms", "p99 ms", "rows/s", "x eager"):
        table.add_column(col, justify="right", no_wrap=True)
    for batch in report.batch_sizes:
        for t in report.targets:
            lat = t.latency.get(batch)
            if lat is None:
                continue
            x = speedup(report, t, batch)
            table.add_row(
                t.name,
                t.format + (f" {t.quantization}" if t.quantization else ""),
                t.runtime,
                size_text(t.size),
                str(batch),
                f"{lat['p50_ms']:.3f}",
                f"{lat['p90_ms']:.3f}",
                f"{lat['p99_ms']:.3f}",
                f"{lat['rows_per_s']:,.0f}",
                "-" if math.isnan(x) else f"{x:.2f}",
            )
    console.print(table)
    console.print(
        "x eager: the run's eager p50 / this p50 (above 1: faster); every target timed "
        "round-robin in one loop per batch size, random float32 inputs",
        soft_wrap=True,
        markup=False,
    )


def plot(report: BenchReport, out: str | Path) -> Path:
    """A PNG bar chart: p50 latency (p90 as the whisker) per target, one panel per batch."""
    # The object API, as toolkit/plot.py: no pyplot state, no backend switched for the
    # caller (Agg renders the PNG, nothing pops up).
    from matplotlib.figure import Figure

    out = Path(out)
    sizes = report.batch_sizes
    fig = Figure(figsize=(4.5 * len(sizes), 0.45 * len(report.targets) + 2))
    axes = list(fig.subplots(1, len(sizes), squeeze=False)[0])
    for ax, batch in zip(axes, sizes, strict=True):
        shown = [t for t in report.targets if batch in t.latency]
        p50 = [t.latency[batch]["p50_ms"] for t in shown]
        p90 = [t.latency[batch]["p90_ms"] for t in shown]
        colors = ["#888888" if t.format == "eager" else "#3b75af" for t in shown]
        ys = range(len(shown))
        ax.barh(
            ys,
            p50,
            color=colors,
            xerr=[[0] * len(shown), [b - a for a, b in zip(p50, p90, strict=True)]],
        )
        ax.set_yticks(list(ys), [t.name for t in shown], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("ms per call (p50, whisker to p90)")
        ax.set_title(f"batch {batch}")
    fig.suptitle(f"tk bench ({report.threads} thread(s))")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    runs.atomic_write_bytes(out, buf.getvalue())
    return out
