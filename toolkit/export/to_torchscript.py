"""TorchScript: ``torch.jit.script``, else ``torch.jit.trace``; an unsafe trace is refused.

Scripting keeps Python control flow; tracing records one path through it, so a
trace that raised a TracerWarning (a shape or tensor value baked into the graph)
is an ExportError, never a file.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from toolkit.errors import ExportError, one_line
from toolkit.export.common import note, refuse_tracer_warnings, stderr_line
from toolkit.formats import META_FILE
from toolkit.verify import quiet_native

if TYPE_CHECKING:
    import torch


def export_torchscript(
    model: torch.nn.Module,
    example: torch.Tensor,
    meta: Callable[[str], dict[str, Any]],
    echo_err: Callable[[str], None] = stderr_line,
) -> tuple[bytes, str]:
    """TorchScript bytes: ``torch.jit.script``, else ``torch.jit.trace``.

    A trace that raises a TracerWarning is refused (ExportError). torch's
    deprecation FutureWarnings become one note line. Returns (bytes, exporter).
    """
    import torch

    module, exporter, caught = _script_or_trace(model, example)
    buf = io.BytesIO()
    with warnings.catch_warnings(record=True) as saved:
        warnings.simplefilter("always")
        torch.jit.save(module, buf, _extra_files={META_FILE: json.dumps(meta(exporter))})
    if any(_is_deprecation(w) for w in [*caught, *saved]):
        note(
            "PyTorch deprecates TorchScript; pt2 (--format pt2, torch.export) replaces it",
            echo_err,
            once="torchscript",
        )
    return buf.getvalue(), exporter


def _script_or_trace(
    model: torch.nn.Module, example: torch.Tensor
) -> tuple[Any, str, list[warnings.WarningMessage]]:
    """(module, exporter, the warnings raised on the way): script first, trace if it fails."""
    import torch

    with quiet_native(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return torch.jit.script(model), "torch.jit.script", caught
        except Exception as exc:
            script_error = exc
    with quiet_native(), warnings.catch_warnings(record=True) as traced:
        warnings.simplefilter("always")
        try:
            module = torch.jit.trace(model, (example,))
        except Exception as exc:
            refuse_tracer_warnings(traced)
            raise ExportError(
                f"TorchScript: script failed ({one_line(script_error, 160)}) and so did "
                f"trace ({one_line(exc, 160)})",
                "--format pt2",
            ) from None
    try:
        refuse_tracer_warnings(traced)
    except ExportError as exc:
        raise ExportError(
            f"TorchScript: script failed ({one_line(script_error, 160)}) and {exc.message}",
            "--format pt2, or make forward() scriptable",
        ) from None
    return module, "torch.jit.trace", [*caught, *traced]


def _is_deprecation(w: warnings.WarningMessage) -> bool:
    return issubclass(w.category, (FutureWarning, DeprecationWarning)) and "deprecat" in str(
        w.message
    )
