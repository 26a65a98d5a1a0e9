"""Preprocessing that travels with the model: standardization as its first and last layer.

Statistics are fitted on the training rows only; the model becomes
``Standardized(net)``, whose buffers hold them, so the weights file, every export
and ``tk predict`` apply exactly the same transform to raw features (and, for a
regression target, map standardized outputs back to the target's units).

This module imports torch at import time: only functions that build models import it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# A feature whose training values never vary is divided by 1, not by 0.
MIN_STD = 1e-12


class Standardized(nn.Module):
    """``(x - mean) / std`` -> ``net`` -> ``out * y_std + y_mean``."""

    def __init__(
        self,
        net: nn.Module,
        mean: torch.Tensor,
        std: torch.Tensor,
        y_mean: torch.Tensor,
        y_std: torch.Tensor,
    ) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())
        self.register_buffer("y_mean", y_mean.float())
        self.register_buffer("y_std", y_std.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped model on standardized input, its output in the target's units."""
        return self.net((x - self.mean) / self.std) * self.y_std + self.y_mean


def fit_stats(
    x: torch.Tensor, y: torch.Tensor, features: bool | list[int], target: bool
) -> dict[str, Any] | None:
    """Mean and std of the training rows: of the chosen features, and of the target.

    Features not chosen get mean 0 and std 1 (unchanged). Returns None when there is
    nothing to standardize; the result is JSON-able (it goes into ``config.json``).
    """
    if not features and not target:
        return None
    xf = x.reshape(len(x), -1).double()
    mean = torch.zeros(xf.shape[1], dtype=torch.float64)
    std = torch.ones(xf.shape[1], dtype=torch.float64)
    if features:
        idx = list(range(xf.shape[1])) if features is True else list(features)
        mean[idx] = xf[:, idx].mean(0)
        std[idx] = xf[:, idx].std(0, unbiased=False).clamp_min(MIN_STD)
    out: dict[str, Any] = {
        "features": {"mean": mean.tolist(), "std": std.tolist()},
        "shape": list(x.shape[1:]),
    }
    if target:
        yf = y.reshape(len(y), -1).double()
        out["target"] = {
            "mean": yf.mean(0).tolist(),
            "std": yf.std(0, unbiased=False).clamp_min(MIN_STD).tolist(),
        }
    return out


def wrap(model: nn.Module, stats: dict[str, Any] | None) -> nn.Module:
    """``model`` with the standardization of ``stats`` around it (unchanged for None)."""
    if not stats:
        return model
    shape = tuple(stats.get("shape") or ())
    feats = stats["features"]
    target = stats.get("target") or {"mean": [0.0], "std": [1.0]}
    return Standardized(
        model,
        torch.tensor(feats["mean"]).reshape(shape),
        torch.tensor(feats["std"]).reshape(shape),
        torch.tensor(target["mean"]),
        torch.tensor(target["std"]),
    )
