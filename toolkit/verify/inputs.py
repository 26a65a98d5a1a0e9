"""The inputs every file is checked on: held-out samples, random and out-of-distribution.

Out-of-distribution inputs (large magnitude, all negative) catch a file that is
right only where the training data lives; each case has a magnitude, used to
scale the absolute tolerance (see :data:`CASES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Input cases: name -> magnitude. Float32 rounding error grows with the size of the
# values, so a case S times larger than N(0, 1) gets an atol S times larger (rtol is
# unchanged); without this a correct file fails on cancellation near zero.
CASES = {"held-out": 1.0, "random": 1.0, "ood-large": 100.0, "ood-negative": 10.0}
SEED = 1234


def make_inputs(
    shape: Sequence[int], batch: int, heldout: np.ndarray | None, seed: int = SEED
) -> dict[str, np.ndarray]:
    """The input cases at one batch size (deterministic: the same seed, the same inputs)."""
    import numpy as np

    rng = np.random.default_rng(seed + batch)
    full = (batch, *shape)
    cases = {}
    if heldout is not None and len(heldout):
        idx = np.arange(batch) % len(heldout)  # cycle when the split is smaller
        cases["held-out"] = np.ascontiguousarray(heldout[idx], dtype=np.float32)
    cases["random"] = rng.standard_normal(full).astype(np.float32)
    cases["ood-large"] = (rng.standard_normal(full) * CASES["ood-large"]).astype(np.float32)
    cases["ood-negative"] = (-np.abs(rng.standard_normal(full)) * CASES["ood-negative"]).astype(
        np.float32
    )
    return cases
