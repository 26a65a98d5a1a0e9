"""Turning what a dataset plugin's loader returns into tensors the loop can batch.

In-memory splits go to the device once and are batched by index. Integer features
(uint8 images) stay integer on the device and are scaled to float per batch, so a
60,000-image set costs 47 MB rather than a float copy per sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from toolkit.errors import PluginError, UsageError
from toolkit.registry import DataInfo, DatasetSpec
from toolkit.tasks import get_task

if TYPE_CHECKING:
    import torch


@dataclass
class Split:
    """One split held in memory: features ``x`` and targets ``y`` (same length)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def shard(self, rank: int, world: int) -> Split:
        """Rows ``rank, rank + world, ...``: this rank's disjoint share of the split."""
        return Split(self.x[rank::world].contiguous(), self.y[rank::world].contiguous())


@dataclass
class Data:
    """A loaded dataset: its spec, splits by name and the per-batch feature transform.

    ``train`` is the first split of the spec, ``test`` the last, ``val`` the split
    named ``val`` (declared by the dataset, or carved from train by tk).
    """

    spec: DatasetSpec  # with what the loader found filled in (DataInfo)
    splits: dict[str, Any]  # Split, or a torch Dataset for data that does not fit in memory
    info: DataInfo = field(default_factory=DataInfo)
    notes: list[str] = field(default_factory=list)  # shown when training starts

    @property
    def train(self) -> Any:
        """The split the loop trains on."""
        return self.splits[self.spec.splits[0]]

    @property
    def test(self) -> Any:
        """The held-out split, evaluated once at the end of training."""
        return self.splits[self.spec.splits[-1]]

    @property
    def val(self) -> Any:
        """The validation split, or None when there is none."""
        return self.splits.get("val")

    @property
    def held_out(self) -> tuple[str, Any]:
        """What the loop evaluates every epoch: ``("val", split)``, else ``("test", split)``."""
        return ("val", self.val) if self.val is not None else ("test", self.test)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Model input for a batch of stored features (scales integer features)."""
        import torch

        if x.dtype.is_floating_point:
            return x if x.dtype == torch.float32 else x.float()
        out = x.to(torch.float32)
        if self.spec.feature_scale is not None:
            out.mul_(self.spec.feature_scale)
        return out

    def to(self, device: Any) -> Data:
        """A copy with every in-memory split on ``device`` (moved once, not per batch)."""
        moved = {
            k: Split(v.x.to(device), v.y.to(device)) if isinstance(v, Split) else v
            for k, v in self.splits.items()
        }
        return replace(self, splits=moved)


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise UsageError(f"{what} cannot be turned into an array: {exc}") from None
    if arr.dtype == np.float64:
        with np.errstate(over="ignore"):  # beyond float32 is inf: refused, named, later
            arr = arr.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr))


def _refuse_nonfinite(values: torch.Tensor, where: str, what: str) -> None:
    """A NaN or infinity anywhere in a split is refused here, before a run directory
    exists: trained on, it ends as a NaN loss that looks like a bad learning rate."""
    import torch

    if not values.dtype.is_floating_point or values.numel() == 0:
        return
    flat = values.reshape(values.shape[0] if values.ndim else 1, -1)
    bad = ~torch.isfinite(flat)
    if not bool(bad.any()):
        return
    row, col = (int(i) for i in bad.nonzero()[0])
    value = float(flat[row, col])
    column = f", {what} {col + 1}" if flat.shape[1] > 1 else f", the {what}"
    raise UsageError(
        f"{where}: row {row + 1}{column}: {value} is not a finite number",
        "fix the dataset's loader, or leave those rows out",
    )


def prepare(spec: DatasetSpec, raw: Mapping[str, Any]) -> Data:
    """Check and convert a loader's output to a :class:`Data` (on the CPU).

    Raises a UsageError naming the split when something is missing or inconsistent.
    """
    if not isinstance(raw, Mapping):
        raise UsageError(f"dataset '{spec.name}': loader returned {type(raw).__name__}, not a dict")
    import torch

    info = raw.get("info") or DataInfo()
    if not isinstance(info, DataInfo):
        raise PluginError(
            f"dataset '{spec.name}': 'info' must be a DataInfo, not {type(info).__name__}"
        )
    if spec.inferred or raw.get("info") is not None:
        spec = spec.with_info(info)
    task = get_task(str(spec.target))

    splits: dict[str, Any] = {}
    for name in spec.splits:
        if name not in raw:
            if name == "val" and name not in (spec.splits[0], spec.splits[-1]):
                continue  # a declared val split is optional: without it tk carves one
            raise UsageError(f"dataset '{spec.name}': loader returned no '{name}' split")
        value = raw[name]
        if isinstance(value, torch.utils.data.Dataset):
            splits[name] = value
            continue
        try:
            x_raw, y_raw = value
        except (TypeError, ValueError):
            raise UsageError(
                f"dataset '{spec.name}' split '{name}': expected (features, targets)"
            ) from None
        where = f"dataset '{spec.name}' split '{name}'"
        x = _as_tensor(x_raw, f"{where} features")
        y = _as_tensor(y_raw, f"dataset '{spec.name}' targets")
        _refuse_nonfinite(x, where, "feature")
        _refuse_nonfinite(y, where, "target")
        y = task.check_targets(y, where)
        if x.shape[0] != y.shape[0]:
            raise UsageError(
                f"dataset '{spec.name}' split '{name}': {x.shape[0]} feature rows "
                f"but {y.shape[0]} targets"
            )
        if x.shape[0] == 0:
            raise UsageError(f"dataset '{spec.name}' split '{name}' is empty")
        if tuple(x.shape[1:]) != tuple(spec.feature_shape):
            raise UsageError(
                f"dataset '{spec.name}' split '{name}': features have shape "
                f"{tuple(x.shape[1:])}, the spec declares {tuple(spec.feature_shape)}"
            )
        splits[name] = Split(x, y)
    return Data(spec, splits, info, list(info.notes))


# A folder's fingerprint stops here: a data_dir that is a whole disk is not walked.
FOLDER_LIMIT = 200_000


def fingerprint(path: str) -> dict[str, Any] | None:
    """What ``path`` holds, cheaply: None when it is gone.

    A file: its size and sha256. A folder: how many files (hidden ones left out,
    links not followed), their bytes, and a sha256 over every relative name and
    size: renaming, adding, removing or resizing a file changes it; touching one
    does not. A folder of more than ``FOLDER_LIMIT`` files gets no digest.
    """
    import hashlib
    import os

    if os.path.isfile(path):
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        return {"path": path, "kind": "file", "size": os.path.getsize(path), "sha256": digest}
    if not os.path.isdir(path):
        return None
    entries = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if f.startswith("."):
                continue
            full = os.path.join(dirpath, f)
            size = os.stat(full).st_size if os.path.exists(full) else -1  # a broken link
            entries.append(f"{os.path.relpath(full, path)}\0{size}\n")
        if len(entries) > FOLDER_LIMIT:
            return {"path": path, "kind": "folder", "files": len(entries), "digest": None}
    digest = hashlib.sha256("".join(entries).encode("utf-8", "surrogateescape")).hexdigest()
    total = sum(int(e.rsplit("\0", 1)[1]) for e in entries)
    return {"path": path, "kind": "folder", "files": len(entries), "bytes": total, "digest": digest}


def data_files(spec: DatasetSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """``{param: fingerprint}`` of every path parameter ``spec`` declares (``config.json``)."""
    out = {}
    for p in spec.params:
        value = params.get(p.name)
        if p.path and value:
            found = fingerprint(str(value))
            if found is not None:
                out[p.name] = found
    return out


def changed_data_files(config: Mapping[str, Any]) -> list[str]:
    """One line for each data file or folder a run recorded that no longer matches.

    A file or folder that is gone says nothing here: the dataset's loader names it.
    """
    recorded = config.get("data_files") or {}
    now = {name: fingerprint(str(was.get("path", ""))) for name, was in recorded.items()}
    return data_changes(recorded, {k: v for k, v in now.items() if v is not None})


def data_changes(was: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``path (param) changed since the run was trained (how)`` per fingerprint that differs."""
    return [
        f"{before['path']} ({name}) changed since the run was trained ({_diff(before, now[name])})"
        for name, before in was.items()
        if name in now and now[name] != before
    ]


def _diff(was: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """How a fingerprint changed, in a few words."""
    if was.get("kind") != now.get("kind"):
        return f"was a {was.get('kind')}, now a {now.get('kind')}"
    if was.get("kind") == "file":
        if was.get("size") != now.get("size"):
            return f"{was.get('size')} -> {now.get('size')} bytes"
        return f"sha256 {str(was.get('sha256'))[:12]}... -> {str(now.get('sha256'))[:12]}..."
    if was.get("files") != now.get("files"):
        return f"{was.get('files')} -> {now.get('files')} files"
    return "the same number of files, but names or sizes differ"
