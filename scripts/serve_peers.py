"""The servers ``scripts/bench_serve.py`` measures tk serve against, one per process.

python scripts/serve_peers.py constant PORT
    a Starlette endpoint on uvicorn (the stack tk serve runs on, configured as tk
    serve configures it) that reads the body and answers a constant JSON: the
    ceiling of the stack.
python scripts/serve_peers.py litserve FILE PORT MAX_BATCH
    LitServe serving the ONNX FILE with onnxruntime (tk's session options), on
    the same v2 JSON bodies, batching up to MAX_BATCH rows (1: no batching).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ANSWER = {"model_name": "model", "outputs": [{"name": "logits", "shape": [1, 1],
          "datatype": "FP32", "data": [0.5]}]}  # fmt: skip


def constant(port: int) -> None:
    """The constant-answer ceiling: same uvicorn config as tk serve (access log on)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def answer(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse(ANSWER)

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    app = Starlette(routes=[Route("/infer", answer, methods=["POST"]), Route("/live", live)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info", access_log=True)


try:  # the peer is optional: pip install litserve
    import litserve as ls
except ImportError:
    ls = None

if ls is not None:
    # At module level: LitServe spawns its inference worker, which unpickles the API.

    class OnnxAPI(ls.LitAPI):
        """The ONNX file on onnxruntime, v2 JSON bodies in and out."""

        def __init__(self, path: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.path = path

        def setup(self, device: Any) -> None:
            import onnxruntime as ort

            from toolkit.formats.runtime import session_options

            self.session = ort.InferenceSession(
                self.path, sess_options=session_options(), providers=["CPUExecutionProvider"]
            )
            self.input = self.session.get_inputs()[0].name

        def decode_request(self, request):  # unannotated: LitServe reads the annotation
            import numpy as np

            t = request["inputs"][0]
            return np.asarray(t["data"], np.float32).reshape(t["shape"])

        def batch(self, inputs: list[Any]) -> Any:
            import numpy as np

            return np.concatenate(inputs)

        def predict(self, x: Any) -> Any:
            return self.session.run(None, {self.input: x})[0]

        def unbatch(self, y: Any) -> list[Any]:
            return [y[i : i + 1] for i in range(len(y))]  # one row per request

        def encode_response(self, y: Any) -> dict[str, Any]:
            out = {"name": "logits", "shape": list(y.shape), "datatype": "FP32",
                   "data": y.reshape(-1).tolist()}  # fmt: skip
            return {"model_name": "model", "outputs": [out]}


def litserve(path: str, port: int, max_batch: int) -> None:
    """LitServe on onnxruntime, batching up to ``max_batch`` rows within 2 ms."""
    timeout = 0.002 if max_batch > 1 else 0.0
    api = OnnxAPI(path, max_batch_size=max_batch, batch_timeout=timeout)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=port, generate_client_file=False, num_api_servers=1)


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "constant":
        constant(int(sys.argv[2]))
    else:
        litserve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
