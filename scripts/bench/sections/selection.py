"""Section 1b: circle with model selection, tk's loop against the same done by hand.

tk's ``fit`` with a cosine schedule, a validation split (80 of the 800 training
rows) evaluated every epoch and the best epoch's weights kept (``BestWeights``),
against the plain loop given the same: ``CosineAnnealingLR``, the same validation
rows, ``.item()`` of the validation loss every epoch and a copy of the best weights.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..baselines import circle_model, plain_circle_loop, plain_selection_loop
from ..report import Goal, fmt, table
from ..timing import interleave, median, paired_ratio
from ..workloads import circle_data

TK = "tk fit(), cosine + validation + best weights"
HAND = "plain loop, cosine + validation + best weights"
PLAIN = "plain loop (test evaluation, no schedule or selection)"


def variants(recipe: Any, epochs: int) -> dict[str, Any]:
    """Each variant: a call training circle for ``epochs`` epochs."""
    from toolkit.splits import carve_validation
    from toolkit.train import FitOptions, fit
    from toolkit.train.selection import BestWeights, monitor_for

    data, _ = circle_data()
    val = carve_validation(data, 0.1, 42)
    monitor = monitor_for("val_loss", "binary")
    cosine = replace(recipe, epochs=epochs, scheduler="cosine")

    def tk() -> float:
        best = BestWeights(monitor)
        opts = FitOptions(monitor=monitor)
        fit(
            circle_model(),
            val,
            cosine,
            task="binary",
            log_every=100,
            callbacks=[best],
            options=opts,
        )
        return best.epoch

    def hand(loop: Any, split: Any) -> Any:
        def run() -> float:
            model = circle_model()
            opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, fused=True)
            rows = loop(model, opt, val.train.x, val.train.y, split.x, split.y, epochs)
            return rows[-1][3]

        return run

    return {
        TK: tk,
        HAND: hand(plain_selection_loop, val.val),
        PLAIN: hand(plain_circle_loop, data.test),
    }


def measure(sizes: Any, threads: int, tmp: Path) -> tuple[dict[str, Any], list[str]]:
    """Interleaved rounds of the three loops; (figures, markdown lines)."""
    from toolkit.plugins import load_plugins

    recipe = load_plugins(warn=False).registry.model("circle").recipe
    interleave(variants(recipe, 20), 1)
    epochs = sizes.circle_epochs
    times, _ = interleave(variants(recipe, epochs), sizes.circle_rounds)
    rows = [
        [k, fmt(median(v)), fmt(median(v) / epochs * 1e3), fmt(paired_ratio(times, k, HAND))]
        for k, v in times.items()
    ]
    figures = {"times": times, "epochs": epochs}
    return figures, [
        "## 1b. circle with model selection",
        "",
        __doc__.split("\n\n", 1)[1].strip().replace("\n", " "),
        f" {epochs} epochs, median of {sizes.circle_rounds} interleaved rounds; the plain "
        "loops use fused Adam, as tk does.",
        "",
        *table(["variant", "seconds", "ms / epoch", "x hand-written selection"], rows),
        "",
    ]


def goals(figures: dict[str, Any]) -> list[Goal]:
    """tk with selection against the hand-written loop with the same selection."""
    times = figures["times"]
    return [
        Goal(
            "circle-selection",
            "circle with cosine + validation: tk loop / plain loop doing the same",
            paired_ratio(times, TK, HAND),
            1.05,
            "x",
            higher_is_better=False,
            detail=f"against the plain loop without selection: "
            f"{fmt(paired_ratio(times, TK, PLAIN))}x",
        )
    ]
