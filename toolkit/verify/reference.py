"""The float64 reference the large and out-of-distribution inputs are judged against.

At 100x the training scale a float32 eager model carries rounding error of its own,
sometimes more than the runtime it judges (onnxruntime fuses and reorders, and may
land nearer the truth). Comparing with float32 eager alone would then fail a correct
file for eager's error, so a check that fails on those inputs is judged again against
a float64 copy of the model run on the same inputs cast to float64: the closest thing
to the exact answer. Only then: float64 convolutions run ~10x slower on a CPU
(mobilenet_v3_small, the probes at batch 1, 7, 64: 2.8 s float32, 27 s float64).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from toolkit.formats import Runner
from toolkit.formats.runtime import eager_runner

NAME = "eager-float64"


def float64_runner(model: Any) -> Runner | None:
    """A float64 copy of ``model`` as a Runner (floating inputs cast to float64).

    None when the model cannot be copied or cast (the float32 reference is used then);
    the model itself is never modified.
    """
    import torch

    class Float64(torch.nn.Module):
        """Casts floating inputs up: the copy's weights are float64 already."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> Any:
            return self.inner(x.double() if x.is_floating_point() else x)

    try:
        double = copy.deepcopy(model).double().eval()
    except Exception:  # a module that refuses deepcopy or float64: float32 reference
        return None
    return replace(eager_runner(Float64(double)), name=NAME)
