"""`tk serve`: a real server (uvicorn, in a subprocess) on a digits-mlp export made by
`tk train` + `tk export`, driven by Triton's own client and plain HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from conftest import REPO, run_tk, tk_main

MAX_BODY_MB = 0.25  # small enough that a test body crosses it cheaply


def start_server(
    *args: str, log: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    """``tk serve ARGS --port 0`` (the system picks a free port, the server says which);
    returns once /v2/health/ready answers. Its log goes to ``log``: a pipe nobody reads
    would fill with access-log lines and stall the server."""
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "toolkit", "serve", *args, "--port", "0"],
            cwd=REPO,
            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
            stdout=err,  # the access log
            stderr=err,
        )
    deadline = time.monotonic() + 60
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"tk serve exited {proc.returncode}: {log.read_text()}")
        if url is None:
            found = re.search(r"serving .* on (http://\S+) ", log.read_text())
            url = found.group(1) if found else None
        try:
            if url and httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.kill()
    pytest.fail("tk serve did not become ready in 60 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def table_model(root: Path, runs: Path, fillna: str = "none") -> Path:
    """An mlp trained by ``tk train`` on a CSV of two numbers and a text column
    (``size,color,weight`` -> ``kind``), exported to ``runs/mlp/t/table.onnx``;
    ``fillna=mean`` records the training means that fill a gap."""
    rng = np.random.default_rng(1)
    size, weight = rng.normal(10, 3, 300).round(3), rng.normal(50, 20, 300).round(2)
    color = rng.choice(["blue", "green", "red"], 300)
    kind = np.where(size / 10 + (color == "red") - weight / 80 > 0.6, "keep", "drop")
    csv = root / "train.csv"
    rows = zip(size, color, weight, kind, strict=True)
    csv.write_text(
        "size,color,weight,kind\n" + "".join(f"{a},{b},{c},{d}\n" for a, b, c, d in rows)
    )
    assert tk_main("train", "mlp", "--dataset", "csv", "--data-param", f"path={csv}",
                   "--data-param", "target=kind", "--data-param", f"fillna={fillna}",
                   "--epochs", "2", "--runs-dir", str(runs),
                   "--name", "t", "--threads", "1") == 0  # fmt: skip
    table = runs / "mlp" / "t" / "table.onnx"
    assert tk_main("export", str(table.parent), "--format", "onnx", "--out", str(table)) == 0
    return table


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A digits-mlp run trained and exported (ONNX, TorchScript) by tk's own commands,
    its ONNX file served with a 20 ms batching window and a small body limit."""
    root = tmp_path_factory.mktemp("serve")
    runs = root / "runs"
    assert tk_main("train", "digits-mlp", "--epochs", "1", "--runs-dir", str(runs),
                   "--name", "d", "--threads", "1") == 0  # fmt: skip
    run = runs / "digits-mlp" / "d"
    assert tk_main("export", str(run), "--format", "onnx") == 0
    onnx_file = run / "model.onnx"
    # A model trained on a CSV (a text column one-hot): /predict's records by column name.
    table = table_model(root, runs)
    rng = np.random.default_rng(0)
    x = rng.random((16, 1, 8, 8), dtype=np.float32)  # digits scaled to [0, 1], as training
    proc, url = start_server(
        str(onnx_file), str(table), "--max-delay-ms", "20", "--max-body-mb", str(MAX_BODY_MB),
        log=root / "serve.log",
    )  # fmt: skip
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    yield {
        "root": root,
        "run": run,
        "onnx": onnx_file,
        "table": table,
        "x": x,
        "ort": session.run(None, {"image": x})[0],
        "url": url,
        "log": root / "serve.log",
    }
    stop(proc)


