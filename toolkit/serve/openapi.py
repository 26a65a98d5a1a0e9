"""``GET /openapi.json`` and ``GET /docs``: the server's OpenAPI document, and a page of it.

The paths come from Starlette's :class:`~starlette.schemas.SchemaGenerator`: each
route's handler carries its operation as YAML after ``---`` in its docstring, so an
endpoint and its description sit together. The shared parts (the v2 tensors, the
``/predict`` answer, the error) are components here. ``/docs`` is one self-contained
HTML page listing every operation (no Swagger UI bundle fetched from a CDN).
"""

from __future__ import annotations

from html import escape
from typing import Any

from toolkit import __version__
from toolkit.serve.model import V2_TYPES

ERROR = {"$ref": "#/components/schemas/Error"}

BASE: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "tk serve",
        "version": __version__,
        "description": (
            "Verified tk exports behind HTTP: the Open Inference Protocol (KServe v2 "
            "REST) and POST /predict, answered as `tk predict --json`."
        ),
    },
    "components": {
        "parameters": {
            "ModelName": {
                "name": "name",
                "in": "path",
                "required": True,
                "description": "The model's name: its file's stem.",
                "schema": {"type": "string"},
            }
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {"type": "string", "description": "What was refused, one line."}
                },
            },
            "Tensor": {
                "type": "object",
                "required": ["name", "shape", "datatype"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "datatype": {"type": "string", "enum": list(V2_TYPES)},
                    "data": {"type": "array", "items": {}},
                    "parameters": {"type": "object"},
                },
            },
            "InferRequest": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}},
                    "outputs": {"type": "array", "items": {"type": "object"}},
                    "parameters": {"type": "object"},
                },
            },
            "InferResponse": {
                "type": "object",
                "required": ["model_name", "outputs"],
                "properties": {
                    "id": {"type": "string"},
                    "model_name": {"type": "string"},
                    "model_version": {"type": "string"},
                    "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}},
                },
            },
            "ModelMetadata": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "versions": {"type": "array", "items": {"type": "string"}},
                    "platform": {"type": "string"},
                    "inputs": {"type": "array", "items": {"type": "object"}},
                    "outputs": {"type": "array", "items": {"type": "object"}},
                    "parameters": {"type": "object"},
                },
            },
            "Prediction": {
                "type": "object",
                "description": "The answer of `tk predict --json`.",
                "properties": {
                    "source": {"type": "string"},
                    "runtime": {"type": "string"},
                    "task": {"type": "string"},
                    "predictions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "row": {"type": "integer"},
                                "label": {"type": "integer"},
                                "class": {"type": "string"},
                                "probability": {"type": "number"},
                                "probabilities": {"type": "array", "items": {"type": "number"}},
                                "values": {"type": "array", "items": {"type": "number"}},
                                "file": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def build_schema(routes: list[Any]) -> dict[str, Any]:
    """The OpenAPI document for ``routes`` (their handlers' docstrings, and BASE)."""
    import copy

    from starlette.schemas import SchemaGenerator

    schema = SchemaGenerator(copy.deepcopy(BASE)).get_schema(routes)
    # One handler serves /predict and /predict/{name}: the path parameter is declared
    # where the path has it, for every operation (OpenAPI requires it there).
    for path, operations in schema["paths"].items():
        if "{name}" in path:
            for op in operations.values():
                params = op.setdefault("parameters", [])
                if not any(p.get("name") == "name" for p in params if isinstance(p, dict)):
                    params.insert(0, {"$ref": "#/components/parameters/ModelName"})
    return schema


def render_docs(schema: dict[str, Any]) -> str:
    """A plain HTML page listing each operation of ``schema``."""
    items = []
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            bodies = ", ".join((op.get("requestBody") or {}).get("content", {}))
            codes = ", ".join(
                f"{code} {escape(str(r.get('description', '')))}"
                for code, r in (op.get("responses") or {}).items()
            )
            body = f"<dd><b>body</b> {escape(bodies)}</dd>" if bodies else ""
            items.append(
                f'<dt><span class="m">{method.upper()}</span> <code>{escape(path)}</code>'
                f" {escape(op.get('summary', ''))}</dt>"
                f"<dd>{escape(op.get('description', ''))}</dd>{body}"
                f"<dd><b>answers</b> {codes}</dd>"
            )
    info = schema["info"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(info["title"])} API</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; max-width: 52rem; margin: 1.5rem auto;
  padding: 0 1.5rem; color: #1d2330; }}
dt {{ margin-top: 1rem; font-weight: 600; }} dd {{ margin-left: 1.5rem; font-size: .9rem; }}
.m {{ display: inline-block; min-width: 3.5rem; color: #2764d8; }}
code {{ background: #eef1f5; padding: 0 .25rem; border-radius: 3px; }}
</style></head><body>
<h1>{escape(info["title"])} {escape(info["version"])}</h1>
<p>{escape(info["description"])} The machine-readable document:
<a href="/openapi.json">/openapi.json</a> (OpenAPI {escape(schema["openapi"])}).
A person's page: <a href="/">/</a>.</p>
<dl>{"".join(items)}</dl>
</body></html>
"""
