"""The ``inputs`` schema: how ``tk predict`` (and ``tk serve``) turn a user's file into
model input, as a dataset plugin declares it in ``DataInfo.inputs``.

Two kinds exist, one class each: :class:`TableInputs` (CSV/Parquet columns, their
categories and fill values) and :class:`ImageInputs` (size, colour mode, resize
filter, scale). The run records ``to_json()`` in ``config.json`` and every exported
file carries it; the readers read that JSON. A plugin builds the typed object, so a
misspelt key or a wrong kind is an error when the dataset loads, not a silent
``tk predict`` that ignores it. The module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from toolkit.errors import PluginError

COLUMN_KINDS = ("number", "category")
TABLE_FORMATS = ("csv", "parquet", "npz")
TABLE_LAYOUTS = ("header", "sklearn", "none")
IMAGE_MODES = ("RGB", "L")


@dataclass(frozen=True)
class TableColumn:
    """One input column of a table.

    :param name: the column's header (or position, for a file without one).
    :param kind: ``"number"`` (one feature) or ``"category"`` (one-hot, one feature
        per category, in ``categories`` order).
    :param categories: the categories seen in training (``category`` columns).
    :param missing: the category an empty cell stands for, when it was one.
    """

    name: str
    kind: str
    categories: Sequence[str] = ()
    missing: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", tuple(self.categories))  # frozen: compare by value
        if self.kind not in COLUMN_KINDS:
            raise PluginError(
                f"inputs column '{self.name}': kind must be one of {', '.join(COLUMN_KINDS)}, "
                f"got {self.kind!r}"
            )
        if self.kind == "category" and not self.categories:
            raise PluginError(f"inputs column '{self.name}': a category column needs categories")

    def to_json(self) -> dict[str, Any]:
        """The column as recorded in the run (``categories`` only for categories)."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "category":
            out["categories"] = list(self.categories)
        if self.missing is not None:
            out["missing"] = self.missing
        return out


@dataclass(frozen=True)
class TableInputs:
    """A table's columns, read by name from a user's CSV or Parquet file.

    :param columns: the input columns, in feature order.
    :param format: the training file's format (``csv``, ``parquet``, ``npz``).
    :param layout: how its first lines read: ``header``, ``sklearn`` (a count line
        first) or ``none`` (columns by position).
    :param target: the target column, ignored when a user's file has it.
    :param fill: column -> the value a missing cell gets (training rows' statistics).
    """

    kind: ClassVar[str] = "table"
    columns: Sequence[TableColumn]
    format: str = "csv"
    layout: str = "header"
    target: str | None = None
    fill: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        if not self.columns:
            raise PluginError("inputs: a table needs at least one column")
        if self.format not in TABLE_FORMATS:
            raise PluginError(f"inputs: format must be one of {', '.join(TABLE_FORMATS)}")
        if self.layout not in TABLE_LAYOUTS:
            raise PluginError(f"inputs: layout must be one of {', '.join(TABLE_LAYOUTS)}")

    def to_json(self) -> dict[str, Any]:
        """The JSON the run records and ``tk predict`` reads."""
        out = {
            "kind": self.kind,
            "format": self.format,
            "layout": self.layout,
            "target": self.target,
            "columns": [c.to_json() for c in self.columns],
        }
        if self.fill:
            out["fill"] = dict(self.fill)
        return out


@dataclass(frozen=True)
class ImageInputs:
    """Image files decoded the way training decoded them.

    :param size: ``(height, width)`` every image is resized to.
    :param mode: ``"RGB"`` (3 channels) or ``"L"`` (grey, 1 channel).
    :param resample: the resize filter (Pillow's name, e.g. ``"bilinear"``).
    :param scale: what each 0-255 pixel is multiplied by.
    """

    kind: ClassVar[str] = "image"
    size: Sequence[int]
    mode: str = "RGB"
    resample: str = "bilinear"
    scale: float = 1 / 255

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(self.size))
        if len(self.size) != 2 or any(int(d) < 1 for d in self.size):
            raise PluginError(f"inputs: size must be (height, width), got {list(self.size)}")
        if self.mode not in IMAGE_MODES:
            raise PluginError(f"inputs: mode must be one of {', '.join(IMAGE_MODES)}")

    def to_json(self) -> dict[str, Any]:
        """The JSON the run records and ``tk predict`` reads."""
        return {
            "kind": self.kind,
            "size": [int(d) for d in self.size],
            "mode": self.mode,
            "resample": self.resample,
            "scale": self.scale,
        }


Inputs = TableInputs | ImageInputs


def inputs_json(value: Inputs | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the run records for ``DataInfo.inputs``: a typed schema's JSON; a plain
    mapping (the older, untyped form) is recorded as it is."""
    if isinstance(value, (TableInputs, ImageInputs)):
        return value.to_json()
    return None if value is None else dict(value)


def read_inputs(data: Mapping[str, Any]) -> Inputs:
    """The typed schema of recorded ``inputs`` JSON (a PluginError names what is wrong)."""
    data = dict(data)
    kind = data.pop("kind", None)
    try:
        if kind == "table":
            cols = [TableColumn(**c) for c in data.pop("columns", [])]
            return TableInputs(columns=cols, **data)
        if kind == "image":
            return ImageInputs(**data)
    except TypeError as exc:  # an unknown or missing key
        raise PluginError(f"inputs ({kind}): {exc}") from None
    raise PluginError(f"inputs: kind must be 'table' or 'image', got {kind!r}")
