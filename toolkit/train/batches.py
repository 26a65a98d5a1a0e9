"""Batching: in-memory splits by index on the device, the rest through a DataLoader.

In-memory data went to the device once; a training batch is an ``index_select`` of
a seeded permutation (about 3x cheaper than advanced indexing for a row gather),
so no step waits on a host copy. A DataLoader is used only for a torch Dataset
that does not fit in memory: one per run, its workers kept between epochs, its
order drawn from the run's generator (:class:`EpochOrder`).
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
    stream: Stream | None = None,
    epoch: int = 0,
) -> Iterator[Batch]:
    """Yield ``(x, y, rows in the global batch)`` from batch ``start`` on.

    In a distributed job each rank gets a disjoint shard of every global batch.
    A Dataset split comes through its ``stream`` (a persistent DataLoader); ``epoch``
    seeds the per-sample augmentation its workers draw.
    """
    if isinstance(split, Split):
        yield from _index_batches(split, data, bs, gen, start, shard, local_full)
    elif stream is not None:
        yield from stream.epoch(data, task, start, epoch)


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


class EpochOrder:
    """A batch sampler: each epoch a permutation drawn from the run's generator, split
    into global batches, this rank's stride of each, from batch ``start`` on.

    The order is drawn in the main process, so it is the same whatever the workers do,
    and a resumed run skips the batches already done without decoding them. With
    ``seed`` (augmented data) each item is ``(index, seed of its augmentation)``,
    the seed drawn from the run's seed, the epoch and the item's place in it.
    """

    def __init__(
        self, n: int, bs: int, gen: Any, shard: tuple[int, int], seed: int | None = None
    ) -> None:
        self.n, self.bs, self.gen, self.shard, self.seed = n, bs, gen, shard, seed
        self.start = self.epoch = 0

    def __iter__(self) -> Iterator[list[Any]]:
        import torch

        from toolkit.augment import seed_for

        rank, world = self.shard
        perm = torch.randperm(self.n, generator=self.gen)
        for b, idx in enumerate(perm.split(self.bs)[self.start :], start=self.start):
            rows = (idx if world == 1 else idx[rank::world]).tolist()
            if self.seed is None:
                yield rows
                continue
            first = b * self.bs + (0 if world == 1 else rank)
            yield [
                (i, seed_for(self.seed, self.epoch, first + j * world)) for j, i in enumerate(rows)
            ]

    def __len__(self) -> int:
        return max(0, math.ceil(self.n / self.bs) - self.start)


class Stream:
    """A Dataset split read by one DataLoader for the whole run (workers stay up)."""

    def __init__(
        self,
        split: Any,
        bs: int,
        gen: Any,
        device: Any,
        shard: tuple[int, int],
        workers: int,
        augment: tuple[Any, int] | None = None,
    ) -> None:
        """``augment``: (the per-sample ``transforms.v2`` pipeline, the run's seed)."""
        import torch

        from toolkit.augment import AugmentedItems

        self.n, self.bs, self.device = len(split), bs, device
        self.order = EpochOrder(self.n, bs, gen, shard, augment[1] if augment else None)
        if augment is not None:
            split = AugmentedItems(split, augment[0])  # decoded and augmented in the workers
        self.loader = torch.utils.data.DataLoader(
            split,
            batch_sampler=self.order,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=device.type == "cuda",
        )

    def epoch(self, data: Data, task: Task, start: int, epoch: int = 0) -> Iterator[Batch]:
        """One pass from batch ``start``: features scaled, targets typed, on the device."""
        self.order.start, self.order.epoch = start, epoch
        for i, (xb, yb) in enumerate(self.loader, start=start):
            n_global = min(self.bs, self.n - i * self.bs)
            xb = xb.to(self.device, non_blocking=True)
            yield data.features(xb), task.targets(yb.to(self.device, non_blocking=True)), n_global


def eval_rows(split: Any, batch: int) -> int:
    """Rows per evaluation batch: ``batch``, fewer for large samples (EVAL_ELEMENTS)."""
    shape = getattr(getattr(split, "x", None), "shape", None)
    if shape is None:
        return batch
    return max(1, min(batch, EVAL_ELEMENTS // max(1, math.prod(shape[1:]))))


def eval_source(split: Any, device: Any, workers: int) -> Any:
    """What every epoch's evaluation reads: the split, or for a Dataset read by worker
    processes one DataLoader for the whole run, so the workers start once, not per epoch."""
    import torch

    if isinstance(split, Split) or workers <= 0:
        return split
    return torch.utils.data.DataLoader(
        split,
        batch_size=eval_rows(split, 8192),
        num_workers=workers,
        persistent_workers=True,
        pin_memory=device.type == "cuda",
    )


def eval_batches(
    split: Any, data: Data, bs: int, device: Any, task: Task, workers: int = 0
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
    if isinstance(split, torch.utils.data.DataLoader):  # from eval_source: workers kept up
        loader = split
    else:
        loader = torch.utils.data.DataLoader(
            split, batch_size=bs, num_workers=workers, pin_memory=device.type == "cuda"
        )
    for xb, yb in loader:
        yb = task.targets(yb.to(device, non_blocking=True))
        yield data.features(xb.to(device, non_blocking=True)), yb
