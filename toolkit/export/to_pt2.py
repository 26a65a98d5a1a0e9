"""pt2: ``torch.export``, PyTorch's replacement for TorchScript (metadata as an extra file)."""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from toolkit.errors import ExportError, one_line
from toolkit.export.common import dynamic_shapes
from toolkit.formats import META_FILE
from toolkit.verify import quiet_native

if TYPE_CHECKING:
    import torch


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
