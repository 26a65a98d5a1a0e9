"""tk plugin: timm's models as ``timm/<name>``, registered from a shipped name list.

Registering reads ``names.txt`` only: timm (and torch) are imported when a model
is built (``tk train``, export, verify), never for ``tk --help`` or ``tk list``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from toolkit import ModelSpec, Param, Recipe, Tolerance, hookimpl

PREFIX = "timm/"
NAMES = Path(__file__).with_name("names.txt")
RECIPE = Recipe(
    optimizer="adamw", lr=1e-3, epochs=10, batch_size=64, weight_decay=0.05, scheduler="cosine"
)
TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3)
PARAMS = [
    Param("pretrained", str, "", "weights tag to start from (default: timm's); empty: none"),
    Param("resize", int, 0, "resize images to this side first (0: the weights' size; -1: no)"),
]


def names() -> list[str]:
    """timm's model names, as shipped (one per line)."""
    return [n for n in NAMES.read_text().split() if n]


@hookimpl
def tk_register_models(register):
    """Every name in ``names.txt`` as ``timm/<name>`` (the factory imports timm)."""
    from tk_timm.build import build_timm

    for name in names():
        register(
            ModelSpec(
                name=PREFIX + name,
                build=partial(build_timm, name),
                params=PARAMS,
                default_dataset="imagefolder",
                recipe=RECIPE,
                description=f"timm {name}",
                tolerance=TOLERANCE,
            )
        )
