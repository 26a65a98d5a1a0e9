"""Run an exported file in its own runtime and compare it with the eager model.

``verify_file`` rebuilds the eager reference from the run directory (found from the
file's metadata, or ``run=``), loads the file in the runtime that will serve it
(onnxruntime, ``torch.jit.load``, ``torch.export.load``) and feeds both the same
inputs at every batch size of a sweep: real held-out samples, random inputs and
out-of-distribution ones (large magnitude, all negative). Each output is checked
for shape, dtype, element-wise closeness and agreement of the decision (label).

The lesson taken from Optimum's validator, which passes a 1923 max diff as a
"warning" after checking one batch size: every check here either passes or fails
the file, and the odd batch size 7 catches a reshape that hard-codes the batch.

Exit codes used by ``tk verify``: 0 pass, 1 mismatch, 3 the file cannot be loaded
or does not run on any input.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import runs
from toolkit.errors import ExportError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from toolkit.registry import Registry

FORMATS = ("onnx", "torchscript", "pt2")
# The metadata of TorchScript and pt2 files: one JSON document stored as an extra
# file in their zip archive (``<archive>/extra/tk_metadata.json``).
META_FILE = "tk_metadata.json"
# ONNX metadata_props keys are "tk.<key>", each value JSON-encoded, so other tools
# (Netron, onnxruntime's custom_metadata_map) show every field on its own.
ONNX_PREFIX = "tk."
DEFAULT_BATCH_SIZES = (1, 7, 64)
DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4
# Input cases: name -> magnitude. Float32 rounding error grows with the size of the
# values, so a case S times larger than N(0, 1) gets an atol S times larger (rtol is
# unchanged); without this a correct file fails on cancellation near zero.
CASES = {"held-out": 1.0, "random": 1.0, "ood-large": 100.0, "ood-negative": 10.0}
SEED = 1234


# ------------------------------------------------------------------ quiet natives
def _debug() -> bool:
    return os.environ.get("TK_DEBUG", "") not in ("", "0")


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """Silence what exporters and runtimes print, Python and C++ alike.

    torch.export dumps graphs on failure, the TorchScript ONNX exporter prints its IR
    from C++, onnxruntime logs in red: none of it is for a tk user, who gets one line
    naming the problem instead. ``TK_DEBUG=1`` lets everything through.
    """
    if _debug():
        yield
        return
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    with tempfile.TemporaryFile() as sink:
        saved = (os.dup(1), os.dup(2))
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
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


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` squeezed onto one line (ANSI colours removed), at most ``limit``."""
    import re

    from toolkit.errors import TkError

    text = re.sub(r"\x1b\[[0-9;]*m", "", exc.message if isinstance(exc, TkError) else str(exc))
    text = " ".join(text.split()) or type(exc).__name__
    if not isinstance(exc, TkError):  # tk's own messages need no class name
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------ metadata
def detect_format(data: bytes | str | Path) -> str:
    """``onnx``, ``torchscript`` or ``pt2`` from the file's content, not its name.

    TorchScript and pt2 files are zip archives (pt2 has ``archive_format``,
    TorchScript has ``code/``); anything else is tried as ONNX.
    """
    source: Any = io.BytesIO(data) if isinstance(data, bytes) else data
    if not zipfile.is_zipfile(source):
        return "onnx"
    if isinstance(source, io.BytesIO):
        source.seek(0)
    with zipfile.ZipFile(source) as zf:
        names = zf.namelist()
    if any(n.endswith("/archive_format") or "/models/" in n for n in names):
        return "pt2"
    return "torchscript"


