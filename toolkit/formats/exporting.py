"""What the format exporters share: notes on stderr, the dynamic batch, unsafe traces."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from toolkit.errors import ExportError

# Notes said once per process (``once=`` keys), however many runs are exported.
_NOTED: set[str] = set()


def stderr_line(line: str) -> None:
    """Print one line on stderr at once (the default ``echo_err``)."""
    print(line, file=sys.stderr, flush=True)


def note(message: str, echo_err: Callable[[str], None], once: str | None = None) -> None:
    """``tk: note: message`` through ``echo_err``; with ``once``, only the first time."""
    if once is not None:
        if once in _NOTED:
            return
        _NOTED.add(once)
    echo_err(f"tk: note: {message}")


def dynamic_shapes(model: Any, example: Any) -> Any:
    """Dim "batch" on the example's first dimension, whatever forward()'s signature is.

    Keyed by the tensor (ShapesCollection), not by argument name or position, so a
    ``forward(self, x)``, ``forward(self, input)`` or ``forward(self, *inputs)`` all work.
    """
    from torch.export import Dim, ShapesCollection

    shapes = ShapesCollection()
    shapes[example] = {0: Dim("batch")}
    return shapes.dynamic_shapes(model, (example,))


def refuse_tracer_warnings(caught: Sequence[warnings.WarningMessage]) -> None:
    """Raise ExportError for the first TracerWarning among ``caught`` warnings."""
    import torch

    for w in caught:
        if issubclass(w.category, torch.jit.TracerWarning):
            # A TracerWarning means a Python value was baked into the trace (a shape
            # turned into an int, a tensor into a bool): the graph may be wrong on
            # other inputs, so it is an error, not a warning.
            text = " ".join(str(w.message).split())
            first = text.split(". ")[0].rstrip(".")  # torch's first sentence says it all
            raise ExportError(f"tracing is unsafe for this model: {first}")
