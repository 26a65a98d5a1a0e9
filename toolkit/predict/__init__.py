"""Run an exported file (or a run's eager model) on user data and say what it means.

``predict(target, input)``: ``target`` is an exported file (ONNX, TorchScript, pt2),
a run directory or ``latest``, opened by :mod:`toolkit.predict.loading`; the input
is read by :mod:`toolkit.predict.reading`, the outputs turned into labels,
probabilities or values by :mod:`toolkit.predict.meaning`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import UsageError
from toolkit.formats import static_batch
from toolkit.predict.loading import Opened, open_target
from toolkit.predict.meaning import Prediction, interpret
from toolkit.predict.reading import read_input
from toolkit.predict.tabular import read_rows
from toolkit.verify.heldout import outputs

if TYPE_CHECKING:
    import numpy as np

    from toolkit.registry import Registry

__all__ = [
    "CHUNK",
    "Opened",
    "Prediction",
    "interpret",
    "model_inputs",
    "open_target",
    "predict",
    "read_input",
]

CHUNK = 4096  # rows per call into the runtime


def predict(
    target: str | Path,
    input_path: str | Path | Sequence[str | Path],
    *,
    runs_dir: str | Path = "runs",
    registry: Registry | None = None,
    trust: bool = False,
) -> Prediction:
    """Predict with an exported file (ONNX, TorchScript, pt2) or a run's eager model.

    :param target: an exported file, a run directory, or ``latest``.
    :param input_path: ``.csv``, ``.npy`` or ``.json`` samples; for a run trained on
        a table, a CSV/Parquet file with a header (columns matched by name); for
        one trained on images, an image file or a folder of images. Several inputs
        (a list) are all predicted, their rows in the order given.
    :returns: a Prediction: ``labels`` and ``probabilities`` (``class_names`` when
        known), or ``values``; ``.rows`` gives one dict per row.
    """
    paths = [input_path] if isinstance(input_path, (str, Path)) else list(input_path)
    if not paths:
        raise UsageError("no input given", "tk predict MODEL --input FILE")
    opened = open_target(target, runs_dir, registry, trust)
    try:
        meta = opened.meta
        x, files = model_inputs(paths, meta)  # bad input is reported before a runtime starts
        runner = opened.load(len(x))
        y = outputs(runner, x, static_batch(meta), CHUNK)
    except BaseException:
        opened.settle()  # a file that failed its integrity check: that is the error
        raise
    opened.settle()
    prediction = interpret(y, meta, opened.source, runner.name)
    prediction.files = files  # each row's image (unreadable ones skipped), else None
    return prediction


def model_inputs(
    paths: list[str | Path], meta: dict[str, Any]
) -> tuple[np.ndarray, list[str] | None]:
    """Every input read for the model (a table by column names, images, or plain
    numbers), their rows one after another, and each row's image file: relative to
    the one folder given, or under the path as given when there are several inputs
    (None when any input is not images)."""
    import numpy as np

    shape = [int(d) for d in meta["input"]["shape"][1:]]
    parts: list[np.ndarray] = []
    names: list[str] | None = []
    for path in paths:
        x, files = read_rows(path, meta)
        if x is None:
            x = read_input(path, shape, meta.get("feature_scale"))
        parts.append(x)
        if files is None or names is None:
            names = None
        elif len(paths) == 1:
            names = files
        else:
            names += [str(path)] if Path(path).is_file() else [str(Path(path) / f) for f in files]
    return (parts[0] if len(parts) == 1 else np.concatenate(parts)), names