def read_metadata(path: str | Path | bytes) -> dict[str, Any]:
    """The provenance tk stored in an exported file (``{}`` if it has none).

    Reads only the metadata: no weights are loaded and no model code runs, so this
    is safe on files from anywhere. Raises ExportError if the file cannot be read.
    """
    if not isinstance(path, bytes) and not Path(path).is_file():
        what = "not a file" if Path(path).exists() else "no such file"
        raise UsageError(f"{what}: {path}", "tk export, then the path of the file it wrote")
    fmt = detect_format(path)
    try:
        if fmt == "onnx":
            import onnx

            if isinstance(path, bytes):
                proto = onnx.load_from_string(path)
            else:
                # format= explicitly: onnx guesses from the suffix (.json, .txt) otherwise.
                proto = onnx.load(str(path), format="protobuf", load_external_data=False)
            meta = {
                p.key[len(ONNX_PREFIX) :]: json.loads(p.value)
                for p in proto.metadata_props
                if p.key.startswith(ONNX_PREFIX)
            }
        else:
            source: Any = io.BytesIO(path) if isinstance(path, bytes) else path
            with zipfile.ZipFile(source) as zf:
                name = next((n for n in zf.namelist() if n.endswith(f"/extra/{META_FILE}")), None)
                meta = json.loads(zf.read(name)) if name else {}
    except Exception as exc:
        what = "an in-memory export" if isinstance(path, bytes) else str(path)
        raise ExportError(
            f"cannot read {what} as {fmt}: {one_line(exc, 200)}",
            "re-export it with tk export",
        ) from None
    if meta:
        meta.setdefault("format", fmt)
    return meta


# ------------------------------------------------------------------------ runtimes
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


def load_runners(source: str | Path | bytes, fmt: str | None = None) -> list[Runner]:
    """Load an exported file in the runtime(s) that serve its format.

    ONNX runs on onnxruntime's CPU provider, and also on CUDA when that provider is
    present. Raises ExportError (exit 3) when the file cannot be loaded.
    """
    fmt = fmt or detect_format(source)
    try:
        with quiet_native(), warnings.catch_warnings():
            # torch.jit.load warns that TorchScript is deprecated: tk export said so.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            if fmt == "onnx":
                return _onnx_runners(source)
            data: Any = io.BytesIO(source) if isinstance(source, bytes) else str(source)
            if fmt == "torchscript":
                import torch

                module = torch.jit.load(data, map_location="cpu")
                return [_torch_runner("torch.jit", module.eval())]
            import torch

            program = torch.export.load(data)
            return [_torch_runner("torch.export", program.module())]
    except ExportError:
        raise
    except Exception as exc:
        what = "the in-memory export" if isinstance(source, bytes) else str(source)
        raise ExportError(
            f"cannot load {what} as {fmt}: {one_line(exc, 240)}", "re-export it with tk export"
        ) from None


