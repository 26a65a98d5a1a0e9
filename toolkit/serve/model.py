"""A served model: an export opened through ``tk predict``'s gate, and its v2 metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import UsageError
from toolkit.formats import static_batch

if TYPE_CHECKING:
    import numpy as np

    from toolkit.formats import Runner

# KServe v2 datatypes and their numpy dtypes (BYTES is not a model input tk exports).
V2_TYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}
NUMPY_TO_V2 = {v: k for k, v in V2_TYPES.items()}


@dataclass
class ServedModel:
    """One export, loaded: its name in URLs, metadata, runtime, and tensor specs."""

    name: str
    path: str
    meta: dict[str, Any]
    runner: Runner
    # Everything the file says about itself (provenance, tolerance), for the page at /;
    # and whether its run's manifest listed it (then its sha256 was checked at start).
    full_meta: dict[str, Any] = field(default_factory=dict)
    manifest_checked: bool = False

    @property
    def input_name(self) -> str:
        """The name of the model's one input tensor (the ONNX graph's input name)."""
        return str(self.meta["input"].get("name") or "input")

    @property
    def output_name(self) -> str:
        """The name of the first output tensor."""
        return str((self.meta.get("output") or {}).get("name") or "output")

    @property
    def input_dtype(self) -> str:
        """The numpy dtype of the input (float32 for every tk export)."""
        return str(self.meta["input"].get("dtype") or "float32")

    @property
    def sample_shape(self) -> list[int]:
        """The shape of one sample (the input's dims after the batch)."""
        return [int(d) for d in self.meta["input"]["shape"][1:]]

    @property
    def static(self) -> int | None:
        """The batch a static-batch file was exported for, else None."""
        return static_batch(self.meta)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output on ``x`` (a static-batch file gets exactly its batch, padded)."""
        import numpy as np

        if self.static is None:
            return [np.asarray(y) for y in self.runner.run(np.ascontiguousarray(x))]
        chunk, parts = self.static, []
        for i in range(0, len(x), chunk):
            xb = x[i : i + chunk]
            n = len(xb)
            if n < chunk:
                xb = np.concatenate([xb, np.zeros((chunk - n, *xb.shape[1:]), xb.dtype)])
            parts.append([np.asarray(y)[:n] for y in self.runner.run(np.ascontiguousarray(xb))])
        return [np.concatenate(ys) for ys in zip(*parts, strict=True)]

    def metadata(self) -> dict[str, Any]:
        """The v2 model metadata response, from the file's embedded records."""
        out = self.meta.get("output") or {}
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": _platform(self.meta.get("format") or "onnx"),
            "inputs": [
                {
                    "name": self.input_name,
                    "datatype": NUMPY_TO_V2.get(self.input_dtype, "FP32"),
                    "shape": [
                        -1 if not isinstance(d, int) else d for d in self.meta["input"]["shape"]
                    ],
                }
            ],
            "outputs": [
                {
                    "name": self.output_name,
                    "datatype": NUMPY_TO_V2.get(str(out.get("dtype") or "float32"), "FP32"),
                    "shape": [
                        -1 if not isinstance(d, int) else d for d in out.get("shape", ["batch", -1])
                    ],
                }
            ],
            "parameters": {
                "task": self.meta.get("task"),
                "class_names": self.meta.get("class_names"),
                "inputs": self.meta.get("inputs"),
            },
        }


def _platform(name: str) -> str:
    """The installed format's own ``platform`` (its name when it declares none)."""
    from toolkit.trust import formats

    fmt = formats().formats.get(name)
    return (fmt.platform if fmt is not None else "") or name


def load_models(paths: list[str], *, trust: bool = False) -> dict[str, ServedModel]:
    """Open every file through ``tk predict``'s gate (integrity settled before use).

    A file failing its integrity check, or a TorchScript/pt2 file without ``trust``
    that this tk did not export, raises the gate's own error (one line, its exit code).
    """
    from toolkit.integrity import find_manifest
    from toolkit.predict.loading import open_target
    from toolkit.trust import read_metadata

    models: dict[str, ServedModel] = {}
    for path in paths:
        p = Path(path)
        if not p.is_file():
            what = "not a file" if p.exists() else "no such file"
            raise UsageError(f"{what}: {p}", "tk serve runs/NAME/model.onnx")
        name = p.stem
        if name in models:
            raise UsageError(
                f"two models named {name!r} ({models[name].path} and {p})",
                "serve files with different names",
            )
        # runs_dir is the file's own folder: only a file path is accepted here.
        opened = open_target(p, p.parent, None, trust)
        try:
            # Sized for one row, a request's usual size: a model too small for a row to
            # pay for a second onnxruntime thread gets one (tk predict's own rule). On a
            # busy machine a call otherwise waits for its second thread to be scheduled:
            # digits-cnn served 1.3-2.2x the requests/s at concurrency 64 with one
            # thread (docs/benchmarks-serve.md). resnet18 keeps onnxruntime's default.
            runner = opened.load(1)
        finally:
            opened.settle()  # a file that fails its manifest is refused, never served
        # Metadata only (no weights, no code): the provenance the gate's reader skips.
        full = read_metadata(p)
        models[name] = ServedModel(
            name, str(p), opened.meta, runner, full, find_manifest(p) is not None
        )
    return models
