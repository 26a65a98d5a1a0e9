"""TorchScript: ``torch.jit.script``, else ``torch.jit.trace``; an unsafe trace is refused.

Scripting keeps Python control flow; tracing records one path through it, so a
trace that raised a TracerWarning (a shape or tensor value baked into the graph)
is an ExportError, never a file. Loading TorchScript runs its code: the gate
(toolkit/trust.py) lets only tk's own exports, or ``--trust``, through.
:data:`TORCHSCRIPT` is the format object.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from toolkit.errors import ExportError, one_line
from toolkit.formats import (
    META_FILE,
    Exported,
    ExportRequest,
    Probe,
    Runner,
    ZipArchiveFormat,
    is_pt2_archive,
)
from toolkit.formats.exporting import note, refuse_tracer_warnings, stderr_line
from toolkit.formats.runtime import quiet_native, torch_runner

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


class TorchScriptFormat(ZipArchiveFormat):
    """TorchScript: any zip archive a more specific format (pt2) did not claim."""

    name = "torchscript"
    platform = "pytorch_libtorch"
    title = "TorchScript"
    suffix = ".pt"
    file_name = "model.torchscript.pt"
    aliases = ("ts", "jit")
    description = "torch.jit.script (else trace); torch.jit.load (runs code: tk's own or --trust)"

    def detect(self, probe: Probe) -> bool:
        """A zip archive that is not a torch.export one."""
        return probe.zip_names is not None and not is_pt2_archive(probe)

    def export(self, request: ExportRequest) -> Exported:
        """``torch.jit.script``, else a trace free of TracerWarnings."""
        data, exporter = export_torchscript(
            request.model, request.example, request.meta, echo_err=request.echo_err
        )
        return Exported(data, exporter)

    def load(self, cleared: Any, *, cuda: bool = True, threads: int | None = None) -> list[Runner]:
        """``torch.jit.load`` of the very bytes the gate hashed."""
        import torch

        module = torch.jit.load(io.BytesIO(cleared.source), map_location="cpu")
        return [torch_runner("torch.jit", module.eval())]


TORCHSCRIPT = TorchScriptFormat()