def _onnx_runners(source: str | Path | bytes) -> list[Runner]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # failures come back as exceptions; no red log lines
    model: Any = source if isinstance(source, bytes) else str(source)
    sessions = [("onnxruntime-cpu", ort.InferenceSession(model, opts, ["CPUExecutionProvider"]))]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        # TF32 would put float32 results ~1e-3 off; an unusable CUDA setup (driver,
        # libraries) leaves the CPU check, which is the one that decides.
        cuda = [("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"]
        with contextlib.suppress(Exception):
            sessions.append(("onnxruntime-cuda", ort.InferenceSession(model, opts, cuda)))
    out = []
    for label, session in sessions:
        name = session.get_inputs()[0].name

        def run(x: np.ndarray, session: Any = session, name: str = name) -> list[np.ndarray]:
            return list(session.run(None, {name: x}))

        out.append(Runner(label, run))
    return out


# -------------------------------------------------------------------------- inputs
def heldout_features(config: dict[str, Any], registry: Registry, limit: int = 1024) -> Any:
    """Up to ``limit`` held-out samples (model input, float32) from the run's dataset.

    The dataset is rebuilt from ``config.json``'s ``dataset``/``data_params`` through
    the registry; integer features are scaled exactly as the training loop does.
    """
    import torch

    from toolkit.data import Split
    from toolkit.train import load_data

    spec = registry.dataset(config["dataset"])
    data = load_data(spec, spec.resolve_params(config.get("data_params", {})))
    test = data.test
    if isinstance(test, Split):
        x = test.x[:limit]
    else:  # a torch Dataset that does not fit in memory: index the first items
        x = torch.stack([test[i][0] for i in range(min(limit, len(test)))])
    return data.features(x).cpu().numpy()


def make_inputs(
    shape: Sequence[int], batch: int, heldout: np.ndarray | None, seed: int = SEED
) -> dict[str, np.ndarray]:
    """The input cases at one batch size (deterministic: the same seed, the same inputs)."""
    import numpy as np

    rng = np.random.default_rng(seed + batch)
    full = (batch, *shape)
    cases = {}
    if heldout is not None and len(heldout):
        idx = np.arange(batch) % len(heldout)  # cycle when the split is smaller
        cases["held-out"] = np.ascontiguousarray(heldout[idx], dtype=np.float32)
    cases["random"] = rng.standard_normal(full).astype(np.float32)
    cases["ood-large"] = (rng.standard_normal(full) * CASES["ood-large"]).astype(np.float32)
    cases["ood-negative"] = (-np.abs(rng.standard_normal(full)) * CASES["ood-negative"]).astype(
        np.float32
    )
    return cases


# ---------------------------------------------------------------------- comparison
@dataclass
class Check:
    """One output of one runtime at one batch size on one input case."""

    runtime: str
    inputs: str
    batch: int
    output: str
    expected_shape: list[int] | None = None
    shape: list[int] | None = None
    expected_dtype: str | None = None
    dtype: str | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    outside: float | None = None  # fraction of elements outside tolerance
    agreement: float | None = None  # fraction of decisive rows with the same decision
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    error: str | None = None  # the runtime raised on this input

    @property
    def passed(self) -> bool:
        """Same shape and dtype, every element within tolerance, every decision equal."""
        return (
            self.error is None
            and self.shape == self.expected_shape
            and self.dtype == self.expected_dtype
            and self.outside == 0.0
            and self.agreement == 1.0
        )

    def to_json(self) -> dict[str, Any]:
        """All fields plus ``passed``."""
        return {**self.__dict__, "passed": self.passed}


def compare(
    ref: np.ndarray, got: np.ndarray, task: str, atol: float, rtol: float, decide: bool
) -> dict[str, Any]:
    """Shape, dtype, max abs/rel error, fraction outside ``atol + rtol*|ref|``, agreement.

    Agreement counts only *decisive* rows, where the reference's margin exceeds the
    tolerance (a logit of 1e-7 may flip sign legitimately); for regression it is the
    fraction of rows whose values are all within tolerance.
    """
    import numpy as np

    out: dict[str, Any] = {
        "expected_shape": list(ref.shape),
        "shape": list(got.shape),
        "expected_dtype": str(ref.dtype),
        "dtype": str(got.dtype),
    }
    if ref.shape != got.shape:
        return out
    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    diff = np.abs(g - r)
    same = (r == g) | (np.isnan(r) & np.isnan(g))  # equal infinities and NaNs match
    diff = np.where(same, 0.0, np.nan_to_num(diff, nan=np.inf))
    tol = atol + rtol * np.abs(np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0))
    bad = diff > tol
    out["max_abs"] = float(diff.max()) if diff.size else 0.0
    out["max_rel"] = float((diff / np.maximum(np.abs(r), atol)).max()) if diff.size else 0.0
    out["outside"] = float(bad.mean()) if diff.size else 0.0
    n = r.shape[0] if r.ndim else 1
    rr, gg, tt = r.reshape(n, -1), g.reshape(n, -1), tol.reshape(n, -1)
    if not decide or task == "regression" or rr.shape[1] == 0:
        rows_ok = ~bad.reshape(n, -1).any(axis=1)
        out["agreement"] = float(rows_ok.mean()) if n else 1.0
        return out
    if task == "binary" or rr.shape[1] == 1:
        ref_label, got_label = rr[:, 0] > 0, gg[:, 0] > 0
        decisive = np.abs(rr[:, 0]) > tt[:, 0]
    else:
        ref_label, got_label = rr.argmax(axis=1), gg.argmax(axis=1)
        top2 = np.sort(rr, axis=1)[:, -2:]
        decisive = (top2[:, 1] - top2[:, 0]) > 2 * tt.max(axis=1)
    agree = ref_label[decisive] == got_label[decisive]
    out["agreement"] = float(agree.mean()) if agree.size else 1.0
    return out


