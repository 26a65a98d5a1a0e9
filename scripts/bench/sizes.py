"""How much work each section does (``--quick`` shrinks everything)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Sizes:
    """Epochs, images and rounds of every section."""

    circle_epochs: int = 1000
    circle_rounds: int = 7
    tutorial_rounds: int = 2
    process_epochs: int = 1000
    process_rounds: int = 4
    fm_train: int = 60_000
    fm_test: int = 10_000
    fm_rounds: int = 4
    startup_rounds: int = 7
    predict_rounds: int = 15
    predict_process_rounds: int = 3
    memory_train: int = 60_000
    memory_variants: tuple[str, ...] = ("tk", "hand")
    profile_train: int = 60_000
    quick: bool = False

    @classmethod
    def reduced(cls) -> Sizes:
        """A reduced run for the smoke test (well under 90 s on 2 loaded cores)."""
        return cls(
            circle_epochs=100,
            circle_rounds=2,
            tutorial_rounds=1,
            process_epochs=50,
            process_rounds=1,
            fm_train=3_000,
            fm_test=500,
            fm_rounds=2,
            startup_rounds=2,
            predict_rounds=5,
            predict_process_rounds=0,
            memory_train=6_000,
            memory_variants=("tk",),
            profile_train=1_500,
            quick=True,
        )
