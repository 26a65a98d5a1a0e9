"""Batching: in-memory splits by index on the device, the rest through a DataLoader.

In-memory data went to the device once; a training batch is an ``index_select`` of
a seeded permutation (about 3x cheaper than advanced indexing for a row gather),
so no step waits on a host copy. A DataLoader is used only for a torch Dataset
that does not fit in memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from toolkit.data import Data, Split
from toolkit.tasks import Task

if TYPE_CHECKING:
    import torch

    Batch = tuple[torch.Tensor, torch.Tensor, int]

# Evaluation batches hold at most this many features (4 MB of float32), so a
# 60,000-image test pass never materializes a large float copy.
EVAL_ELEMENTS = 1 << 20


def train_batches(
    split: Any,
    data: Data,
    bs: int,
    gen: Any,
    device: Any,
    task: Task,
    *,
    start: int = 0,
    shard: tuple[int, int] = (0, 1),
    local_full: Split | None = None,
    epoch: int = 0,
) -> Iterator[Batch]:
    """Yield ``(x, y, rows in the global batch)`` from batch ``start`` on.

    In a distributed job each rank gets a disjoint shard of every global batch.
    """
    if isinstance(split, Split):
        yield from _index_batches(split, data, bs, gen, start, shard, local_full)
    else:
        yield from _loader_batches(split, data, bs, gen, device, task, start, shard, epoch)


def _index_batches(
    split: Split,
    data: Data,
    bs: int,
    gen: Any,
    start: int,
    shard: tuple[int, int],
    local_full: Split | None,
) -> Iterator[Batch]:
    import torch

    rank, world = shard
    n = len(split)
    if bs >= n:
        # Full batch: no gather, no shuffle (the order of one batch does not matter).
        if start == 0:
            local = local_full if local_full is not None else split
            yield data.features(local.x), local.y, n
        return
    # Every rank draws the same permutation (same seed) and takes its stride of
    # each global batch, so shards are disjoint and cover the batch.
    perm = torch.randperm(n, generator=gen, device=split.x.device)
    for idx in perm.split(bs)[start:]:
        local_idx = idx if world == 1 else idx[rank::world]
        yield (
            data.features(split.x.index_select(0, local_idx)),
            split.y.index_select(0, local_idx),
            len(idx),
        )


def _loader_batches(
    split: Any,
    data: Data,
    bs: int,
    gen: Any,
    device: Any,
    task: Task,
    start: int,
    shard: tuple[int, int],
    epoch: int,
) -> Iterator[Batch]:
    import torch

    rank, world = shard
    # The loader's own generator is drawn from the run's, so resume redraws the order.
    loader_gen = torch.Generator()
    loader_gen.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
    pin = device.type == "cuda"
    if world > 1:
        sampler = torch.utils.data.DistributedSampler(
            split, num_replicas=world, rank=rank, shuffle=True, seed=int(loader_gen.initial_seed())
        )
        sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            split, batch_size=max(1, bs // world), sampler=sampler, pin_memory=pin
        )
    else:
        loader = torch.utils.data.DataLoader(
            split, batch_size=bs, shuffle=True, generator=loader_gen, pin_memory=pin
        )
    for i, (xb, yb) in enumerate(loader):
        if i < start:
            continue
        xb = xb.to(device, non_blocking=True)
        yb = task.targets(yb.to(device, non_blocking=True))
        yield data.features(xb), yb, len(yb) * world


def eval_rows(split: Any, batch: int) -> int:
    """Rows per evaluation batch: ``batch``, fewer for large samples (EVAL_ELEMENTS)."""
    shape = getattr(getattr(split, "x", None), "shape", None)
    if shape is None:
        return batch
    return max(1, min(batch, EVAL_ELEMENTS // max(1, math.prod(shape[1:]))))


def eval_batches(
    split: Any, data: Data, bs: int, device: Any, task: Task
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` over a whole split in order, ``bs`` rows at a time."""
    import torch

    if isinstance(split, Split):
        if len(split) <= bs:
            yield data.features(split.x), split.y
            return
        for i in range(0, len(split), bs):
            yield data.features(split.x[i : i + bs]), split.y[i : i + bs]
        return
    loader = torch.utils.data.DataLoader(split, batch_size=bs, pin_memory=device.type == "cuda")
    for xb, yb in loader:
        yb = task.targets(yb.to(device, non_blocking=True))
        yield data.features(xb.to(device, non_blocking=True)), yb
