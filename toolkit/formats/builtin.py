"""tk's own formats, registered like a third party's (entry point ``formats``).

Registration order is detection order: ONNX never claims bytes (it is the
fallback), TorchScript and pt2 each claim their kind of zip archive.
"""

from __future__ import annotations

from collections.abc import Callable

from toolkit.formats import ExportFormat
from toolkit.formats.onnx import ONNX
from toolkit.formats.pt2 import PT2
from toolkit.formats.torchscript import TORCHSCRIPT
from toolkit.hookspecs import hookimpl

# In detection order; the core distribution's plugins load first, so these lead
# every installation's table (toolkit/trust.py relies on it).
BUILTIN = (ONNX, TORCHSCRIPT, PT2)


@hookimpl
def tk_register_formats(register: Callable[[ExportFormat], None]) -> None:
    """ONNX, TorchScript and pt2."""
    for fmt in BUILTIN:
        register(fmt)
