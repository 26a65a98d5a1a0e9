"""``tk export RUN --triton-repo DIR``: a Triton model repository for a run's ONNX file.

The repository is what Triton (or KServe's Triton runtime) loads::

    DIR/<name>/config.pbtxt    platform, max_batch_size, tensor names, dtypes, dims
    DIR/<name>/1/model.onnx    the ONNX file, exported and verified as by tk export
    DIR/<name>/labels.txt      class names, one a line (classifiers)

The ONNX file goes through ``export_run`` unchanged (verified before it is written,
atomically, refused when it exists without ``--overwrite``), so the repository holds
exactly the bytes every other tk command would accept. The config is then read off
the written graph, not the run's config, so it cannot disagree with the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit.errors import UsageError
from toolkit.formats.onnx import ONNX

# The batch Triton may form for a dynamic-batch file: tk serve's --max-batch default.
MAX_BATCH_SIZE = 64
LABELS = "labels.txt"
CONFIG = "config.pbtxt"
HEADER = "# written by tk export --triton-repo"

# ONNX TensorProto element types -> Triton's model_config.proto DataType names.
ONNX_TO_TRITON = {
    "FLOAT": "TYPE_FP32",
    "FLOAT16": "TYPE_FP16",
    "DOUBLE": "TYPE_FP64",
    "BFLOAT16": "TYPE_BF16",
    "BOOL": "TYPE_BOOL",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "STRING": "TYPE_STRING",
}


def repo_paths(repo: str | Path, name: str) -> dict[str, Path]:
    """The files of model ``name`` in repository ``repo``: config, labels, onnx."""
    base = Path(repo) / name
    return {"config": base / CONFIG, "labels": base / LABELS, "onnx": base / "1" / "model.onnx"}


def export_triton_repo(
    run: str | Path | None,
    repo: str | Path,
    *,
    name: str | None = None,
    runs_dir: str | Path = "runs",
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
    **options: Any,
) -> list[Any]:
    """Export ``run`` to ONNX inside a Triton model repository, and write its config.

    :param repo: the repository directory (created if missing).
    :param name: the model's name in the repository (default: the run's model name).
    :param overwrite: replace tk's own files there; without it an existing file is refused.
    :param options: the rest of :func:`toolkit.export.export_run`'s options (quantize, ...).
    :returns: export_run's results (one, the ONNX file).
    :raises UsageError: a repository file exists (without ``overwrite``), or is not tk's.
    """
    from toolkit import runs
    from toolkit.export import export_run

    path = runs.resolve_run(run, runs_dir)
    name = name or str(runs.open_run(path, runs_dir).config["model"])
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"bad Triton model name {name!r}", "--triton-name NAME")
    files = repo_paths(repo, name)
    _check_existing(files, overwrite)
    results = export_run(
        path, ["onnx"], out=files["onnx"], overwrite=overwrite, runs_dir=runs_dir, echo=echo,
        **options,
    )  # fmt: skip
    onnx_file = results[0].path
    report = results[0].verify
    how = "verified against the eager model" if report and report.passed else "NOT verified"
    config, labels = triton_config(onnx_file, name, how)
    if labels is not None:
        runs.atomic_write_text(files["labels"], "".join(f"{c}\n" for c in labels))
        echo(f"triton: wrote {files['labels']} ({len(labels)} classes)")
    elif files["labels"].exists():  # a stale one from an earlier classifier export
        files["labels"].unlink()
    runs.atomic_write_text(files["config"], config)
    echo(f"triton: wrote {files['config']} (model {name!r}, platform {ONNX.platform})")
    return results


def _check_existing(files: dict[str, Path], overwrite: bool) -> None:
    """Refuse before any work: a config that exists (without ``overwrite``) or is not tk's."""
    config = files["config"]
    if not config.exists():
        return
    if not overwrite:
        raise UsageError(f"{config} already exists", "--overwrite to replace it")
    head = config.read_text(errors="replace").splitlines()[:1]
    if head != [HEADER]:
        raise UsageError(
            f"refusing to replace {config}: tk export did not write it",
            "another --triton-repo (--overwrite replaces only tk's own files)",
        )


def triton_config(
    onnx_file: str | Path, name: str, how: str = "verified against the eager model"
) -> tuple[str, list[str] | None]:
    """(config.pbtxt text, class names for labels.txt or None) for an ONNX file.

    Names, dtypes and dims come from the graph; a dim without a fixed size is -1.
    A dynamic first (batch) dim gives ``max_batch_size`` 64, dims without the batch
    and ``dynamic_batching``; a static batch gives ``max_batch_size: 0`` and full dims.
    """
    import onnx

    from toolkit.trust import read_metadata

    model = onnx.load(str(onnx_file), load_external_data=False)
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [_tensor(v) for v in graph.input if v.name not in initializers]
    outputs = [_tensor(v) for v in graph.output]
    # Triton batches only when every tensor's first dim is the batch.
    batched = all(t["dims"] and t["dims"][0] == -1 for t in inputs + outputs)
    meta = read_metadata(Path(onnx_file).read_bytes()) or {}
    classes = meta.get("class_names")
    labels = None
    if meta.get("task") in ("multiclass", "binary") and classes and outputs:
        last = outputs[0]["dims"][-1] if outputs[0]["dims"] else None
        if last == len(classes):  # one score per class: Triton's classification extension
            labels = [str(c) for c in classes]
    lines = [
        HEADER,
        f"# from {meta.get('run', onnx_file)}: the ONNX file in 1/, {how}",
        f"name: {_quote(name)}",
        f'platform: "{ONNX.platform}"',
        f"max_batch_size: {MAX_BATCH_SIZE if batched else 0}",
    ]
    for kind, tensors in (("input", inputs), ("output", outputs)):
        lines.append(f"{kind} [")
        for i, t in enumerate(tensors):
            dims = t["dims"][1:] if batched else t["dims"]
            lines += [
                "  {",
                f"    name: {_quote(t['name'])}",
                f"    data_type: {t['type']}",
                f"    dims: [ {', '.join(map(str, dims))} ]",
            ]
            if kind == "output" and i == 0 and labels is not None:
                lines.append(f'    label_filename: "{LABELS}"')
            lines.append("  }" + ("," if i < len(tensors) - 1 else ""))
        lines.append("]")
    if batched:
        lines.append("dynamic_batching { }")
    return "\n".join(lines) + "\n", labels


def _tensor(value: Any) -> dict[str, Any]:
    """Name, Triton dtype and dims (-1 where not fixed) of an ONNX graph input/output."""
    import onnx

    ttype = value.type.tensor_type
    elem = onnx.TensorProto.DataType.Name(ttype.elem_type)
    if elem not in ONNX_TO_TRITON:
        raise UsageError(
            f"ONNX tensor {value.name!r} has type {elem}, which Triton has no type for",
            "export a model with float inputs and outputs",
        )
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in ttype.shape.dim]
    return {"name": value.name, "type": ONNX_TO_TRITON[elem], "dims": dims}


def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
