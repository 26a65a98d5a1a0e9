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
"""

from __future__ import annotations

import copy
import io
import json
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import __version__, checkpoint, runs
from toolkit.errors import ExportError, UsageError, VerificationError
from toolkit.verify import (
    FORMATS,
    META_FILE,
    ONNX_PREFIX,
    VerifyReport,
    load_runners,
    one_line,
    quiet_native,
    read_metadata,
    verify_loaded,
)

if TYPE_CHECKING:
    import torch

    from toolkit.registry import Registry

FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "pt2": "model.pt2"}
# Exports trace with this batch unless --static-batch: at least 2, because exporters
# specialise a dimension of size 1 (or 0) to a constant.
EXAMPLE_BATCH = 2
OUTPUT_MEANING = {
    "binary": {"meaning": "logits", "activation": "sigmoid", "decision": "probability > 0.5"},
    "multiclass": {"meaning": "logits", "activation": "softmax", "decision": "argmax"},
    "regression": {"meaning": "values", "activation": None, "decision": None},
}
_NOTED: set[str] = set()


@dataclass
class ExportResult:
    """One exported file: where it went, how long it took, and its verification."""

    format: str
    path: Path
    seconds: float  # wall time of the export itself (trace, convert, serialise)
    exporter: str
    opset: int | None
    size: int
    written: bool
    verify: VerifyReport | None = None
    verify_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "format": self.format,
            "path": str(self.path),
            "seconds": round(self.seconds, 4),
            "exporter": self.exporter,
            "opset": self.opset,
            "size": self.size,
            "written": self.written,
            "verify": self.verify.to_json() if self.verify else None,
            "verify_seconds": round(self.verify_seconds, 4),
        }


def _note(message: str, echo_err: Callable[[str], None], once: str | None = None) -> None:
    if once is not None:
        if once in _NOTED:
            return
        _NOTED.add(once)
    echo_err(f"tk: note: {message}")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- planning
def parse_formats(formats: str | Sequence[str]) -> list[str]:
    """``"all"``, one name, a comma list or a sequence -> unique format names in order."""
    items = [formats] if isinstance(formats, str) else list(formats)
    names: list[str] = []
    for item in items:
        for name in str(item).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name in ("ts", "jit"):
                name = "torchscript"
            chosen = list(FORMATS) if name == "all" else [name]
            for fmt in chosen:
                if fmt not in FORMATS:
                    raise UsageError(
                        f"unknown export format {name!r}; choose from {', '.join(FORMATS)} or all",
                        "--format onnx",
                    )
                if fmt not in names:
                    names.append(fmt)
    if not names:
        raise UsageError("no export format given", "--format onnx")
    return names


def plan_paths(
    run_dir: Path, formats: Sequence[str], out: str | Path | None, overwrite: bool
) -> dict[str, Path]:
    """Where each format goes; an existing file is refused unless ``overwrite``.

    ``out`` is a file for one format, a directory for several (or when it is one, or
    a new path without a suffix).
    """
    if out is None:
        base, single = run_dir, None
    else:
        out = Path(out)
        # A directory: several formats, an existing directory, a trailing slash, or a
        # new path without a suffix (exported files always have one).
        as_dir = out.is_dir() or str(out).endswith(("/", "\\")) or not (out.suffix or out.exists())
        if len(formats) > 1 or as_dir:
            base, single = out, None
        else:
            base, single = out.parent, out
    paths = {fmt: single or base / FILE_NAMES[fmt] for fmt in formats}
    for path in paths.values():
        if path.exists() and not overwrite:
            raise UsageError(f"{path} already exists", "--overwrite to replace it")
        if path.exists() and not path.is_file():
            raise UsageError(f"{path} exists and is not a file", "another --out")
    return paths


def build_metadata(
    run: runs.Run,
    registry: Registry,
    fmt: str,
    exporter: str,
    opset: int | None,
    output_shape: Sequence[int],
    static_batch: int | None,
    weights_sha256: str,
) -> dict[str, Any]:
    """Provenance embedded in every exported file (``tk inspect`` prints it).

    tk and torch versions, the plugin that built the model, model name and params,
    task, input and output spec (batch symbolic unless static), class names, the
    run's final metrics, the weights' sha256, opset and exporter.
    """
    import torch

    cfg = run.config
    name = cfg["model"]
    spec = registry.model(name)
    src = registry.source("model", name)
    task = cfg.get("task", spec.task)
    batch: Any = static_batch if static_batch else "batch"
    inp = spec.input
    out_name = "values" if task == "regression" else "logits"
    return {
        "schema": 1,
        "format": fmt,
        "exporter": exporter,
        "opset": opset,
        "tk_version": __version__,
        "torch_version": torch.__version__,
        "plugin": {"distribution": src.distribution, "version": src.version},
        "model": {"name": name, "params": cfg.get("params", {})},
        "dataset": {"name": cfg.get("dataset"), "params": cfg.get("data_params", {})},
        "task": task,
        "input": {"name": inp.name, "shape": [batch, *inp.shape], "dtype": inp.dtype},
        "output": {
            "name": out_name,
            "shape": [batch, *output_shape],
            "dtype": "float32",
            **OUTPUT_MEANING[task],
        },
        "class_names": cfg.get("class_names"),
        "feature_scale": cfg.get("feature_scale"),
        "metrics": run.summary().get("final", {}),
        "weights_sha256": weights_sha256,
        "tolerance": {"atol": spec.tolerance.atol, "rtol": spec.tolerance.rtol},
        "run": str(run.path.resolve()),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --------------------------------------------------------------------- exporters
def _dynamic_shapes(model: Any, example: Any) -> Any:
    """Dim "batch" on the example's first dimension, whatever forward()'s signature is.

    Keyed by the tensor (ShapesCollection), not by argument name or position, so a
    ``forward(self, x)``, ``forward(self, input)`` or ``forward(self, *inputs)`` all work.
    """
    from torch.export import Dim, ShapesCollection

    shapes = ShapesCollection()
    shapes[example] = {0: Dim("batch")}
    return shapes.dynamic_shapes(model, (example,))


def _operators(*messages: str) -> list[str]:
    found: list[str] = []
    for msg in messages:
        for op in re.findall(r"\b(?:aten|prims)(?:::|\.)[A-Za-z0-9_]+", msg):
            if op not in found and op not in ("aten.default", "prims.default"):
                found.append(op)
    return found


def export_onnx(
    model: torch.nn.Module,
    example: torch.Tensor,
    meta: Callable[[str, int | None], dict[str, Any]],
    *,
    opset: int | None,
    dynamic: bool,
    input_name: str,
    output_name: str | None,
    echo_err: Callable[[str], None] = _stderr,
) -> tuple[bytes, str, int | None]:
    """ONNX bytes with the weights embedded: the dynamo exporter, else the TorchScript one.

    ``meta(exporter, opset)`` gives the metadata to embed. The graph is checked with
    ``onnx.checker.check_model(full_check=True)``. Returns (bytes, exporter, opset).
    """
    try:
        proto = _onnx_dynamo(model, example, opset, dynamic, input_name, output_name)
        exporter = "torch.onnx.export(dynamo=True)"
    except Exception as first:
        reason = _dynamo_reason(first)
        _note(
            f"the dynamo ONNX exporter failed ({reason}); "
            "retrying with the TorchScript-based exporter",
            echo_err,
        )
        try:
            proto = _onnx_legacy(model, example, opset, dynamic, input_name, output_name)
            exporter = "torch.onnx.export(dynamo=False)"
        except Exception as second:
            ops = _operators(one_line(second, 2000), one_line(first, 4000))
            used = opset or _default_opset()
            what = f"operator {' / '.join(ops[:2])}" if ops else "the model"
            raise ExportError(
                f"cannot export {what} to ONNX opset {used} with either exporter "
                f"(dynamo: {reason}; TorchScript-based: {one_line(second, 200)})",
                "--format pt2 or torchscript, another --opset, or replace the operator"
                if ops
                else "--format torchscript or pt2, or change forward() as the reasons say",
            ) from None
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    for key, value in meta(exporter, version).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = ONNX_PREFIX + key, json.dumps(value)
    try:
        data = proto.SerializeToString()
    except ValueError as exc:  # protobuf's 2 GB limit
        raise ExportError(
            f"model too large for a single-file ONNX ({one_line(exc, 120)})", "--format pt2"
        ) from None
    return data, exporter, version


def _dynamo_reason(exc: BaseException) -> str:
    """The root cause from the dynamo exporter's long report (its "Exception summary")."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if "## Exception summary" in text:
        summary = text.split("## Exception summary", 1)[1]
        summary = summary.split("(Refer to the full stack trace", 1)[0].split("⬆️", 1)[0]
        summary = re.sub(r"<class '(?:[\w]+\.)*(\w+)'>", r"\1", summary)
        summary = " ".join(summary.split())
        if summary:
            return summary if len(summary) <= 200 else summary[:197] + "..."
    return one_line(exc, 200)


