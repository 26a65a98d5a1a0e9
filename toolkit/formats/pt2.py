"""pt2: ``torch.export``, PyTorch's replacement for TorchScript (metadata as an extra file).

Loading a pt2 runs code (a graph's symbolic shapes go through sympy's parser, and
its pickles): the gate (toolkit/trust.py) lets only tk's own exports, or ``--trust``,
through. :data:`PT2` is the format object.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from toolkit.errors import ExportError, one_line
from toolkit.formats import META_FILE, Exported, ZipArchiveFormat, is_pt2_archive
from toolkit.formats.exporting import dynamic_shapes
from toolkit.formats.runtime import quiet_native, torch_runner

# pt2 members that unpickle objects (constants) or hold native code (AOTInductor).
PT2_PICKLES = ("custom_obj_", "opaque_obj_")
PT2_CODE_DIRS = ("data/aotinductor/", "data/executorch/")

if TYPE_CHECKING:
    import torch

    from toolkit.formats import ExportRequest, Probe, Runner


def export_pt2(
    model: torch.nn.Module,
    example: torch.Tensor,
    meta: Callable[[str], dict[str, Any]],
    *,
    dynamic: bool,
) -> tuple[bytes, str]:
    """``torch.export.export`` + ``torch.export.save`` bytes (metadata as an extra file)."""
    import torch

    with quiet_native(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.export.export(
                model,
                (example,),
                dynamic_shapes=dynamic_shapes(model, example) if dynamic else None,
            )
        except Exception as exc:
            raise ExportError(
                f"torch.export cannot capture the model: {one_line(exc, 300)}",
                "make forward() free of data-dependent branches and int(x.shape[0]), "
                "or --static-batch N",
            ) from None
        buf = io.BytesIO()
        exporter = "torch.export.export"
        torch.export.save(program, buf, extra_files={META_FILE: json.dumps(meta(exporter))})
    return buf.getvalue(), exporter


def load_pt2_unpickled(data: bytes, name: str) -> Any:
    """``torch.export.load`` that never unpickles an object (defence in depth).

    torch 2.14 unpickles a pt2's ``use_pickle`` weights and constants, and retries its
    sample inputs, with ``weights_only=False``; custom and opaque objects go through
    pickle whatever is asked, and AOTInductor members are shared libraries. Those
    members are refused (read by torch's own archive reader, the one that loads), and
    every ``torch.load`` inside runs with ``weights_only`` forced. A graph's symbolic
    shapes still go through sympy's parser: only the gate makes a pt2 safe to load.
    """
    import torch

    reader = torch._C.PyTorchFileReader(io.BytesIO(data))
    for member in reader.get_all_records():
        if member.startswith(PT2_CODE_DIRS) or member.rsplit("/", 1)[-1].startswith(PT2_PICKLES):
            raise ExportError(
                f"refusing to load {name}: it holds {member}, a pickled object or "
                "compiled code, which tk's own exports never do",
                "--trust if you trust where it came from",
            )
    forced = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    saved = {k: os.environ.pop(k) for k in forced if k in os.environ}
    os.environ[forced[0]] = "1"
    try:
        return torch.export.load(io.BytesIO(data))
    finally:
        os.environ.pop(forced[0], None)
        os.environ.update(saved)


class Pt2Format(ZipArchiveFormat):
    """torch.export archives: a zip holding ``archive_format``."""

    name = "pt2"
    platform = "pytorch_pt2"
    title = "torch.export"
    suffix = ".pt2"
    file_name = "model.pt2"
    description = "torch.export archive; torch.export.load (runs code: tk's own exports or --trust)"

    def detect(self, probe: Probe) -> bool:
        """A zip archive with ``archive_format`` right under its top directory."""
        return is_pt2_archive(probe)

    def export(self, request: ExportRequest) -> Exported:
        """``torch.export.export`` + ``torch.export.save`` (:func:`export_pt2`)."""
        data, exporter = export_pt2(
            request.model, request.example, request.meta, dynamic=request.dynamic
        )
        return Exported(data, exporter)

    def load(self, cleared: Any, *, cuda: bool = True, threads: int | None = None) -> list[Runner]:
        """``torch.export.load`` of the very bytes the gate hashed; pickles only with --trust."""
        if cleared.allows_pickles:  # --trust: whatever the file holds
            program = torch_load_pt2(cleared.source)
        else:
            program = load_pt2_unpickled(cleared.source, cleared.name)
        return [torch_runner("torch.export", program.module())]


def torch_load_pt2(data: bytes) -> Any:
    """``torch.export.load`` as torch does it (``--trust`` only)."""
    import torch

    return torch.export.load(io.BytesIO(data))


PT2 = Pt2Format()