# -------------------------------------------------------------------------- report
@dataclass
class VerifyReport:
    """Every check of one file, plus what was compared and why it passed or failed."""

    path: str
    format: str
    run: str
    task: str
    atol: float
    rtol: float
    batch_sizes: list[int]
    runtimes: list[str]
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True when there was at least one check and every check passed."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def status(self) -> str:
        """``pass``, ``mismatch``, or ``error`` when the file ran on no input at all."""
        if self.passed:
            return "pass"
        if self.checks and all(c.error is not None for c in self.checks):
            return "error"
        return "mismatch"

    @property
    def exit_code(self) -> int:
        """0 pass, 1 mismatch, 3 cannot run."""
        return {"pass": 0, "mismatch": 1, "error": 3}[self.status]

    def worst(self) -> Check | None:
        """The first failing check (or None)."""
        return next((c for c in self.checks if not c.passed), None)

    def summary(self) -> str:
        """One line: verdict, counts and the largest error."""
        errs = [c.max_abs for c in self.checks if c.max_abs is not None]
        biggest = f", max abs err {max(errs):.2e}" if errs else ""
        n_bad = sum(not c.passed for c in self.checks)
        head = f"{self.status.upper()}: {len(self.checks) - n_bad}/{len(self.checks)} checks"
        tail = ""
        bad = self.worst()
        if bad is not None:
            tail = f"; first failure: {bad.runtime} {bad.inputs} batch {bad.batch}: " + (_why(bad))
        sizes = ",".join(map(str, self.batch_sizes))
        scaled = "/".join(f"x{s:g}" for s in sorted({v for v in CASES.values() if v != 1}))
        return (
            f"{head} (batch {sizes}, atol {self.atol:g} [{scaled} on OOD inputs], "
            f"rtol {self.rtol:g}{biggest}){tail}"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly dict (``tk verify --json``)."""
        return {
            "path": self.path,
            "format": self.format,
            "run": self.run,
            "task": self.task,
            "status": self.status,
            "passed": self.passed,
            "atol": self.atol,
            "rtol": self.rtol,
            "batch_sizes": self.batch_sizes,
            "runtimes": self.runtimes,
            "notes": self.notes,
            "seconds": round(self.seconds, 4),
            "checks": [c.to_json() for c in self.checks],
        }

    def text(self) -> str:
        """The rendered table and verdict as plain text (no colours)."""
        buf = io.StringIO()
        self.render(buf, color=False)
        return buf.getvalue().rstrip("\n")

    def render(self, file: Any = None, color: bool | None = None) -> None:
        """Print the report as a table (rich) followed by the one-line verdict."""
        import shutil

        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        # A pipe or a file gets the whole table unwrapped; a terminal its own width.
        target = file or sys.stdout
        tty = hasattr(target, "isatty") and target.isatty()
        width = shutil.get_terminal_size((160, 24)).columns if tty else 160
        console = Console(
            file=file,
            width=width,
            highlight=False,
            soft_wrap=False,
            no_color=color is False,
            force_terminal=False if color is False else None,
        )
        table = Table()
        for col in ("runtime", "inputs", "batch", "output", "shape / dtype"):
            table.add_column(col, no_wrap=True)
        for col in ("max abs", "max rel", "outside", "agree"):
            table.add_column(col, justify="right", no_wrap=True)
        table.add_column("result", no_wrap=True)
        for c in self.checks:
            shape = "x".join(map(str, c.shape)) if c.shape is not None else "-"
            table.add_row(
                c.runtime,
                c.inputs,
                str(c.batch),
                c.output,
                f"{shape} {c.dtype or ''}".strip(),
                _num(c.max_abs),
                _num(c.max_rel),
                "-" if c.outside is None else f"{100 * c.outside:.1f}%",
                "-" if c.agreement is None else f"{100 * c.agreement:.1f}%",
                Text("ok", style="green")
                if c.passed
                else Text(f"FAIL {_why(c, short=True)}", style="red"),
            )
        console.print(f"tk verify {self.path} ({self.format})", soft_wrap=True, markup=False)
        console.print(table)
        for note in self.notes:
            console.print(f"note: {note}", soft_wrap=True, markup=False)
        style = "green" if self.passed else "red"
        console.print(self.summary(), style=style, soft_wrap=True, markup=False)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2e}"


def _why(c: Check, short: bool = False) -> str:
    """Why a check failed: a few words for the table, a full sentence otherwise."""
    if c.error is not None:
        return c.error.split(":")[0] if short else c.error
    if c.shape != c.expected_shape:
        return f"shape {c.shape}, eager {c.expected_shape}"
    if c.dtype != c.expected_dtype:
        return f"dtype {c.dtype}, eager {c.expected_dtype}"
    if c.outside:
        if short:
            return "values outside tolerance"
        return f"{100 * c.outside:.1f}% of values outside tolerance (max abs {c.max_abs:.2e})"
    if c.agreement != 1.0:
        return f"decisions differ on {100 * (1 - (c.agreement or 0)):.1f}% of rows"
    return "ok"


# ----------------------------------------------------------------------- the sweep
def run_checks(
    runners: Sequence[Runner],
    reference: Runner,
    *,
    input_shape: Sequence[int],
    task: str,
    batch_sizes: Sequence[int],
    atol: float,
    rtol: float,
    heldout: np.ndarray | None,
    output_names: Sequence[str] = (),
) -> list[Check]:
    """Every runner x batch size x input case x output, compared with ``reference``."""
    checks = []
    for batch in batch_sizes:
        for case, x in make_inputs(input_shape, batch, heldout).items():
            tol = {"atol": atol * CASES[case], "rtol": rtol}
            refs = reference.run(x)
            for runner in runners:
                try:
                    got = runner.run(x)
                except Exception as exc:
                    error = f"runtime error: {one_line(exc, 160)}"
                    checks.append(Check(runner.name, case, batch, "*", error=error, **tol))
                    continue
                if len(got) != len(refs):
                    error = f"{len(got)} outputs, eager has {len(refs)}"
                    checks.append(Check(runner.name, case, batch, "*", error=error, **tol))
                    continue
                for i, (r, g) in enumerate(zip(refs, got, strict=True)):
                    name = output_names[i] if i < len(output_names) else f"output_{i}"
                    fields = compare(r, g, task, tol["atol"], rtol, decide=i == 0)
                    checks.append(Check(runner.name, case, batch, name, **tol, **fields))
    return checks


def resolve_tolerance(
    meta: dict[str, Any], registry: Registry | None, atol: float | None, rtol: float | None
) -> tuple[float, float]:
    """Explicit values, else the model spec's, else the file's, else 1e-5 / 1e-4."""
    declared: dict[str, Any] = dict(meta.get("tolerance") or {})
    name = (meta.get("model") or {}).get("name")
    if registry is not None and name in registry.models:
        tol = registry.models[name].tolerance
        declared = {"atol": tol.atol, "rtol": tol.rtol}
    a = atol if atol is not None else float(declared.get("atol", DEFAULT_ATOL))
    r = rtol if rtol is not None else float(declared.get("rtol", DEFAULT_RTOL))
    if a < 0 or r < 0:
        raise UsageError(f"tolerances must not be negative (atol {a}, rtol {r})")
    return a, r


def find_run(path: Path | None, meta: dict[str, Any], run: Any, runs_dir: Any) -> runs.Run:
    """The run a file was exported from: ``run`` if given, else the one its metadata names.

    Falls back to the file's own directory (the default export location) when the
    recorded path moved. The run's weights must be the ones the file was made from.
    """
    if run is not None:
        found = runs.open_run(run, runs_dir)
    else:
        candidates = [meta.get("run")]
        if path is not None:
            candidates.append(str(path.resolve().parent))
        found = None
        for cand in candidates:
            if cand and (Path(cand) / runs.CONFIG).is_file():
                found = runs.open_run(cand, runs_dir)
                break
        if found is None:
            raise UsageError(
                f"cannot find the run this file was exported from ({meta.get('run')})",
                "--run RUN_DIR",
            )
    want = meta.get("weights_sha256")
    if want and found.weights.is_file():
        have = runs.sha256_file(found.weights)
        if have != want:
            raise UsageError(
                f"{found.path} holds different weights (sha256 {have[:12]}) than the ones "
                f"this file was exported from ({want[:12]})",
                "--run the original run, or tk export again",
            )
    return found


def verify_file(
    path: str | Path,
    *,
    run: Any = None,
    batch_sizes: Sequence[int] | None = DEFAULT_BATCH_SIZES,
    atol: float | None = None,
    rtol: float | None = None,
    runs_dir: str | Path = "runs",
    registry: Registry | None = None,
    trust: bool = False,
) -> VerifyReport:
    """Run ``path`` in its runtime and compare it with the eager model of its run.

    :param run: the run directory; default: the one named in the file's metadata.
    :param batch_sizes: the sweep; ``None`` or the default on a file exported with
        ``--static-batch N`` checks batch N only.
    :param atol: absolute tolerance (default: the model spec's, else 1e-5).
    :param rtol: relative tolerance (default: the model spec's, else 1e-4).
    :returns: the report; ``report.passed`` / ``report.status`` / ``report.exit_code``.
    :raises ExportError: the file cannot be read or loaded (exit 3).
    :raises UsageError: no tk metadata, run not found, or different weights (exit 2).
    :param trust: load a TorchScript file that no tk manifest vouches for.
    """
    from toolkit import checkpoint

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} not found", "tk export")
    checkpoint.check_file(path)  # a file its run's manifest lists must match it
    meta = read_metadata(path)
    if not meta:
        raise UsageError(
            f"{path} carries no tk metadata, so there is no eager model to compare with",
            "export it with tk export",
        )
    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()
    found = find_run(path, meta, run, runs_dir)
    checkpoint.check_export(path, meta.get("format", ""), found.path, trust)
    runners = load_runners(path, meta.get("format"))
    return verify_loaded(
        runners,
        meta,
        found,
        path=str(path),
        batch_sizes=batch_sizes,
        atol=atol,
        rtol=rtol,
        registry=registry,
    )


def verify_loaded(
    runners: Sequence[Runner],
    meta: dict[str, Any],
    run: runs.Run,
    *,
    path: str,
    batch_sizes: Sequence[int] | None,
    atol: float | None,
    rtol: float | None,
    registry: Registry,
    model: Any = None,
    heldout: Any = "load",
) -> VerifyReport:
    """The sweep for already-loaded runners (``tk export`` verifies its bytes this way).

    :param model: the eager reference (rebuilt from ``run`` when None).
    :param heldout: held-out samples, or ``"load"`` to read them from the run's dataset.
    """
    from toolkit.train import rebuild_model

    start = time.perf_counter()
    a, r = resolve_tolerance(meta, registry, atol, rtol)
    notes: list[str] = []
    static = _static_batch(meta)
    if batch_sizes is None or (static and tuple(batch_sizes) == DEFAULT_BATCH_SIZES):
        batch_sizes = (static,) if static else DEFAULT_BATCH_SIZES
        if static:
            notes.append(f"exported with a static batch of {static}: only batch {static} checked")
    sizes = [int(b) for b in batch_sizes]
    if not sizes or any(b < 1 for b in sizes):
        raise UsageError(f"batch sizes must be positive integers, got {sizes}", "1,7,64")
    if model is None:
        model = rebuild_model(run, registry)
    if isinstance(heldout, str):
        try:
            heldout = heldout_features(run.config, registry)
        except Exception as exc:  # data gone (e.g. a --data-dir that moved): say so
            heldout = None
            notes.append(
                f"held-out samples unavailable ({one_line(exc, 160)}): "
                "random and out-of-distribution inputs only"
            )
    shape = [int(d) for d in meta["input"]["shape"][1:]]
    task = meta.get("task") or run.config.get("task", "regression")
    outputs = [meta["output"]["name"]] if meta.get("output") else []
    checks = run_checks(
        runners,
        eager_runner(model),
        input_shape=shape,
        task=task,
        batch_sizes=sizes,
        atol=a,
        rtol=r,
        heldout=heldout,
        output_names=outputs,
    )
    return VerifyReport(
        path=path,
        format=meta.get("format", "?"),
        run=str(run.path),
        task=task,
        atol=a,
        rtol=r,
        batch_sizes=sizes,
        runtimes=[x.name for x in runners],
        checks=checks,
        notes=notes,
        seconds=time.perf_counter() - start,
    )


def _static_batch(meta: dict[str, Any]) -> int | None:
    first = (meta.get("input") or {}).get("shape", ["batch"])[0]
    return int(first) if isinstance(first, int) else None


def parse_batch_sizes(text: str | None) -> list[int] | None:
    """``"1,7,64"`` -> ``[1, 7, 64]``; a bad list is a UsageError naming the item."""
    if text is None:
        return None
    sizes = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            value = int(item)
        except ValueError:
            raise UsageError(f"--batch-sizes: {item!r} is not an integer", "1,7,64") from None
        if value < 1:
            raise UsageError(f"--batch-sizes: {value} is not a positive batch size", "1,7,64")
        sizes.append(value)
    if not sizes:
        raise UsageError("--batch-sizes is empty", "1,7,64")
    return sizes