def _default_opset() -> int:
    try:
        from torch.onnx._constants import ONNX_DEFAULT_OPSET

        return int(ONNX_DEFAULT_OPSET)
    except Exception:  # a private constant: never let it break an error message
        return 0


def _check_onnx(proto: Any, dynamic: bool) -> None:
    import onnx

    onnx.checker.check_model(proto, full_check=True)
    if dynamic:
        dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
        if dim.HasField("dim_value"):
            # The dynamo exporter falls back to specialising silently; a fixed batch
            # the user did not ask for is a failed export, not a working file.
            raise ExportError(
                f"the exported graph has a fixed batch of {dim.dim_value}: the model turns "
                "the batch size into a constant (e.g. int(x.shape[0]))"
            )


def _onnx_dynamo(
    model: Any, example: Any, opset: int | None, dynamic: bool, input_name: str, out: str | None
) -> Any:
    import torch

    with quiet_native(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=opset,
            dynamic_shapes=_dynamic_shapes(model, example) if dynamic else None,
            input_names=[input_name],
            output_names=[out] if out else None,
            verbose=False,
        )
        # model_proto carries the initializers inline: the file written later is one
        # self-contained .onnx (program.save() would split out a .onnx.data file).
        proto = program.model_proto
    _check_onnx(proto, dynamic)
    return proto


