"""tk: train, export and verify PyTorch models from plugins.

This module is the public API for plugin authors: everything a plugin may use is a
name here, and tk's own plugins import nothing else (``toolkit.testing`` in tests
aside; tests/test_plugin_api.py holds them to it). It never imports torch.

The specs, parameters, hook marker, errors and the ``inputs`` schema are imported
with the package. The helpers a dataset or model plugin may call (table and image
readers, splitters, pretrained weights) are loaded on first use, through the
module ``__getattr__`` below, so ``tk --help``, ``tk list`` and ``tk plugins`` pay
for none of them (and ``toolkit.Pretrained`` is the only one that imports torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from toolkit.errors import PluginError, TkError, UsageError
from toolkit.formats import Exported, ExportFormat, ExportRequest, Probe, Runner
from toolkit.hookspecs import hookimpl
from toolkit.inputs import ImageInputs, TableColumn, TableInputs
from toolkit.registry import (
    DataInfo,
    DatasetSpec,
    InputSpec,
    ModelSpec,
    Param,
    Recipe,
    Tolerance,
    TrackerSpec,
)

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from toolkit.images import (
        LEAVING,
        RESAMPLE,
        Seen,
        Walk,
        decode_pixels,
        open_image,
        unsupported_mode,
        walk_images,
    )
    from toolkit.images import SUFFIXES as IMAGE_SUFFIXES
    from toolkit.pretrained import HubFile, Pretrained, head_names, offline
    from toolkit.sampling import make_circles, make_moons, train_test_split
    from toolkit.tables import (
        CSV_SUFFIXES,
        FLOAT32_MAX,
        NPZ_SUFFIXES,
        PARQUET_SUFFIXES,
        delimiter,
        format_suffix,
        head_lines,
        is_number,
        read_csv,
        read_parquet,
        refuse_duplicates,
    )
    from toolkit.weights import load_weights_file

__version__ = "0.1.0"

# Public name -> (module, name there): imported when a plugin first asks for it.
_LAZY: dict[str, tuple[str, str]] = {
    **{
        name: ("toolkit.tables", name)
        for name in (
            "CSV_SUFFIXES",
            "FLOAT32_MAX",
            "NPZ_SUFFIXES",
            "PARQUET_SUFFIXES",
            "delimiter",
            "format_suffix",
            "head_lines",
            "is_number",
            "read_csv",
            "read_parquet",
            "refuse_duplicates",
        )
    },
    **{
        name: ("toolkit.images", name)
        for name in (
            "LEAVING",
            "RESAMPLE",
            "Seen",
            "Walk",
            "decode_pixels",
            "open_image",
            "unsupported_mode",
            "walk_images",
        )
    },
    "IMAGE_SUFFIXES": ("toolkit.images", "SUFFIXES"),
    **{
        name: ("toolkit.sampling", name)
        for name in ("make_circles", "make_moons", "train_test_split")
    },
    **{
        name: ("toolkit.pretrained", name)
        for name in ("HubFile", "Pretrained", "head_names", "offline")
    },
    "load_weights_file": ("toolkit.weights", "load_weights_file"),
}


def __getattr__(name: str) -> Any:
    """A lazy public name, imported (and cached here) on first access."""
    if name not in _LAZY:
        raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
    module, attr = _LAZY[name]
    # By name, not an import statement: the helpers' modules sit above this one in
    # the layers (tests/test_architecture.py), and nothing in tk imports them this way.
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "CSV_SUFFIXES",
    "FLOAT32_MAX",
    "IMAGE_SUFFIXES",
    "LEAVING",
    "NPZ_SUFFIXES",
    "PARQUET_SUFFIXES",
    "RESAMPLE",
    "DataInfo",
    "DatasetSpec",
    "ExportFormat",
    "ExportRequest",
    "Exported",
    "HubFile",
    "ImageInputs",
    "InputSpec",
    "ModelSpec",
    "Param",
    "PluginError",
    "Pretrained",
    "Probe",
    "Recipe",
    "Runner",
    "Seen",
    "TableColumn",
    "TableInputs",
    "TkError",
    "Tolerance",
    "TrackerSpec",
    "UsageError",
    "Walk",
    "__version__",
    "decode_pixels",
    "delimiter",
    "format_suffix",
    "head_lines",
    "head_names",
    "hookimpl",
    "is_number",
    "load_weights_file",
    "make_circles",
    "make_moons",
    "offline",
    "open_image",
    "read_csv",
    "read_parquet",
    "refuse_duplicates",
    "train_test_split",
    "unsupported_mode",
    "walk_images",
]
