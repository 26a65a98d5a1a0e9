"""The Starlette app ``tk serve`` runs: KServe v2 REST, ``/predict`` and ``/metrics``.

Every error is a JSON ``{"error": "..."}`` with its status: 400 for a request the
model cannot take (malformed JSON, unknown input, wrong shape or datatype, a bad
column or value, named by row and column), 404 for an unknown model, 413 for a
body over ``max_body`` bytes (the declared Content-Length, and the bytes actually
streamed), 500 for a runtime failure, which fails that request only.

The protocol's tensors are :mod:`toolkit.serve.v2` (Triton's binary extension
too), the bodies of ``/predict`` :mod:`toolkit.serve.bodies`, reading a body under
its cap :mod:`toolkit.serve.wire`.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from toolkit.errors import TkError, one_line
from toolkit.serve.batching import Batcher
from toolkit.serve.bodies import CSV_TYPES, csv_input, predict_json, records_input, upload_input
from toolkit.serve.v2 import infer_input, infer_response, split_binary
from toolkit.serve.wire import MAX_BODY, HTTPError, parse_json, read_body

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from toolkit.serve.model import ServedModel


def create_app(
    models: dict[str, ServedModel],
    *,
    max_batch: int = 64,
    max_delay_ms: float = 2.0,
    max_body: int = MAX_BODY,
    metrics_dir: str | None = None,
) -> Starlette:
    """The server for ``models`` (name -> ServedModel), batching each one's requests;
    ``metrics_dir``: the directory the workers of one ``--workers N`` server count in."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Route

    from toolkit.serve.access import AccessLog

    server = Server(models, max_batch, max_delay_ms / 1000, max_body, metrics_dir)

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        for b in server.batchers.values():
            b.start()
        try:
            yield
        finally:
            for b in server.batchers.values():
                await b.stop()

    e = server.endpoint
    routes = [
        Route("/v2/health/live", e("live", server.live)),
        Route("/v2/health/ready", e("ready", server.live)),
        Route("/v2/models/{name}", e("metadata", server.model_meta)),
        Route("/v2/models/{name}/ready", e("model_ready", server.model_ready)),
        Route("/v2/models/{name}/infer", e("infer", server.infer), methods=["POST"]),
        Route("/predict", e("predict", server.predict), methods=["POST"]),
        Route("/predict/{name}", e("predict", server.predict), methods=["POST"]),
        Route("/metrics", server.show_metrics),
        Route("/", e("page", server.page)),
    ]
    routes += [
        Route("/openapi.json", server.openapi_json, include_in_schema=False),
        Route("/docs", server.docs, include_in_schema=False),
    ]
    server.routes = routes
    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(AccessLog)])


