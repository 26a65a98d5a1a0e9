"""Serving past one process: ``tk export --triton-repo`` (checked with Triton's own
config schema from tritonclient) and ``tk serve --workers N``."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import tk_main
from google.protobuf import text_format
from test_serve import infer_body, start_server
from tritonclient.grpc import model_config_pb2 as triton_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A digits-mlp run trained by tk's own command (one epoch: answers, not accuracy)."""
    root = tmp_path_factory.mktemp("serveops")
    assert tk_main("train", "digits-mlp", "--epochs", "1", "--runs-dir", str(root / "runs"),
                   "--name", "d", "--threads", "1") == 0  # fmt: skip
    return root / "runs" / "digits-mlp" / "d"


@pytest.fixture(scope="module")
def repo(run):
    """``tk export RUN --triton-repo DIR``: the repository, its ONNX file verified."""
    repo = run.parent.parent.parent / "repo"
    assert tk_main("export", str(run), "--triton-repo", str(repo)) == 0
    return repo


def test_triton_repo_config_matches_the_onnx_graph(run, repo, capsys):
    import torch

    from toolkit.models import rebuild_model
    from toolkit.runs import open_run

    base = repo / "digits-mlp"
    config = text_format.Parse((base / "config.pbtxt").read_text(), triton_config.ModelConfig())
    graph = onnx.load(str(base / "1" / "model.onnx")).graph
    assert config.name == "digits-mlp" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 64 and config.HasField("dynamic_batching")
    for declared, value in [(config.input, graph.input), (config.output, graph.output)]:
        assert [t.name for t in declared] == [v.name for v in value]
        for t, v in zip(declared, value, strict=True):
            elem = onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type)
            assert triton_config.DataType.Name(t.data_type) == {"FLOAT": "TYPE_FP32"}[elem]
            dims = [d.dim_value if d.HasField("dim_value") else -1
                    for d in v.type.tensor_type.shape.dim]  # fmt: skip
            assert dims[0] == -1 and list(t.dims) == dims[1:]  # the batch is Triton's
    assert [t.name for t in config.input] == ["image"] and list(config.input[0].dims) == [1, 8, 8]
    assert config.output[0].label_filename == "labels.txt"
    assert (base / "labels.txt").read_text().split("\n")[:-1] == [str(i) for i in range(10)]
    # The file in the repository gives the eager model's answers.
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    session = ort.InferenceSession(
        str(base / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    got = session.run(None, {"image": x})[0]
    with torch.no_grad():
        want = rebuild_model(open_run(run)).eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # No silent overwrite: the same rules as tk export, nothing touched when refused.
    before = {p: p.stat().st_mtime_ns for p in base.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert tk_main("export", str(run), "--triton-repo", str(repo)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.pbtxt already exists" in err and "--overwrite" in err
    assert {p: p.stat().st_mtime_ns for p in base.rglob("*") if p.is_file()} == before
    assert tk_main("export", str(run), "--triton-repo", str(repo), "--format", "pt2") == 2
    assert "--triton-repo writes an ONNX file only" in capsys.readouterr().err
    # --overwrite replaces tk's own files only: a hand-written config stays.
    (repo / "mine").mkdir()
    (repo / "mine" / "config.pbtxt").write_text('name: "mine"\n')
    args = ("export", str(run), "--triton-repo", str(repo), "--triton-name", "mine", "--overwrite")
    assert tk_main(*args) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (repo / "mine" / "config.pbtxt").read_text() == 'name: "mine"\n'


def workers(text: str) -> set[str]:
    """The live workers' pids one /metrics scrape names."""
    return set(re.findall(r'^tk_serve_worker\{pid="(\d+)"\} 1.0$', text, re.M))


def sample(text: str, name: str) -> float | None:
    """One sample's value in a /metrics text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def test_two_workers_answer_on_one_port_and_drain_on_sigterm(repo, tmp_path):
    model = repo / "digits-mlp" / "1" / "model.onnx"
    # A 1 s batching window holds a request inside a worker when SIGTERM arrives.
    proc, url = start_server(str(model), "--workers", "2", "--max-delay-ms", "1000",
                             log=tmp_path / "log")  # fmt: skip
    deadline = time.time() + 60
    while len(workers(text := httpx.get(f"{url}/metrics").text)) < 2:  # both started
        assert time.time() < deadline, text
    pids = workers(text)
    assert len(pids) == 2 and str(proc.pid) not in pids
    rss = re.findall(r'^tk_serve_worker_resident_memory_bytes\{pid="(\d+)"\} (\S+)$', text, re.M)
    assert {p for p, _ in rss} == pids and all(float(v) > 20e6 for _, v in rss)
    # Each request a new connection, answered by whichever worker the kernel picks:
    # any one scrape counts them all (the workers share their counts).
    health = 'tk_serve_requests_total{route="live",status="200"}'
    for _ in range(40):
        assert httpx.get(f"{url}/v2/health/live").status_code == 200
    for _ in range(6):
        assert sample(httpx.get(f"{url}/metrics").text, health) == 40.0
    # A worker killed outright is replaced; it leaves the live list, its counts stay.
    gone = min(pids)
    os.kill(int(gone), signal.SIGKILL)
    while gone in (now := workers(text := httpx.get(f"{url}/metrics").text)) or len(now) < 2:
        assert time.time() < deadline + 60, text
    assert sample(text, health) == 40.0 and len(now - pids) == 1
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    answer: list = []
    sender = threading.Thread(
        target=lambda: answer.append(
            httpx.post(f"{url}/v2/models/model/infer", json=infer_body(x), timeout=30)
        )
    )
    sender.start()
    time.sleep(0.4)  # the request is waiting in a worker's batcher
    proc.send_signal(signal.SIGTERM)
    sender.join()
    assert proc.wait(30) == 0
    (r,) = answer
    assert r.status_code == 200
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    want = session.run(None, {"image": x})[0]
    np.testing.assert_allclose(np.reshape(r.json()["outputs"][0]["data"], (3, 10)), want, atol=1e-5)
    log = (tmp_path / "log").read_text()
    assert log.count("Finished server process") == 2  # both workers shut down cleanly


def test_a_lone_request_skips_the_window_and_batches_equal_unbatched(repo):
    import asyncio

    from toolkit.serve.batching import Batcher
    from toolkit.serve.model import load_models

    (model,) = load_models([str(repo / "digits-mlp" / "1" / "model.onnx")]).values()
    x = np.random.default_rng(3).random((8, 1, 8, 8), dtype=np.float32)
    alone = [model.run(x[i : i + 1])[0] for i in range(8)]
    sizes: list[int] = []

    async def scenario() -> tuple[list[float], list]:
        batcher = Batcher(model, max_batch=64, max_delay=0.5, on_batch=sizes.append)
        batcher.start()
        loop = asyncio.get_running_loop()
        waits = []
        try:
            for i in range(3):  # one at a time: after the first, none waits the 0.5 s window
                start = loop.time()
                await batcher.submit(x[i : i + 1])
                waits.append(loop.time() - start)
            together = await asyncio.gather(*(batcher.submit(x[i : i + 1]) for i in range(8)))
        finally:
            await batcher.stop()
        return waits, together

    waits, together = asyncio.run(scenario())
    assert waits[0] >= 0.45  # nothing known yet: the first waits for company
    assert max(waits[1:]) < 0.25, waits  # clients one at a time: no window
    assert sizes[:3] == [1, 1, 1] and sizes[3] > 1  # overlapping requests still batch
    for a, (b,) in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)  # identical, not close


def test_triton_config_of_a_static_batch_graph(tmp_path):
    from onnx import TensorProto, helper

    from toolkit.serve.triton import triton_config as config_of

    # A graph with a fixed batch of 4 and a free feature dim: Triton must not batch it.
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [4, "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [4, "n"])],
    )
    path = tmp_path / "static.onnx"
    onnx.save(helper.make_model(graph), str(path))
    text, labels = config_of(path, "static")
    config = text_format.Parse(text, triton_config.ModelConfig())
    assert labels is None and config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")
    assert [list(t.dims) for t in (*config.input, *config.output)] == [[4, -1], [4, -1]]
    assert triton_config.DataType.Name(config.input[0].data_type) == "TYPE_FP16"
