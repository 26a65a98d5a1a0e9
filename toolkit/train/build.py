"""Building the parts of a run: the device, the optimizer, the precision, a fit check.

Each builder refuses what cannot work with a UsageError before the run directory
exists: an unavailable device, a precision the device cannot train in, a model
whose input or output does not fit the dataset.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any

from toolkit.data import Data, Split
from toolkit.errors import UsageError, one_line
from toolkit.registry import DatasetSpec, ModelSpec, Recipe

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16", "fp16")
# Below this many floating-point operations per training step one thread is fastest:
# splitting a small step costs more than it gains. On an idle 2-core machine
# digits-mlp (3e7 a step) ran 27x slower on two threads, digits-cnn (3e8) 1.2x and
# ResNet-18 at 32x32 (1e10) 1.2x faster (docs/benchmarks-images.md, "Threads").
ONE_THREAD_FLOPS = 1e8


def select_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; an unavailable CUDA is a UsageError."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device '{name}'", "--device auto|cpu|cuda|cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("CUDA is not available on this machine", "--device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"no {name}: this machine has {torch.cuda.device_count()} CUDA device(s)",
                "--device cuda:0",
            )
    elif device.type != "cpu":
        raise UsageError(f"unsupported device '{name}'", "--device auto|cpu|cuda|cuda:N")
    return device


def make_optimizer(
    model: torch.nn.Module,
    recipe: Recipe,
    head: tuple[str, ...] | None = None,
    head_lr: float | None = None,
) -> torch.optim.Optimizer:
    """The optimizer named by the recipe; with ``head_lr`` the ``head`` parameters are
    a second group at that rate."""
    import torch

    from toolkit.train.finetune import param_groups

    groups = param_groups(model, head, head_lr)
    params = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
    # Fused Adam/AdamW: one kernel for all parameters instead of a Python loop of
    # small ops per parameter (the circle bench: 1.13x -> 0.94x the plain loop).
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    extra = {"fused": True} if fused and params else {}
    if recipe.optimizer == "adam":
        return torch.optim.Adam(groups, lr=recipe.lr, weight_decay=recipe.weight_decay, **extra)
    return torch.optim.AdamW(groups, lr=recipe.lr, weight_decay=recipe.weight_decay, **extra)


def check_precision(precision: str, device: Any) -> None:
    """Refuse precisions the device cannot train in, with the flag that works."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type not in ("cuda", "cpu"):
        raise UsageError(
            f"fp16 mixed precision needs a CUDA device or the CPU, not {device.type}",
            "--precision bf16",
        )


