"""Datasets cut to a few hundred rows, so the conformance check trains in seconds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from toolkit.registry import DatasetSpec, Registry


def _every_nth(value: Any, max_rows: int) -> Any:
    """At most ``max_rows`` rows of a split, spread over all of it (sorted data keeps
    every class), or the split unchanged when it cannot be sliced safely."""
    import torch

    if isinstance(value, torch.utils.data.Dataset):
        n = len(value)  # type: ignore[arg-type]
        step = max(1, -(-n // max_rows))
        return torch.utils.data.Subset(value, range(0, n, step))
    try:
        x, y = value
        n = len(x)
    except (TypeError, ValueError):
        return value  # let the real checks (toolkit.data.prepare) report the problem
    if n != len(y):
        return value  # the same: a row mismatch must not be hidden by slicing
    step = max(1, -(-n // max_rows))
    return (x[::step], y[::step])


def small_dataset(spec: DatasetSpec, max_rows: int) -> DatasetSpec:
    """The same dataset, with each split cut to at most ``max_rows`` rows.

    The loader runs once per parameter set: the dataset check and the training of
    every model that uses the dataset share it.
    """
    cache: dict[tuple[tuple[str, Any], ...], Mapping[str, Any]] = {}
    original = spec.load

    def load(**params: Any) -> Mapping[str, Any]:
        key = tuple(sorted(params.items()))
        if key not in cache:
            raw = original(**params)
            if isinstance(raw, Mapping):
                raw = {k: _every_nth(v, max_rows) for k, v in raw.items()}
            cache[key] = raw
        return cache[key]

    return replace(spec, load=load)


def small_registry(source: Registry, max_rows: int) -> Registry:
    out = Registry()
    for name, spec in source.models.items():
        out.add(spec, source.source("model", name))
    for name, spec in source.datasets.items():
        out.add(small_dataset(spec, max_rows), source.source("dataset", name))
    for name, fmt in source.formats.items():
        out.add(fmt, source.source("format", name))
    return out
