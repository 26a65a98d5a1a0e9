"""Loading an exported file in the runtime that serves it, and the eager reference.

Every runtime is wrapped as a :class:`Runner`: numpy in, a flat list of numpy
outputs back, so the comparison never cares which runtime produced them.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import ExportError, debug_enabled, one_line
from toolkit.formats import detect_format

if TYPE_CHECKING:
    import numpy as np


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """Silence what exporters and runtimes print, Python and C++ alike.

    torch.export dumps graphs on failure, the TorchScript ONNX exporter prints its IR
    from C++, onnxruntime logs in red: none of it is for a tk user, who gets one line
    naming the problem instead. ``TK_DEBUG=1`` lets everything through.
    """
    if debug_enabled():
        yield
        return
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    # The null device, not a temporary file: nothing written there is ever read, and
    # opening it costs no file creation (tk predict passes through here every call).
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        saved = (os.dup(1), os.dup(2))
        try:
            # File descriptors, not just sys.stdout: C++ code writes to fd 1 and 2.
            os.dup2(sink, 1)
            os.dup2(sink, 2)
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                yield
        finally:
            for stream in (sys.__stdout__, sys.__stderr__):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
    finally:
        os.close(sink)


@dataclass
class Runner:
    """An exported file loaded in its runtime: ``run(x) -> list of numpy outputs``."""

    name: str
    run: Callable[[np.ndarray], list[np.ndarray]]


def _flatten(out: Any) -> list[Any]:
    if isinstance(out, (list, tuple)):
        return [t for item in out for t in _flatten(item)]
    if isinstance(out, dict):
        return [t for item in out.values() for t in _flatten(item)]
    return [out]


def _torch_runner(name: str, module: Any) -> Runner:
    import torch

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(torch.from_numpy(x))
        return [t.detach().cpu().numpy() for t in _flatten(out)]

    return Runner(name, run)


def eager_runner(model: Any) -> Runner:
    """The eager model as a Runner (the reference every file is compared with)."""
    return _torch_runner("eager", model)


def load_runners(
    source: str | Path | bytes,
    fmt: str | None = None,
    *,
    cuda: bool = True,
    threads: int | None = None,
) -> list[Runner]:
    """Load an exported file in the runtime(s) that serve its format.

    ONNX runs on onnxruntime's CPU provider, and also on CUDA when that provider is
    present and ``cuda``; ``threads`` sets onnxruntime's intra-op threads (torch's
    are process-wide: ``torch.set_num_threads``). Raises ExportError (exit 3) when
    the file cannot be loaded.
    """
    fmt = fmt or detect_format(source)
    try:
        with quiet_native(), warnings.catch_warnings():
            # torch.jit.load warns that TorchScript is deprecated: tk export said so.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            if fmt == "onnx":
                return _onnx_runners(source, cuda, threads)
            return [_torch_file_runner(source, fmt)]
    except ExportError:
        raise
    except Exception as exc:
        what = "the in-memory export" if isinstance(source, bytes) else str(source)
        raise ExportError(
            f"cannot load {what} as {fmt}: {one_line(exc, 240)}", "re-export it with tk export"
        ) from None


def _torch_file_runner(source: str | Path | bytes, fmt: str) -> Runner:
    import torch

    data: Any = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    if fmt == "torchscript":
        module = torch.jit.load(data, map_location="cpu")
        return _torch_runner("torch.jit", module.eval())
    program = torch.export.load(data)
    return _torch_runner("torch.export", program.module())


def session_options(threads: int | None = None) -> Any:
    """onnxruntime options tk uses everywhere: no log lines, ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # failures come back as exceptions; no red log lines
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return opts


def onnx_runner(session: Any, label: str = "onnxruntime-cpu") -> Runner:
    """An onnxruntime session as a Runner (its first input fed, every output returned)."""
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> list[np.ndarray]:
        return list(session.run(None, {name: x}))

    return Runner(label, run)


def _onnx_runners(source: str | Path | bytes, cuda: bool, threads: int | None) -> list[Runner]:
    import onnxruntime as ort

    opts = session_options(threads)
    model: Any = source if isinstance(source, bytes) else str(source)
    sessions = [("onnxruntime-cpu", ort.InferenceSession(model, opts, ["CPUExecutionProvider"]))]
    if cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        # TF32 would put float32 results ~1e-3 off; an unusable CUDA setup (driver,
        # libraries) leaves the CPU check, which is the one that decides.
        cuda = [("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"]
        with contextlib.suppress(Exception):
            sessions.append(("onnxruntime-cuda", ort.InferenceSession(model, opts, cuda)))
    return [onnx_runner(session, label) for label, session in sessions]