def _onnx_legacy(
    model: Any, example: Any, opset: int | None, dynamic: bool, input_name: str, out: str | None
) -> Any:
    import onnx
    import torch

    buf = io.BytesIO()
    out_name = out or "output"
    with quiet_native(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.onnx.export(
            model,
            (example,),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=[input_name],
            output_names=[out_name],
            dynamic_axes={input_name: {0: "batch"}, out_name: {0: "batch"}} if dynamic else None,
        )
    _refuse_tracer_warnings(caught)
    proto = onnx.load_from_string(buf.getvalue())
    _check_onnx(proto, dynamic)
    return proto


def _refuse_tracer_warnings(caught: Sequence[warnings.WarningMessage]) -> None:
    import torch

    for w in caught:
        if issubclass(w.category, torch.jit.TracerWarning):
            # A TracerWarning means a Python value was baked into the trace (a shape
            # turned into an int, a tensor into a bool): the graph may be wrong on
            # other inputs, so it is an error, not a warning.
            text = " ".join(str(w.message).split())
            first = text.split(". ")[0].rstrip(".")  # torch's first sentence says it all
            raise ExportError(f"tracing is unsafe for this model: {first}")


def export_torchscript(
    model: torch.nn.Module,
    example: torch.Tensor,
    meta: Callable[[str], dict[str, Any]],
    echo_err: Callable[[str], None] = _stderr,
) -> tuple[bytes, str]:
    """TorchScript bytes: ``torch.jit.script``, else ``torch.jit.trace``.

    A trace that raises a TracerWarning is refused (ExportError). torch's
    deprecation FutureWarnings become one note line. Returns (bytes, exporter).
    """
    import torch

    with quiet_native(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            module = torch.jit.script(model)
            exporter = "torch.jit.script"
            script_error = None
        except Exception as exc:
            script_error = exc
    if script_error is not None:
        with quiet_native(), warnings.catch_warnings(record=True) as traced:
            warnings.simplefilter("always")
            try:
                module = torch.jit.trace(model, (example,))
            except Exception as exc:
                _refuse_tracer_warnings(traced)
                raise ExportError(
                    f"TorchScript: script failed ({one_line(script_error, 160)}) and so did "
                    f"trace ({one_line(exc, 160)})",
                    "--format pt2",
                ) from None
        try:
            _refuse_tracer_warnings(traced)
        except ExportError as exc:
            raise ExportError(
                f"TorchScript: script failed ({one_line(script_error, 160)}) and {exc.message}",
                "--format pt2, or make forward() scriptable",
            ) from None
        caught = [*caught, *traced]
        exporter = "torch.jit.trace"
    buf = io.BytesIO()
    with warnings.catch_warnings(record=True) as saved:
        warnings.simplefilter("always")
        torch.jit.save(module, buf, _extra_files={META_FILE: json.dumps(meta(exporter))})
    if any(_is_deprecation(w) for w in [*caught, *saved]):
        _note(
            "PyTorch deprecates TorchScript; pt2 (--format pt2, torch.export) replaces it",
            echo_err,
            once="torchscript",
        )
    return buf.getvalue(), exporter


def _is_deprecation(w: warnings.WarningMessage) -> bool:
    return issubclass(w.category, (FutureWarning, DeprecationWarning)) and "deprecat" in str(
        w.message
    )


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
                dynamic_shapes=_dynamic_shapes(model, example) if dynamic else None,
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


# ------------------------------------------------------------------------ driver
def export_run(
    run: str | Path | None = None,
    formats: str | Sequence[str] = ("onnx",),
    *,
    out: str | Path | None = None,
    opset: int | None = None,
    overwrite: bool = False,
    static_batch: int | None = None,
    verify: bool = True,
    runs_dir: str | Path = "runs",
    registry: Registry | None = None,
    echo: Callable[[str], None] = print,
    echo_err: Callable[[str], None] = _stderr,
) -> list[ExportResult]:
    """Export a run's model to each format, verify each file, write the ones that pass.

    :param run: a run directory, or None for ``runs/latest``.
    :param formats: ``onnx``, ``torchscript``, ``pt2`` or ``all`` (or several).
    :param out: a file (one format) or a directory (several); default: the run directory.
    :param opset: ONNX opset (default: the exporter's).
    :param overwrite: replace existing files (refused otherwise, before any work).
    :param static_batch: export for exactly this batch size instead of a dynamic one.
    :param verify: verify each export against the eager model before writing it.
    :returns: one ExportResult per format.
    :raises VerificationError: a file failed verification (the report was printed and
        that file not written; the others were). Exit 1.
    :raises ExportError: a format cannot be exported (nothing partial is left). Exit 3.
    """
    fmts = parse_formats(formats)
    if static_batch is not None and static_batch < 1:
        raise UsageError(f"--static-batch must be at least 1, got {static_batch}")
    if opset is not None and opset < 7:
        raise UsageError(f"--opset {opset} is too old; ONNX exporters need 7 or newer")
    the_run = runs.open_run(run, runs_dir)
    if not the_run.weights.is_file():
        raise UsageError(f"{the_run.path} has no {runs.WEIGHTS} (the run did not finish)")
    paths = plan_paths(the_run.path, fmts, out, overwrite)
    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()

    import torch

    from toolkit.train import rebuild_model
    from toolkit.verify import heldout_features

    weights_before = runs.sha256_file(the_run.weights)
    reference = rebuild_model(the_run, registry)
    spec = registry.model(the_run.config["model"])
    batch = static_batch or EXAMPLE_BATCH
    example = torch.randn((batch, *spec.input.shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sample_out = reference(example)
    single_output = isinstance(sample_out, torch.Tensor)
    first = sample_out if single_output else sample_out[0]
    output_shape = list(first.shape[1:])
    dynamic = static_batch is None

    heldout: Any = None
    if verify:
        try:
            heldout = heldout_features(the_run.config, registry)
        except Exception as exc:
            heldout = f"held-out samples unavailable ({one_line(exc, 160)})"

    results: list[ExportResult] = []
    failed: list[ExportResult] = []
    errors: list[tuple[str, ExportError]] = []
    out_name = ("values" if spec.task == "regression" else "logits") if single_output else None
    for fmt in fmts:

        def meta(exporter: str, version: int | None = None, fmt: str = fmt) -> dict[str, Any]:
            return build_metadata(
                the_run,
                registry,
                fmt,
                exporter,
                version if fmt == "onnx" else None,
                output_shape,
                static_batch,
                weights_before,
            )

        # Each exporter gets its own eval() copy: the reference stays untouched, and
        # one exporter's changes to a module cannot leak into the next.
        model = copy.deepcopy(reference).eval()
        start = time.perf_counter()
        version: int | None = None
        try:
            if fmt == "onnx":
                data, exporter, version = export_onnx(
                    model,
                    example,
                    meta,
                    opset=opset,
                    dynamic=dynamic,
                    input_name=spec.input.name,
                    output_name=out_name,
                    echo_err=echo_err,
                )
            elif fmt == "torchscript":
                data, exporter = export_torchscript(model, example, meta, echo_err=echo_err)
            else:
                data, exporter = export_pt2(model, example, meta, dynamic=dynamic)
            seconds = time.perf_counter() - start
            result = ExportResult(fmt, paths[fmt], seconds, exporter, version, len(data), False)
            if verify:
                # Verify the exact bytes about to be written, with the metadata they carry.
                t0 = time.perf_counter()
                report = verify_loaded(
                    load_runners(data, fmt),
                    read_metadata(data),
                    the_run,
                    path=str(paths[fmt]),
                    batch_sizes=None,
                    atol=None,
                    rtol=None,
                    registry=registry,
                    model=reference,
                    heldout=None if isinstance(heldout, str) else heldout,
                )
                if isinstance(heldout, str):
                    report.notes.append(heldout + ": random and out-of-distribution inputs only")
                result.verify = report
                result.verify_seconds = time.perf_counter() - t0
        except ExportError as exc:
            # Nothing was written for this format; the other formats still get their turn.
            errors.append((fmt, exc))
            continue
        results.append(result)
        if result.verify is not None and not result.verify.passed:
            failed.append(result)
            echo(result.verify.text())
            echo(f"{fmt}: {paths[fmt]} NOT written: verification failed")
            continue
        runs.atomic_write_bytes(paths[fmt], data)
        # The manifest entry is what later refuses a corrupted copy and vouches for
        # a TorchScript file (whose loading runs code).
        checkpoint.record_export(the_run.path, paths[fmt], runs.sha256_bytes(data))
        result.written = True
        extra = f", opset {version}" if version else ""
        verdict = f"; verify: {result.verify.summary()}" if result.verify else " (not verified)"
        echo(
            f"{fmt}: wrote {paths[fmt]} ({_size(len(data))}, {exporter}{extra}) "
            f"in {result.seconds:.2f} s{verdict}"
        )

    if runs.sha256_file(the_run.weights) != weights_before:  # never expected: say so loudly
        raise ExportError(f"{the_run.weights} changed during export", "report this as a bug")
    if errors:
        first = errors[0][1]
        what = "; ".join(f"{fmt}: {exc.message}" for fmt, exc in errors)
        exc = ExportError(what if len(errors) > 1 else first.message, first.hint)
        exc.results = results  # type: ignore[attr-defined]  # for tk export --json
        raise exc
    if failed:
        names = "; ".join(f"{r.format}: {r.verify.summary()}" for r in failed if r.verify)
        exc2 = VerificationError(
            f"verification failed, file not written: {names}",
            "fix the model's forward(), or --no-verify to write the file anyway",
        )
        exc2.results = results  # type: ignore[attr-defined]
        raise exc2
    return results


def _size(n: int) -> str:
    return f"{n / 1024:.1f} kB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MB"