def metric(url: str, name: str) -> float:
    """One sample's value from /metrics (0 when it has not been recorded yet)."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_one_access_line_per_request_with_its_status(served):
    url, log = served["url"], served["log"]
    with httpx.Client() as client:
        answers = [client.get(f"{url}/v2/health/ready?probe=access{i}") for i in range(3)]
        answers.append(client.post(f"{url}/predict/no-access-model", json=[[0.0] * 64]))
        # A path whose decoded form holds a line break and a quote: a forged log line.
        forged = '/access%0AINFO:%20%20%20%20%201.2.3.4:1%20-%20%22GET%20/admin"'
        answers.append(client.get(httpx.URL(url + forged)))
    assert [r.status_code for r in answers] == [200, 200, 200, 404, 404]
    want = [f'"GET /v2/health/ready?probe=access{i} HTTP/1.1" 200 OK' for i in range(3)]
    want.append('"POST /predict/no-access-model HTTP/1.1" 404 Not Found')
    want.append(f'"GET {forged.replace(chr(34), "%22")} HTTP/1.1" 404 Not Found')  # as sent
    line = re.compile(r'INFO:     127\.0\.0\.1:\d+ - (".*)$')
    deadline = time.monotonic() + 10  # lines are flushed within 0.1 s
    while True:
        found = [m.group(1) for m in map(line.match, log.read_text().splitlines()) if m]
        if [f for f in found if "access" in f] == want:
            break
        assert time.monotonic() < deadline, found[-10:]
        time.sleep(0.05)


def test_triton_client_infer_equals_onnxruntime(served):
    client = triton.InferenceServerClient(served["url"].removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("model")
    meta = client.get_model_metadata("model")
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert meta["outputs"][0]["name"] == "logits"
    x = served["x"]
    for binary in (True, False):  # Triton's binary extension (the default) and plain JSON
        inp = triton.InferInput("image", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = triton.InferRequestedOutput("logits", binary_data=binary)
        got = client.infer("model", [inp], outputs=[out]).as_numpy("logits")
        assert got.shape == (16, 10)
        np.testing.assert_allclose(got, served["ort"], rtol=0, atol=1e-5)


def test_predict_endpoint_gives_tk_predict_labels(served):
    x = served["x"]
    np.save(served["root"] / "x.npy", x)
    res = run_tk("predict", str(served["onnx"]), "--input", str(served["root"] / "x.npy"),
                 "--json", cwd=served["root"])  # fmt: skip
    assert res.code == 0, res.err
    want = json.loads(res.out)["predictions"]
    r = httpx.post(f"{served['url']}/predict/model", json={"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["task"] == "multiclass"
    assert [p["label"] for p in got["predictions"]] == [p["label"] for p in want]
    assert [p["class"] for p in got["predictions"]] == [p["class"] for p in want]
    np.testing.assert_allclose(
        [p["probabilities"] for p in got["predictions"]],
        [p["probabilities"] for p in want],
        atol=1e-6,
    )
    # A bad value is named by row and column, and the server answers the next request.
    rows = x.reshape(16, -1).tolist()
    rows[2][5] = "oops"
    r = httpx.post(f"{served['url']}/predict/model", json=rows)
    assert r.status_code == 400 and r.json() == {
        "error": "request: row 3, column 6: 'oops' is not a number"
    }


def test_records_with_shuffled_keys_get_tk_predict_answer(served, tmp_path):
    rng = np.random.default_rng(2)
    n = 12
    cols = {
        "weight": rng.normal(50, 20, n).round(2).tolist(),
        "color": rng.choice(["blue", "green", "red"], n).tolist(),
        "size": rng.normal(10, 3, n).round(3).tolist(),
    }
    csv = tmp_path / "new.csv"
    csv.write_text("weight,color,size\n" + "".join(
        f"{a},{b},{c}\n" for a, b, c in zip(*cols.values(), strict=True)))  # fmt: skip
    res = run_tk("predict", str(served["table"]), "--input", str(csv), "--json", cwd=tmp_path)
    assert res.code == 0, res.err
    want = json.loads(res.out)["predictions"]
    names = list(cols)
    records = []
    for i in range(n):  # every record its own key order
        order = [names[j] for j in rng.permutation(3)]
        records.append({k: cols[k][i] for k in order})
    url = f"{served['url']}/predict/table"
    r = httpx.post(url, json=records)
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    assert [p["class"] for p in got] == [p["class"] for p in want]
    np.testing.assert_allclose(
        [p["probabilities"] for p in got], [p["probabilities"] for p in want], atol=1e-6
    )
    # tk predict's own matching: an unseen category, a missing column, each named.
    bad = [dict(rec) for rec in records]
    bad[4]["color"] = "purple"
    r = httpx.post(url, json={"records": bad})
    assert r.status_code == 400
    assert r.json()["error"].startswith("request: row 5, column 'color': unknown category 'purple'")
    r = httpx.post(url, json=[{"size": 1.0, "color": "red"}])
    assert r.status_code == 400 and "missing column weight" in r.json()["error"]
    assert httpx.post(url, json=records).json()["predictions"] == got  # still answering


def infer_body(x: np.ndarray) -> dict:
    return {"inputs": [{"name": "image", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.reshape(-1).tolist()}]}  # fmt: skip


def test_concurrent_requests_are_batched_with_unbatched_results(served):
    url, x = served["url"], served["x"]
    infer = f"{url}/v2/models/model/infer"
    with httpx.Client() as client:  # one at a time: each request its own runtime call
        alone = [client.post(infer, json=infer_body(x[i : i + 1])).json() for i in range(16)]
    before_count = metric(url, 'tk_serve_requests_total{route="infer",status="200"}')
    before_batches = metric(url, 'tk_serve_batch_rows_count{model="model"}')
    before_single = metric(url, 'tk_serve_batch_rows_bucket{le="1.0",model="model"}')
    barrier = threading.Barrier(16)
    together: list = [None] * 16

    def send(i: int) -> None:
        with httpx.Client() as client:
            barrier.wait()
            together[i] = client.post(infer, json=infer_body(x[i : i + 1])).json()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together, strict=True):
        assert a["outputs"][0]["data"] == b["outputs"][0]["data"]  # identical, not close
    got = np.array([r["outputs"][0]["data"] for r in together])
    np.testing.assert_allclose(got, served["ort"], rtol=0, atol=1e-5)
    after_count = metric(url, 'tk_serve_requests_total{route="infer",status="200"}')
    batches = metric(url, 'tk_serve_batch_rows_count{model="model"}') - before_batches
    single = metric(url, 'tk_serve_batch_rows_bucket{le="1.0",model="model"}') - before_single
    assert after_count - before_count == 16
    assert batches < 16 and batches - single >= 1  # some runtime call ran more than one row


def test_bad_requests_get_their_status_and_one_json_error(served):
    url = served["url"]
    infer = f"{url}/v2/models/model/infer"
    x = served["x"][:2]
    good = infer_body(x)
    wrong_shape = infer_body(x)
    wrong_shape["inputs"][0]["shape"] = [2, 64]
    wrong_type = infer_body(x)
    wrong_type["inputs"][0]["datatype"] = "INT64"
    unknown = infer_body(x)
    unknown["inputs"][0]["name"] = "pixels"
    short = infer_body(x)
    short["inputs"][0]["data"] = short["inputs"][0]["data"][:-1]
    limit = int(MAX_BODY_MB * (1 << 20))
    as_json = {"content-type": "application/json"}
    cases = [
        (infer, {"content": b'{"inputs": [', "headers": as_json}, 400, "malformed JSON"),
        (infer, {"content": b""}, 400, "empty body"),
        (infer, {"json": wrong_shape}, 400, "shape [2, 64], the model takes Nx1x8x8"),
        (infer, {"json": wrong_type}, 400, "datatype 'INT64', the model takes FP32"),
        (infer, {"json": unknown}, 400, "unknown input 'pixels'"),
        (infer, {"json": short}, 400, "127 values for shape [2, 1, 8, 8]"),
        (f"{url}/v2/models/nope/infer", {"json": good}, 404, "unknown model 'nope'"),
        (infer, {"content": b" " * (limit + 1)}, 413, f"over the limit of {limit}"),
        # No Content-Length (chunked): the bytes streamed are counted instead.
        (infer, {"content": iter([b" " * 65536] * (limit // 65536 + 1))}, 413, "over the limit"),
    ]  # fmt: skip
    with httpx.Client() as client:
        for target, kwargs, status, text in cases:
            r = client.post(target, **kwargs)
            assert r.status_code == status, (text, r.text)
            body = r.json()
            assert list(body) == ["error"] and text in body["error"], body
            assert "\n" not in body["error"]
            ok = client.post(infer, json=good)  # the server keeps answering
            assert ok.status_code == 200
            np.testing.assert_allclose(
                np.reshape(ok.json()["outputs"][0]["data"], (2, 10)), served["ort"][:2], atol=1e-5
            )
    assert metric(url, 'tk_serve_requests_total{route="infer",status="413"}') >= 2


def test_refuses_to_start_on_a_tampered_file(served, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(served["run"], run)  # the manifest comes along
    model = run / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    res = run_tk("serve", str(model), "--port", "0", cwd=tmp_path, timeout=60)
    assert res.code == 3
    assert res.err.count("\n") == 1 and "does not match its sha256" in res.err


def test_refuses_torchscript_without_trust(tmp_path):
    import torch

    # TorchScript this tk installation never exported: loading it would run its code.
    script = tmp_path / "model.torchscript.pt"
    with warnings.catch_warnings():  # torch 2.9+ calls TorchScript deprecated; tk still loads it
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 1)), str(script))
    res = run_tk("serve", str(script), "--port", "0", cwd=tmp_path, timeout=60)
    assert res.code == 2
    assert res.err.count("\n") == 1 and "refusing to load TorchScript file" in res.err
    assert "--trust" in res.err


def test_sigterm_drains_the_request_in_flight_then_exits_0(served, tmp_path):
    # A 1.5 s batching window holds the request inside the server when SIGTERM arrives.
    proc, url = start_server(str(served["onnx"]), "--max-delay-ms", "1500", log=tmp_path / "log")
    x = served["x"][:3]
    answer: list = []
    sender = threading.Thread(
        target=lambda: answer.append(
            httpx.post(f"{url}/v2/models/model/infer", json=infer_body(x), timeout=30)
        )
    )
    sender.start()
    time.sleep(0.5)  # the request is waiting in the batcher
    proc.send_signal(signal.SIGTERM)
    sender.join()
    assert proc.wait(30) == 0
    assert "Waiting for connections to close" in (tmp_path / "log").read_text()
    (r,) = answer
    assert r.status_code == 200
    np.testing.assert_allclose(
        np.reshape(r.json()["outputs"][0]["data"], (3, 10)), served["ort"][:3], atol=1e-5
    )


def test_port_in_use_is_one_line(served, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = run_tk("serve", str(served["onnx"]), "--port", str(port), cwd=tmp_path, timeout=60)
    assert res.code == 2
    assert res.err == (
        f"tk: error: cannot listen on 127.0.0.1:{port}: Address already in use"
        " (try: --port with a free port)\n"
    )