def autocast(precision: str, device: Any) -> Any:
    """The autocast context of a precision (a no-op context for fp32)."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def compile_stats() -> dict[str, int]:
    """What torch.compile did in this process: dynamo's graphs and graph breaks (a
    graph break is where compiled code falls back to Python, the usual slowdown)."""
    from torch._dynamo.utils import counters

    return {
        "graphs": int(counters["stats"]["unique_graphs"]),
        "graph_breaks": int(sum(counters["graph_break"].values())),
    }


def compiled(module: Any) -> Any:
    """``torch.compile(module)``, or the module itself with a warning when unavailable."""
    import torch

    try:
        return torch.compile(module)
    except Exception as exc:  # e.g. a Python version torch.compile does not support
        print(
            f"tk: warning: --compile unavailable ({one_line(exc, 160)}); training eagerly",
            file=sys.stderr,
        )
        return module


def load_init_weights(model: torch.nn.Module, path: str, name: str) -> None:
    """Start from a weights file (safe loading only); a mismatch names the model."""
    from toolkit.weights import load_weights_file

    state = load_weights_file(path)
    # A model wrapped in tk's standardization takes a bare model's weights too
    # (a torchvision file, say): they go into the wrapped network.
    from toolkit.preprocess import Standardized

    target = model
    if isinstance(model, Standardized) and not any(k.startswith("net.") for k in state):
        target = model.net
    try:
        target.load_state_dict(state)
    except RuntimeError as exc:
        raise UsageError(
            f"{path} does not fit model '{name}': {one_line(exc, 200, typed=False)}"
        ) from None


def check_fit(model: torch.nn.Module, mspec: ModelSpec, dspec: DatasetSpec, data: Data) -> None:
    """One dry batch: the dataset's features go in and the outputs the task needs come out.

    A mismatch is a UsageError naming both shapes, raised before any run directory exists.
    """
    if tuple(mspec.input.shape) != tuple(dspec.feature_shape):
        raise UsageError(
            f"model '{mspec.name}' takes input of shape {tuple(mspec.input.shape)} but dataset "
            f"'{dspec.name}' has features of shape {tuple(dspec.feature_shape)}",
            "tk list datasets",
        )
    out, n = _dry_batch(model, mspec, dspec, data)
    want = dspec.outputs
    got = tuple(out.shape)
    if got == (n, want) or (want == 1 and got == (n,)):
        return
    what = {"binary": "1 logit", "multiclass": f"{want} logits ({want} classes)"}.get(
        dspec.target, f"{want} value(s)"
    )
    raise UsageError(
        f"model '{mspec.name}' outputs shape {got[1:]} per sample but dataset "
        f"'{dspec.name}' needs {what} per sample",
        "--param to change the model's outputs, or another --dataset",
    )


def _dry_batch(
    model: torch.nn.Module, mspec: ModelSpec, dspec: DatasetSpec, data: Data
) -> tuple[torch.Tensor, int]:
    import torch

    train = data.train
    if isinstance(train, Split):
        xb = data.features(train.x[:2])
    else:
        xb = data.features(torch.stack([train[i][0] for i in range(min(2, len(train)))]))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(xb), len(xb)
    except RuntimeError as exc:
        raise UsageError(
            f"model '{mspec.name}' cannot take dataset '{dspec.name}' features of shape "
            f"{tuple(xb.shape[1:])}: {one_line(exc, 200, typed=False)}"
        ) from None
    finally:
        model.train(was_training)


def set_threads(
    requested: int | None, model: Any, data: Data, device: Any, batch: int | None
) -> int:
    """Torch's intra-op threads for a CPU run: ``--threads``, else OMP_NUM_THREADS when
    set, else one for a small step and, for a large one, every core the machine leaves
    idle (cores less the smaller of the 1-minute load average and the processes
    runnable now, at least one): two threads on a busy 2-core machine were many times
    slower than one."""
    import os

    import torch

    if device.type != "cpu":
        return torch.get_num_threads()
    threads = requested
    if threads is None and os.environ.get("OMP_NUM_THREADS"):
        threads = torch.get_num_threads()  # the user's (or the test suite's) choice
    if threads is None:
        rows = min(batch or len(data.train), len(data.train))
        threads = 1 if sample_flops(model, data) * rows < ONE_THREAD_FLOPS else _cores()
    torch.set_num_threads(threads)
    return threads


def _cores() -> int:
    """The cores this process may use that other work leaves idle."""
    import os

    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        # The 1-minute average still counts work that ended seconds ago (a previous
        # run); the processes runnable right now do not: the smaller of the two.
        busy = min(os.getloadavg()[0], runnable_others())
    except OSError:  # no load average on this system
        busy = 0.0
    return max(1, min(cores, round(cores - busy)))


def runnable_others(samples: int = 10, every: float = 0.005) -> float:
    """Tasks runnable on this machine right now besides this process's own threads
    (Linux's ``/proc``: an OpenMP thread of ours spinning after a parallel region is
    runnable too), the fewest of ``samples`` looks ``every`` seconds apart (a process
    that runs for a moment is not a core taken); elsewhere the 1-minute load average."""
    import os
    import time

    seen = []
    try:
        for i in range(samples):
            if i:
                time.sleep(every)
            with open("/proc/loadavg") as fh:
                running = int(fh.read().split()[3].split("/")[0])
            own = 0
            for task in os.listdir("/proc/self/task"):
                with open(f"/proc/self/task/{task}/stat", "rb") as fh:
                    own += fh.read().rsplit(b")", 1)[1].split()[0] == b"R"
            seen.append(max(0, running - max(1, own)))
    except (OSError, IndexError, ValueError):
        return os.getloadavg()[0]
    return float(min(seen))


def sample_flops(model: Any, data: Data) -> float:
    """Floating-point operations of one training sample: a one-sample forward counted by
    ``torch.utils.flop_counter``, times three (forward and backward)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    train = data.train
    one = train.x[:1] if isinstance(train, Split) else train[0][0].unsqueeze(0)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(data.features(one))
    except Exception:  # a model the counter cannot trace: count it as large
        return float("inf")
    finally:
        model.train(was_training)
    return 3.0 * counter.get_total_flops()
