"""The bodies ``POST /predict`` takes, each read by ``tk predict``'s own code: JSON
records keyed by column name (or rows of numbers), a CSV body, image files in a
multipart form; and the answer ``tk predict --json`` gives."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from toolkit.errors import TkError, one_line
from toolkit.serve.wire import HTTPError, capped_stream

if TYPE_CHECKING:
    import numpy as np
    from starlette.requests import Request

    from toolkit.serve.model import ServedModel

CSV_TYPES = ("text/csv", "application/csv")
MAX_FILES = 256  # image files in one multipart request


def records_input(data: Any, model: ServedModel) -> np.ndarray:
    """``/predict``'s rows as the model's input, matched as ``tk predict`` matches files.

    A table-trained model takes records keyed by column name (a list, or
    ``{"records": [...]}``); any other model takes rows of numbers (a list, or
    ``{"inputs": [...]}``), each ``tk predict``'s JSON input.
    """
    import numpy as np

    from toolkit.predict.reading import json_rows

    inputs = model.meta.get("inputs") or {}
    if inputs.get("kind") == "table":
        import pyarrow as pa

        from toolkit.predict.tabular import table_features

        records = data.get("records") if isinstance(data, dict) else data
        if (
            not isinstance(records, list)
            or not records
            or not all(isinstance(r, dict) for r in records)
        ):
            raise HTTPError(
                400, 'a non-empty list of records keyed by column name is needed: [{"col": value}]'
            )
        try:
            table = pa.Table.from_pylist(records)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise HTTPError(400, f"records: {' '.join(str(exc).split())[:200]}") from None
        shape = model.meta["input"]["shape"]
        width = int(shape[1]) if len(shape) == 2 else None
        return table_features("request", table, inputs, width)
    shape = model.sample_shape
    x = json_rows(data, "request", math.prod(shape))
    return np.ascontiguousarray(x.reshape(len(x), *shape), dtype=np.float32)


def csv_input(body: bytes, model: ServedModel) -> np.ndarray:
    """A CSV body as the model's input, read by ``tk predict``'s own code for a CSV
    file (columns matched by name for a table-trained model, else rows of numbers);
    errors name ``request.csv`` and the row and column."""
    import tempfile
    from pathlib import Path

    from toolkit.predict import model_inputs

    if not body.strip():
        raise HTTPError(400, "empty body: CSV rows with a header line are needed")
    with tempfile.TemporaryDirectory(prefix="tk-serve-") as tmp:
        path = Path(tmp) / "request.csv"
        path.write_bytes(body)
        try:
            return model_inputs([path], model.meta)[0]
        except TkError as exc:
            raise HTTPError(400, one_line(exc).replace(f"{tmp}/", "")) from None


async def upload_input(
    request: Request, model: ServedModel, limit: int
) -> tuple[np.ndarray, list[str]]:
    """Image files from a multipart body, each decoded by ``tk predict``'s own reader
    for an image file (size, mode, resample and scale as in training); the body is
    capped like any other, and a file that is not an image, or a decompression bomb
    (refused from its header, never decoded), is a 400 naming it."""
    import asyncio

    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    inputs = model.meta.get("inputs") or {}
    if inputs.get("kind") != "image":
        raise HTTPError(
            400,
            f"model {model.name} was not trained on images: send JSON rows or a CSV body "
            "(Content-Type: text/csv)",
        )
    parser = MultiPartParser(
        request.headers, capped_stream(request, limit), max_files=MAX_FILES, max_fields=16
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise HTTPError(400, f"multipart body: {exc.message}") from None
    try:
        uploads = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not uploads:
            raise HTTPError(400, "multipart body holds no file: send images as file fields")
        named = [(u.filename or f"file {i}", await u.read()) for i, u in enumerate(uploads, 1)]
    finally:
        await form.close()
    return await asyncio.to_thread(decode_uploads, named, inputs)


def decode_uploads(
    files: list[tuple[str, bytes]], inputs: dict[str, Any]
) -> tuple[np.ndarray, list[str]]:
    """(float32 ``(N, C, H, W)``, the names) of uploaded image bytes, through
    :func:`toolkit.predict.images.read_image_rows` on each written to a private
    temporary folder (a user's name never becomes a path: only its last part, cleaned)."""
    import re
    import tempfile
    from pathlib import Path

    import numpy as np

    from toolkit.predict.images import read_image_rows

    parts, names = [], []
    with tempfile.TemporaryDirectory(prefix="tk-serve-") as tmp:
        for i, (name, data) in enumerate(files, start=1):
            base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name.replace("\\", "/")).name)
            folder = Path(tmp) / str(i)
            folder.mkdir()
            path = folder / (base.lstrip(".") or "upload")
            path.write_bytes(data)
            try:
                parts.append(read_image_rows(path, inputs)[0])
            except TkError as exc:
                text = one_line(exc).replace(f"{path}: ", "").replace(str(path), name)
                raise HTTPError(400, f"file {i} ({name!r}): {text}") from None
            names.append(name)
    return np.concatenate(parts), names


def predict_json(
    y: np.ndarray, model: ServedModel, files: list[str] | None = None
) -> dict[str, Any]:
    """The answer ``tk predict --json`` gives for these outputs (each row's file too,
    for uploaded images)."""
    import numpy as np

    from toolkit.predict.meaning import interpret

    y64 = np.asarray(y).astype(np.float64).reshape(len(y), -1)
    prediction = interpret(y64, model.meta, model.path, model.runner.name)
    prediction.files = files
    return prediction.to_json()
