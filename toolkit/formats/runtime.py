"""The runtimes formats load files in, and the eager reference, as :class:`Runner`s.

Every runtime is wrapped as a Runner: numpy in, a flat list of numpy outputs back,
so verify, predict and bench never care which runtime produced them. Formats use
these helpers in their ``load``; the gate (toolkit/trust.py) decides what loads.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import debug_enabled
from toolkit.formats import Runner

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


def _flatten(out: Any) -> list[Any]:
    if isinstance(out, (list, tuple)):
        return [t for item in out for t in _flatten(item)]
    if isinstance(out, dict):
        return [t for item in out.values() for t in _flatten(item)]
    return [out]


def torch_runner(name: str, module: Any) -> Runner:
    """A torch module (eager, scripted, exported) as a Runner: no grad, numpy out."""
    import torch

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(torch.from_numpy(x))
        return [t.detach().cpu().numpy() for t in _flatten(out)]

    return Runner(name, run)


def eager_runner(model: Any) -> Runner:
    """The eager model as a Runner (the reference every file is compared with)."""
    return torch_runner("eager", model)


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


def onnx_runners(source: str | Path | bytes, cuda: bool, threads: int | None) -> list[Runner]:
    """onnxruntime's CPU session, and a CUDA one when that provider is present and ``cuda``."""
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