class Server:
    """The handlers, the models' batchers and the Prometheus metrics of one app."""

    def __init__(
        self,
        models: dict[str, ServedModel],
        max_batch: int,
        max_delay: float,
        max_body: int,
        metrics_dir: str | None = None,
    ) -> None:
        from toolkit.serve.metrics import Metrics

        self.models = models
        self.max_body = max_body
        self._page: str | None = None
        self._schema: dict[str, Any] | None = None
        self.routes: list[Any] = []
        self.metrics = Metrics(metrics_dir)
        self.batchers = {
            name: Batcher(m, max_batch, max_delay, on_batch=self._batch_seen(name))
            for name, m in models.items()
        }

    def _batch_seen(self, name: str) -> Any:
        def seen(n: int) -> None:
            self.metrics.batch_rows.labels(name).observe(n)
            self.metrics.rows.labels(name).inc(n)

        return seen

    def endpoint(self, route: str, handler: Any) -> Any:
        """``handler`` with its errors as JSON statuses, counted and timed."""
        from starlette.requests import ClientDisconnect
        from starlette.responses import JSONResponse

        @functools.wraps(handler)  # its docstring is its OpenAPI operation
        async def wrapped(request: Request) -> Response:
            start = time.perf_counter()
            try:
                response = await handler(request)
            except HTTPError as exc:
                response = JSONResponse({"error": str(exc)}, status_code=exc.status)
            except TkError as exc:  # predict's own refusals: a bad row, column, value
                response = JSONResponse({"error": one_line(exc)}, status_code=400)
            except ClientDisconnect:
                # Nobody reads this answer; 499 (nginx's "client closed request")
                # counts it apart from the server's own failures.
                response = JSONResponse({"error": "client disconnected"}, status_code=499)
            except Exception as exc:  # the runtime failed this request; the server goes on
                text = one_line(exc)
                response = JSONResponse({"error": f"runtime error: {text}"}, status_code=500)
            self.metrics.requests.labels(route, str(response.status_code)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            return response

        return wrapped

    def model_of(self, request: Request) -> ServedModel:
        """The model the URL names (404 when none is served by that name)."""
        name = request.path_params.get("name")
        if name is None:  # /predict: the one model served
            if len(self.models) != 1:
                served = ", ".join(self.models)
                raise HTTPError(404, f"several models served: POST /predict/NAME ({served})")
            return next(iter(self.models.values()))
        if name not in self.models:
            raise HTTPError(404, f"unknown model {name!r} (served: {', '.join(self.models)})")
        return self.models[name]

    async def live(self, request: Request) -> Response:
        """Health: the models were loaded before the server listened, so live is ready.

        ---
        summary: v2 server liveness and readiness
        responses:
          "200": {description: live and ready}
        """
        from starlette.responses import JSONResponse

        return JSONResponse({"live": True, "ready": True})

    async def model_meta(self, request: Request) -> Response:
        """v2 model metadata.

        ---
        summary: v2 model metadata (tensors, and tk's task, class names, inputs)
        responses:
          "200":
            description: the model's metadata
            content: {application/json: {schema: {$ref: "#/components/schemas/ModelMetadata"}}}
          "404": {description: no model of that name}
        """
        from starlette.responses import JSONResponse

        return JSONResponse(self.model_of(request).metadata())

    async def model_ready(self, request: Request) -> Response:
        """v2 model readiness.

        ---
        summary: v2 model readiness
        responses:
          "200": {description: the model is ready}
          "404": {description: no model of that name}
        """
        from starlette.responses import JSONResponse

        return JSONResponse({"name": self.model_of(request).name, "ready": True})

    async def infer(self, request: Request) -> Response:
        """v2 infer: typed tensors in, the model's outputs back, batched with others.

        ---
        summary: v2 inference (Open Inference Protocol; Triton's binary extension too)
        requestBody:
          required: true
          content:
            application/json: {schema: {$ref: "#/components/schemas/InferRequest"}}
            application/octet-stream:
              schema: {type: string, format: binary}
        responses:
          "200":
            description: the outputs
            content: {application/json: {schema: {$ref: "#/components/schemas/InferResponse"}}}
          "400": {description: "a bad tensor (name, shape, datatype, data)"}
          "404": {description: no model of that name}
          "413": {description: body over the size limit}
          "500": {description: the runtime failed this request's batch}
        """
        model = self.model_of(request)
        body = await read_body(request, self.max_body)
        header, binary = split_binary(request, body)
        payload = parse_json(header)
        x = infer_input(payload, binary, model)
        ys = await self.batchers[model.name].submit(x)
        return infer_response(payload, ys, model)

    async def predict(self, request: Request) -> Response:
        """Records or rows of numbers (JSON), a CSV body, or image files (multipart) in,
        ``tk predict --json``'s answer back.

        ---
        summary: predict, answered as tk predict --json
        description: >-
          Rows matched as tk predict matches files: JSON records keyed by column name
          (table-trained models) or rows of numbers, a CSV body with a header, or image
          files as multipart/form-data (image-trained models).
        requestBody:
          required: true
          content:
            application/json:
              schema: {type: array, items: {}}
            text/csv:
              schema: {type: string}
            multipart/form-data:
              schema:
                type: object
                properties:
                  file: {type: array, items: {type: string, format: binary}}
        responses:
          "200":
            description: labels, class names and probabilities, or values
            content: {application/json: {schema: {$ref: "#/components/schemas/Prediction"}}}
          "400":
            description: a bad row, column, value or file, named
            content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}
          "404": {description: "no model of that name, or several served (use /predict/NAME)"}
          "413": {description: body over the size limit}
          "500": {description: the runtime failed this request's batch}
        """
        import asyncio

        from starlette.responses import JSONResponse

        model = self.model_of(request)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        files = None
        if media == "multipart/form-data":
            x, files = await upload_input(request, model, self.max_body)
        elif media in CSV_TYPES:
            body = await read_body(request, self.max_body)
            # tk predict's reader works on files: a temporary one, in a thread.
            x = await asyncio.to_thread(csv_input, body, model)
        else:
            body = await read_body(request, self.max_body)
            x = records_input(parse_json(body), model)
        ys = await self.batchers[model.name].submit(x)
        return JSONResponse(predict_json(ys[0], model, files))

    async def page(self, request: Request) -> Response:
        """The HTML page for people: each model's card and a form to try it.

        ---
        summary: a page for people (each model's card, and a form to try it)
        responses:
          "200": {description: an HTML page, content: {text/html: {schema: {type: string}}}}
        """
        from starlette.responses import HTMLResponse

        from toolkit.serve.page import render_page

        if self._page is None:
            self._page = render_page(self.models)
        return HTMLResponse(self._page)

    def schema(self) -> dict[str, Any]:
        """The OpenAPI document of this app (built once, from the handlers' docstrings)."""
        from toolkit.serve.openapi import build_schema

        if self._schema is None:
            self._schema = build_schema(self.routes)
        return self._schema

    async def openapi_json(self, request: Request) -> Response:
        """The OpenAPI document."""
        from starlette.responses import JSONResponse

        return JSONResponse(self.schema())

    async def docs(self, request: Request) -> Response:
        """The OpenAPI document as a plain HTML page."""
        from starlette.responses import HTMLResponse

        from toolkit.serve.openapi import render_docs

        return HTMLResponse(render_docs(self.schema()))

    async def show_metrics(self, request: Request) -> Response:
        """Prometheus text format.

        ---
        summary: Prometheus metrics (requests, latency, batch sizes, rows)
        responses:
          "200":
            description: Prometheus text format
            content: {text/plain: {schema: {type: string}}}
        """
        from prometheus_client import CONTENT_TYPE_LATEST
        from starlette.responses import Response

        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
