"""Checkpoints that resume exactly, a manifest that catches corruption, and safe loading.

A checkpoint is one safetensors file (tensors: model weights, optimizer tensors, RNG
states) whose single metadata entry is a JSON document (epoch, step, position inside
the epoch, optimizer scalars, Python/NumPy RNG states, the metrics so far). One file
per checkpoint, written atomically, so a checkpoint on disk is always complete.

Every checkpoint is listed in the run's manifest (``toolkit.integrity``) once it
is complete, and checked against it before it is read. Nothing here unpickles:
safetensors stores raw tensors.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit import runs
from toolkit.errors import UsageError
from toolkit.integrity import IntegrityError, check_file, forget, read_manifest, record

CKPT_DIR = "checkpoints"
_CKPT_RE = re.compile(r"^epoch-(\d{6})(?:-step-(\d{9}))?\.safetensors$")
_META_KEY = "tk_checkpoint"
FORMAT_VERSION = 1


# ------------------------------------------------------------------ RNG states
def _py_random_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _set_py_random_state(state: list[Any]) -> None:
    random.setstate((state[0], tuple(state[1]), state[2]))


def _np_random_state() -> dict[str, Any]:
    import numpy as np

    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": str(name),
        "keys": [int(k) for k in keys],
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _set_np_random_state(state: dict[str, Any]) -> None:
    import numpy as np

    keys = np.array(state["keys"], dtype=np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached"]))


# ------------------------------------------------------------------ train state
@dataclass
class TrainState:
    """Where a training run is: enough to continue it bit for bit.

    ``epoch`` counts completed epochs. When ``batch_index`` > 0 the run stopped
    inside epoch ``epoch + 1`` after that many batches; ``epoch_gen_state`` is the
    data-order generator at that epoch's start, so the same permutation is redrawn.
    """

    epoch: int = 0
    step: int = 0
    batch_index: int = 0
    partial: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # loss, metric, seen
    history: list[dict[str, float]] = field(default_factory=list)
    model_state: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] = field(default_factory=dict)
    gen_state: Any = None  # the data-order generator now
    epoch_gen_state: Any = None  # ... and at the start of the current epoch
    torch_rng: Any = None
    cuda_rng: list[Any] = field(default_factory=list)
    py_rng: list[Any] | None = None
    np_rng: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    scaler_state: dict[str, Any] | None = None
    callbacks: dict[str, Any] = field(default_factory=dict)  # each stateful callback's state
    reason: str = "periodic"  # periodic | final | interrupt


def capture_rng(state: TrainState) -> None:
    """Record torch (CPU and CUDA), Python and NumPy global RNG states."""
    import torch

    state.torch_rng = torch.get_rng_state()
    state.cuda_rng = list(torch.cuda.get_rng_state_all()) if torch.cuda.is_initialized() else []
    state.py_rng = _py_random_state()
    state.np_rng = _np_random_state()


def restore_rng(state: TrainState) -> None:
    """Put back the RNG states captured by :func:`capture_rng`."""
    import torch

    if state.torch_rng is not None:
        torch.set_rng_state(state.torch_rng)
    if state.cuda_rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state.cuda_rng)
    if state.py_rng is not None:
        _set_py_random_state(state.py_rng)
    if state.np_rng is not None:
        _set_np_random_state(state.np_rng)


def _split_tensors(prefix: str, obj: Any, tensors: dict[str, Any]) -> Any:
    """Replace every tensor in a nested structure by a reference, collecting the tensors."""
    import torch

    if isinstance(obj, torch.Tensor):
        key = f"{prefix}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {str(k): _split_tensors(f"{prefix}.{k}", v, tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(f"{prefix}.{i}", v, tensors) for i, v in enumerate(obj)]
    return obj


def _join_tensors(obj: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: _join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


def _optimizer_from_json(opt: dict[str, Any]) -> dict[str, Any]:
    # JSON turned the integer parameter ids of optimizer state into strings.
    return {
        "state": {int(k): v for k, v in opt.get("state", {}).items()},
        "param_groups": opt.get("param_groups", []),
    }


def encode(state: TrainState) -> bytes:
    """Serialize a TrainState to safetensors bytes (no pickle anywhere)."""
    from safetensors.torch import save

    tensors: dict[str, Any] = {}
    meta = {
        "format_version": FORMAT_VERSION,
        "epoch": state.epoch,
        "step": state.step,
        "batch_index": state.batch_index,
        "partial": state.partial,
        "history": state.history,
        "reason": state.reason,
        "model": _split_tensors("model", state.model_state, tensors),
        "optimizer": _split_tensors("optimizer", state.optimizer_state, tensors),
        "scheduler": _split_tensors("scheduler", state.scheduler_state, tensors),
        "scaler": _split_tensors("scaler", state.scaler_state, tensors),
        "callbacks": _split_tensors("callbacks", state.callbacks, tensors),
        "rng": _split_tensors(
            "rng",
            {
                "torch": state.torch_rng,
                "cuda": state.cuda_rng,
                "gen": state.gen_state,
                "epoch_gen": state.epoch_gen_state,
            },
            tensors,
        ),
        "py_rng": state.py_rng,
        "np_rng": state.np_rng,
    }
    # A single metadata key: safetensors stores metadata in a hash map, and several
    # keys would come out in random order (the same state must give the same bytes).
    return save(tensors, metadata={_META_KEY: json.dumps(meta)})


def decode(data: bytes, origin: str = "checkpoint") -> TrainState:
    """Parse bytes written by :func:`encode`; anything else is an IntegrityError."""
    from safetensors.torch import load

    try:
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        meta = json.loads(header["__metadata__"][_META_KEY])
    except Exception as exc:
        raise IntegrityError(
            f"{origin} is not a readable tk checkpoint: {type(exc).__name__}"
        ) from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise IntegrityError(
            f"{origin}: unsupported checkpoint format {meta.get('format_version')}"
        )
    rng = _join_tensors(meta["rng"], tensors)
    return TrainState(
        epoch=meta["epoch"],
        step=meta["step"],
        batch_index=meta["batch_index"],
        partial=meta["partial"],
        history=meta["history"],
        model_state=_join_tensors(meta["model"], tensors),
        optimizer_state=_optimizer_from_json(_join_tensors(meta["optimizer"], tensors)),
        scheduler_state=_join_tensors(meta["scheduler"], tensors),
        scaler_state=_join_tensors(meta["scaler"], tensors),
        callbacks=_join_tensors(meta.get("callbacks") or {}, tensors),
        gen_state=rng["gen"],
        epoch_gen_state=rng["epoch_gen"],
        torch_rng=rng["torch"],
        cuda_rng=rng["cuda"] or [],
        py_rng=meta["py_rng"],
        np_rng=meta["np_rng"],
        reason=meta.get("reason", "periodic"),
    )


# ------------------------------------------------------------- files on disk
def checkpoint_name(state: TrainState) -> str:
    """``epoch-000010.safetensors``, or ``epoch-000010-step-000001234`` mid-epoch."""
    if state.batch_index:
        return f"epoch-{state.epoch:06d}-step-{state.step:09d}.safetensors"
    return f"epoch-{state.epoch:06d}.safetensors"


def save(run_dir: str | Path, state: TrainState, keep: int = 3) -> Path:
    """Write a checkpoint atomically, record it in the manifest, prune old ones.

    ``keep`` newest checkpoints stay (0 keeps all).
    """
    return write_encoded(run_dir, checkpoint_name(state), encode(state), keep)


def write_encoded(run_dir: str | Path, filename: str, data: bytes, keep: int = 3) -> Path:
    """The file half of :func:`save`: atomic write, then manifest, then pruning.

    The order is what makes a kill at any moment safe: a checkpoint is listed only
    once it is complete, and unlisted before it is deleted.
    """
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / CKPT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / filename
    runs.atomic_write_bytes(path, data)
    record(run_dir, path, runs.sha256_bytes(data))
    if keep:
        for old in list_checkpoints(run_dir)[:-keep]:
            forget(run_dir, old.relative_to(run_dir).as_posix())
            old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints listed in the manifest, oldest first (unlisted files are ignored)."""
    run_dir = Path(run_dir)
    listed = read_manifest(run_dir)
    found = []
    for rel in listed:
        p = run_dir / rel
        m = _CKPT_RE.match(p.name)
        if p.parent.name == CKPT_DIR and m and p.is_file():
            found.append((int(m.group(1)), int(m.group(2) or 0), m.group(2) is None, p))
    # Mid-epoch checkpoints of epoch e+1 sort after the end of epoch e.
    found.sort(key=lambda t: (t[0], 0 if t[2] else 1, t[1]))
    return [t[3] for t in found]


