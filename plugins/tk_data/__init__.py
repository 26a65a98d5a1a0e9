"""Built-in plugin: your own data, no Python: ``csv`` (also Parquet, .npz) and ``imagefolder``.

    tk train mlp --dataset csv --data-param path=wine.csv target=class
    tk train cnn --dataset imagefolder --data-param path=photos/ size=64x64

Both datasets leave the feature shape and the task to the loader, which infers
them from the file (a ``DataInfo`` next to the splits). This module only declares
them: pyarrow, PIL, numpy and torch are imported when a loader runs, so ``tk list``
stays fast.
"""

from __future__ import annotations

from typing import Any

from toolkit import DatasetSpec, Param, hookimpl

TASK_CHOICES = ("auto", "binary", "multiclass", "regression")


def load_csv(**params: Any) -> dict[str, Any]:
    """The ``csv`` loader (see :func:`tk_data.tabular.load_csv`)."""
    from tk_data.tabular import load_csv as load

    return load(**params)


def load_imagefolder(**params: Any) -> dict[str, Any]:
    """The ``imagefolder`` loader (see :func:`tk_data.images.load_imagefolder`)."""
    from tk_data.images import load_imagefolder as load

    return load(**params)


def _common() -> list[Param]:
    return [
        Param("test_fraction", float, 0.2, "rows held out for the test (stratified by class)"),
        Param("seed", int, 0, "seed of the test split"),
    ]


CSV_PARAMS = [
    Param("path", str, "", "the file: .csv/.tsv (also .gz), .parquet, or .npz", path=True),
    Param("target", str, "", "the column to predict (an .npz: its y array)"),
    Param("features", str, "", "comma-separated input columns (default: all but the target)"),
    Param("task", str, "auto", "auto: classes from integer/text targets", choices=TASK_CHOICES),
    *_common(),
    Param(
        "fillna",
        str,
        "none",
        "none: refuse missing values; mean: training-row means (text: its most frequent value)",
        choices=("none", "mean"),
    ),
    Param(
        "fillna_text",
        str,
        "auto",
        "missing text: auto (as fillna), none (refuse), mode (most frequent training value), "
        "missing (a category of its own)",
        choices=("auto", "none", "mode", "missing"),
    ),
    Param(
        "drop_missing_target",
        bool,
        False,
        "drop the rows whose target is missing (counted in the run's notes)",
    ),
    Param(
        "header",
        str,
        "auto",
        "auto: a header line, scikit-learn's layout, or none",
        choices=("auto", "none"),
    ),
    Param("standardize", bool, True, "standardize numbers with training-row statistics"),
]

IMAGE_PARAMS = [
    Param("path", str, "", "DIR/<class>/<image>, or DIR/train|val|test/<class>/<image>", path=True),
    Param("size", str, "", "HxW to resize to (default: the first image's size)"),
    Param("grayscale", bool, False, "one channel (L) instead of RGB"),
    *_common(),
    Param("max_memory_mb", int, 1024, "decode into memory up to this many MB, else stream"),
    Param(
        "check",
        str,
        "auto",
        "auto: verify() streamed files; full: decode them too",
        choices=("auto", "full"),
    ),
    Param("decode_workers", int, 0, "processes decoding at load time (0: one per core)"),
]


@hookimpl
def tk_register_datasets(register):
    """``csv`` and ``imagefolder``: shape, task and classes inferred from the data."""
    register(
        DatasetSpec(
            name="csv",
            load=load_csv,
            params=CSV_PARAMS,
            description="a CSV/Parquet/npz file: path=FILE target=COLUMN (task inferred)",
        )
    )
    register(
        DatasetSpec(
            name="imagefolder",
            load=load_imagefolder,
            params=IMAGE_PARAMS,
            # val is optional: a val/ folder is used as it is, else tk carves one.
            splits=("train", "val", "test"),
            description="a folder of class folders of images: path=DIR [size=HxW]",
        )
    )
