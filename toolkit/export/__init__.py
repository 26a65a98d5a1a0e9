"""Export a run's model to ONNX, TorchScript and pt2 (torch.export), with provenance.

``export_run`` rebuilds the eager model from the run directory (config + weights,
through the plugin registry), exports a copy in ``eval()`` with a dynamic batch
dimension, embeds tk's metadata in the file, verifies the exported bytes against
the eager model and only then writes them, atomically. So a file at the
destination is always complete, and (unless ``verify=False``) verified.

Default file names, inside the run directory::

    model.onnx             ONNX, weights embedded (one self-contained file)
    model.torchscript.pt   TorchScript (torch.jit.script, else torch.jit.trace)
    model.pt2              torch.export archive (PyTorch's replacement for TorchScript)

Modules: ``prepare`` (formats, paths, the reference), ``metadata`` and ``driver``
(export -> verify -> write or refuse), ``quantize`` and ``variants`` (files derived
from the verified ONNX one). Each format's exporter lives with the format
(:mod:`toolkit.formats`), and the driver reaches it through the installed formats.
Everything public is importable from here.
"""

from toolkit.export.driver import (
    ExportResult,
    PartialExportError,
    PartialVerificationError,
    export_run,
)
from toolkit.export.metadata import build_metadata
from toolkit.export.prepare import EXAMPLE_BATCH, ExportJob, parse_formats, plan_paths
from toolkit.formats import FILE_NAMES
from toolkit.formats.onnx import export_onnx
from toolkit.formats.pt2 import export_pt2
from toolkit.formats.torchscript import export_torchscript

__all__ = [
    "EXAMPLE_BATCH",
    "FILE_NAMES",
    "ExportJob",
    "ExportResult",
    "PartialExportError",
    "PartialVerificationError",
    "build_metadata",
    "export_onnx",
    "export_pt2",
    "export_run",
    "export_torchscript",
    "parse_formats",
    "plan_paths",
]