def newest_valid_checkpoint(run_dir: str | Path, exclude: Path | None = None) -> Path | None:
    """The newest checkpoint whose bytes match the manifest."""
    listed = read_manifest(run_dir)
    for p in reversed(list_checkpoints(run_dir)):
        if exclude is not None and p.resolve() == Path(exclude).resolve():
            continue
        rel = p.relative_to(Path(run_dir)).as_posix()
        if runs.sha256_file(p) == listed.get(rel):
            return p
    return None


def load(path: str | Path) -> TrainState:
    """Read a checkpoint after checking it against its run's manifest."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} not found")
    if path.suffix != ".safetensors":
        raise IntegrityError(
            f"{path} is not a tk checkpoint (tk writes .safetensors checkpoints and never "
            "unpickles files)"
        )
    try:
        check_file(path, required=True)
    except IntegrityError as exc:
        valid = newest_valid_checkpoint(path.parent.parent, exclude=path)
        if valid is not None and exc.hint is None:
            exc.hint = f"the newest valid checkpoint is {valid}"
        raise
    return decode(path.read_bytes(), str(path))


def cleanup(run_dir: str | Path) -> list[Path]:
    """Remove leftovers of killed writes and checkpoints the manifest never listed."""
    run_dir = Path(run_dir)
    removed = runs.clean_stale_temps(run_dir) + runs.clean_stale_temps(run_dir / CKPT_DIR)
    listed = set(read_manifest(run_dir))
    ckpt_dir = run_dir / CKPT_DIR
    if ckpt_dir.is_dir():
        for p in ckpt_dir.iterdir():
            if _CKPT_RE.match(p.name) and p.relative_to(run_dir).as_posix() not in listed:
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def write_or_link(path: Path, data: bytes, same_as: Path | None) -> None:
    """Write ``data`` atomically, or hard-link ``same_as`` when it holds these very bytes
    (the selected weights are the last epoch's: one copy on disk, two names)."""
    import os

    if same_as is not None:
        tmp = path.parent / f".{path.name}{runs.TMP_MARK}link-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        try:
            os.link(same_as, tmp)
            os.replace(tmp, path)
            return
        except OSError:  # a filesystem without hard links: a second copy
            tmp.unlink(missing_ok=True)
    runs.atomic_write_bytes(path, data)
