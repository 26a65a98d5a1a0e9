"""``mlp``: a multilayer perceptron that sizes itself from its dataset.

Flatten (for multi-dimensional samples) -> [Linear -> BatchNorm? -> ReLU -> Dropout?]
per hidden width -> Linear to the task's outputs. ``hidden=`` (empty) is a linear
model: logistic or linear regression, trained by the same loop.
"""

from __future__ import annotations

import math
from typing import Any

from toolkit import UsageError


def parse_widths(hidden: str) -> list[int]:
    """``"64,64"`` -> ``[64, 64]``; empty -> ``[]`` (a linear model)."""
    widths = []
    for part in hidden.replace(" ", "").split(","):
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise UsageError(
                f"mlp: parameter 'hidden' takes comma-separated widths, got {hidden!r}",
                "--param hidden=64,64 (or hidden= for a linear model)",
            )
        widths.append(int(part))
    return widths


def build_mlp(
    hidden: str = "64,64",
    dropout: float = 0.1,
    batchnorm: bool = False,
    *,
    input_shape: tuple[int, ...],
    outputs: int,
) -> Any:
    """The MLP for samples of ``input_shape`` and ``outputs`` logits or values."""
    from torch import nn

    widths = parse_widths(hidden)
    if not (0 <= dropout < 1):
        raise UsageError(f"mlp: dropout must be in [0, 1), got {dropout}", "--param dropout=0.1")
    layers: list[nn.Module] = [nn.Flatten()] if len(input_shape) > 1 else []
    width = math.prod(input_shape)
    for w in widths:
        layers.append(nn.Linear(width, w))
        if batchnorm:
            layers.append(nn.BatchNorm1d(w))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = w
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)
