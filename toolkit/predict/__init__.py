"""Run an exported file (or a run's eager model) on user data and say what it means.

``predict(target, input)``: ``target`` is an exported file (ONNX, TorchScript, pt2),
a run directory or ``latest``, opened by :mod:`toolkit.predict.loading`; the input
is read by :mod:`toolkit.predict.reading`, the outputs turned into labels,
probabilities or values by :mod:`toolkit.predict.meaning`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.formats import static_batch
from toolkit.predict.loading import Opened, open_target
from toolkit.predict.meaning import Prediction, interpret
from toolkit.predict.reading import read_input
from toolkit.predict.tabular import read_for_model
from toolkit.verify.heldout import outputs

if TYPE_CHECKING:
    from toolkit.registry import Registry

__all__ = ["CHUNK", "Opened", "Prediction", "interpret", "open_target", "predict", "read_input"]

CHUNK = 4096  # rows per call into the runtime


def predict(
    target: str | Path,
    input_path: str | Path,
    *,
    runs_dir: str | Path = "runs",
    registry: Registry | None = None,
    trust: bool = False,
) -> Prediction:
    """Predict with an exported file (ONNX, TorchScript, pt2) or a run's eager model.

    :param target: an exported file, a run directory, or ``latest``.
    :param input_path: ``.csv``, ``.npy`` or ``.json`` samples; for a run trained on
        a table, a CSV/Parquet file with a header (columns matched by name); for
        one trained on images, an image file or a folder of images.
    :returns: a Prediction: ``labels`` and ``probabilities`` (``class_names`` when
        known), or ``values``; ``.rows`` gives one dict per row.
    """
    opened = open_target(target, runs_dir, registry, trust)
    try:
        meta = opened.meta
        shape = [int(d) for d in meta["input"]["shape"][1:]]
        x = read_for_model(input_path, meta)  # a table by column names, or image files
        if x is None:
            x = read_input(input_path, shape, meta.get("feature_scale"))
        runner = opened.load(len(x))  # only now: bad input is reported before a runtime starts
        y = outputs(runner, x, static_batch(meta), CHUNK)
    except BaseException:
        opened.settle()  # a file that failed its integrity check: that is the error
        raise
    opened.settle()
    prediction = interpret(y, meta, opened.source, runner.name)
    if (meta.get("inputs") or {}).get("kind") == "image":
        prediction.files = _image_names(Path(input_path))
    return prediction


def _image_names(path: Path) -> list[str] | None:
    """Each row's image file (relative to the folder given), or None for array input."""
    from toolkit.predict.images import image_files
    from toolkit.predict.tabular import ARRAY_SUFFIXES, TABLE_SUFFIXES

    if path.is_file() and path.suffix.lower() in ARRAY_SUFFIXES + TABLE_SUFFIXES:
        return None
    base = path if path.is_dir() else path.parent
    return [str(f.relative_to(base)) for f in image_files(path)]
