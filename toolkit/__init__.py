"""tk: train, export and verify PyTorch models from plugins.

This module is the public API for plugin authors. It never imports torch.
"""

from __future__ import annotations

from toolkit.errors import TkError, UsageError
from toolkit.hookspecs import hookimpl
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

__version__ = "0.1.0"

__all__ = [
    "DataInfo",
    "DatasetSpec",
    "InputSpec",
    "ModelSpec",
    "Param",
    "Recipe",
    "TkError",
    "Tolerance",
    "TrackerSpec",
    "UsageError",
    "__version__",
    "hookimpl",
]
