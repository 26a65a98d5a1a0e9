"""`tk serve` for people and for bad clients: the page at / in a real headless Chromium
(Debian's chromium + chromedriver, driven by Selenium), CSV and multipart image bodies
on /predict compared with `tk predict`, and each kind of bad input answered with its
status and one JSON error while the server keeps answering.

One module server (a real `tk serve` subprocess on 127.0.0.1, port 0) serves three
files: a CSV-trained mlp, a cnn trained on digit PNGs, and a hand-built ONNX graph
whose runtime fails for some rows (a Gather out of bounds in onnxruntime).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import REPO, tk_main
from test_data_images import write_digits
from test_hostile_data import bomb
from test_serve import start_server, stop, table_model

MAX_BODY_MB = 1  # the streamed over-limit body is cut off after 1 MB


def fragile_onnx(template: Path, out: Path) -> None:
    """An ONNX file carrying ``template``'s tk metadata (a binary model on 5 numbers, one
    logit), less its column record (a plain model: rows of numbers, a field per number on
    the page), whose graph looks a logit up by the first number as an index: rows
    starting with -3..2 run, any other first number makes onnxruntime's Gather fail."""
    import onnx
    from onnx import TensorProto, helper

    src = onnx.load(str(template))
    nodes = [
        helper.make_node("Gather", ["input", "zero"], ["first"], axis=1),
        helper.make_node("Cast", ["first"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "index"], ["logits"], axis=0),
    ]
    graph = helper.make_graph(
        nodes,
        "fragile",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 5])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            helper.make_tensor("zero", TensorProto.INT64, [], [0]),
            helper.make_tensor("table", TensorProto.FLOAT, [3, 1], [-1.0, 0.5, 2.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for prop in src.metadata_props:  # tk's own records: task, input, classes
        plain = prop.key == "tk.inputs"
        model.metadata_props.add(key=prop.key, value="null" if plain else prop.value)
    onnx.save(model, str(out))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The three files, trained and exported by tk's own commands, served at once."""
    root = tmp_path_factory.mktemp("serve-ui")
    runs = root / "runs"
    table = table_model(root, runs, fillna="mean")
    digits = write_digits(root / "digits", per_class=12)
    assert tk_main("train", "cnn", "--dataset", "imagefolder", "--data-param", f"path={digits}",
                   "--data-param", "grayscale=true", "--epochs", "1", "--runs-dir", str(runs),
                   "--name", "i", "--threads", "1") == 0  # fmt: skip
    images = runs / "cnn" / "i" / "digits.onnx"
    assert tk_main("export", str(images.parent), "--format", "onnx", "--out", str(images)) == 0
    fragile = root / "fragile.onnx"
    fragile_onnx(table, fragile)
    proc, url = start_server(
        str(table), str(images), str(fragile), "--max-body-mb", str(MAX_BODY_MB),
        "--max-delay-ms", "1", log=root / "serve.log",
    )  # fmt: skip
    # New rows for the table model, columns in another order than training's.
    new = root / "new.csv"
    new.write_text(
        "weight,color,size\n41.5,red,9.25\n75.0,blue,12.5\n12.25,green,4.0\n"
        "60.0,red,15.5\n33.0,blue,7.75\n,red,9.25\n"
    )  # the last row's weight: a gap
    picked = root / "picked"  # three digit PNGs, for `tk predict` on a folder
    picked.mkdir()
    for d in ("3", "7", "9"):
        shutil.copy(sorted((digits / d).glob("*.png"))[0], picked / f"digit{d}.png")
    fills = json.loads((table.parent / "config.json").read_text())["inputs"]["fill"]
    yield {"root": root, "url": url, "proc": proc, "table": table, "images": images,
           "new": new, "picked": picked, "log": root / "serve.log",
           "weight_mean": fills["weight"]}  # fmt: skip
    stop(proc)


def tk_predict(target: Path, data: Path) -> list[dict]:
    """``tk predict TARGET --input DATA --json``, the CLI in this process (no second
    interpreter to start): its predictions."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert tk_main("predict", str(target), "--input", str(data), "--json") == 0
    return json.loads(out.getvalue())["predictions"]


@pytest.fixture(scope="module")
def want(served):
    """`tk predict --json` on the new table rows and on the picked digit PNGs."""
    return {
        "table": tk_predict(served["table"], served["new"]),
        "images": tk_predict(served["images"], served["picked"]),
    }


def same_answers(got: list[dict], expected: list[dict]) -> None:
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    assert [p["class"] for p in got] == [p["class"] for p in expected]
    assert [p.get("file") for p in got] == [p.get("file") for p in expected]
    np.testing.assert_allclose(
        [p["probabilities"] for p in got], [p["probabilities"] for p in expected], atol=1e-6
    )


# ------------------------------------------------------------------ the page, in a browser
def chrome_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser():
    found = chrome_paths()
    if found is None:
        pytest.skip("no chromium + chromedriver binary (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    # Root in a container: Chromium's sandbox needs namespaces it may not have.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=860,1100", "--disable-gpu"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(found[1]))
    yield driver
    driver.quit()


def submit_and_read(driver, name: str) -> list[dict]:
    """Press the model's Predict button; each prediction as the page shows it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    section = driver.find_element(By.ID, f"model-{name}")
    section.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    answer = driver.find_element(By.ID, f"answer-{name}")
    WebDriverWait(driver, 20).until(lambda _: answer.get_attribute("data-done") == "1")
    assert not answer.find_elements(By.CLASS_NAME, "error"), answer.text
    shown = []
    for div in answer.find_elements(By.CLASS_NAME, "prediction"):
        files = div.find_elements(By.CLASS_NAME, "file")
        shown.append(
            {
                "file": files[0].text.removesuffix(":") if files else None,
                "class": div.find_element(By.CLASS_NAME, "class").text,
                "label": div.find_element(By.CLASS_NAME, "label").text,
                "probability": div.find_element(By.CLASS_NAME, "probability").text,
                "probabilities": [e.text for e in div.find_elements(By.CLASS_NAME, "num")],
            }
        )
    return shown


def as_shown(p: dict) -> dict:
    """A `tk predict --json` row as the page prints it (4 decimals)."""
    return {
        "file": p.get("file"),
        "class": p["class"],
        "label": str(p["label"]),
        "probability": f"{p['probability']:.4f}",
        "probabilities": [f"{q:.4f}" for q in p["probabilities"]],
    }


def blank_weight_is_filled(driver, form, served, want) -> None:
    """The run filled gaps with training means: a blank weight is the gap tk predict fills."""
    from selenium.webdriver.common.by import By

    weight = form.find_element(By.NAME, "weight")
    assert weight.get_attribute("required") is None
    assert weight.get_attribute("placeholder") == f"blank: {served['weight_mean']:.6g}"
    weight.clear()
    shown = submit_and_read(driver, "table")
    assert shown == [{**as_shown(want["table"][5]), "file": None}]


def test_page_shows_each_card_and_predicts_in_a_browser(served, want, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = browser
    driver.get(served["url"] + "/")
    assert driver.title == "tk serve: table, digits, fragile"
    card = driver.find_element(By.CSS_SELECTOR, "#model-table table.card").text
    assert "task binary" in card and "classes drop, keep" in card
    assert "color (category: blue, green, red)" in card
    assert "run " + str(served["table"].parent) in card
    assert "sha256 matches its run's manifest" in card and "atol 1e-05, rtol 0.0001" in card
    fragile = driver.find_element(By.ID, "model-fragile")
    assert "not listed in a run manifest" in fragile.text
    # The form built from the columns, filled as a person would: the first new row.
    form = driver.find_element(By.CSS_SELECTOR, "#model-table form")
    for name, value in (("weight", "41.5"), ("size", "9.25")):
        box = form.find_element(By.NAME, name)
        box.clear()
        box.send_keys(value)
    Select(form.find_element(By.NAME, "color")).select_by_visible_text("red")
    shown = submit_and_read(driver, "table")
    assert shown == [{**as_shown(want["table"][0]), "file": None}]
    blank_weight_is_filled(driver, form, served, want)
    # An image model: a file picker; the PNG goes up as multipart.
    picker = driver.find_element(By.CSS_SELECTOR, "#model-digits input[type=file]")
    picker.send_keys(str(served["picked"] / "digit7.png"))
    shown = submit_and_read(driver, "digits")
    (expected,) = [p for p in want["images"] if p["file"] == "digit7.png"]
    assert shown == [as_shown(expected)]
    # A plain model: a field per number, labelled by the file's feature names.
    boxes = fragile.find_elements(By.CSS_SELECTOR, "form input[type=number]")
    labels = [e.text for e in fragile.find_elements(By.CSS_SELECTOR, "form label span")]
    assert labels == ["size", "color=blue", "color=green", "color=red", "weight"]
    for box, value in zip(boxes, ["2", "0", "0", "1", "3.5"], strict=True):
        box.send_keys(value)
    (shown,) = submit_and_read(driver, "fragile")
    # The graph's logit for a first number 2 is 2.0: sigmoid(2) = 0.8808 for "keep".
    assert shown == {"file": None, "class": "keep", "label": "1", "probability": "0.8808",
                     "probabilities": ["0.1192", "0.8808"]}  # fmt: skip
    # A runtime failure shows as the server's one-line error, in the page.
    boxes[0].clear()
    boxes[0].send_keys("7")
    fragile.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    error = fragile.find_element(By.CSS_SELECTOR, ".answer")
    WebDriverWait(driver, 20).until(lambda _: error.find_elements(By.CLASS_NAME, "error"))
    assert error.text.startswith("runtime error: ")
    driver.execute_script("window.scrollTo(0, 0)")
    if os.environ.get("TK_SCREENSHOT"):  # refresh docs/serve-page.png: TK_SCREENSHOT=1
        from PIL import Image

        driver.set_window_size(860, 1150)
        shot = REPO / "docs" / "serve-page.png"
        driver.save_screenshot(str(shot))
        with Image.open(shot) as im:  # 64 colours: a third of the bytes, the same look
            small = im.convert("RGB").quantize(64)
        small.save(shot, optimize=True)


# ------------------------------------------------------------------ CSV and image bodies
def test_csv_body_gets_tk_predict_answer(served, want):
    body = served["new"].read_bytes()
    r = httpx.post(f"{served['url']}/predict/table", content=body,
                   headers={"content-type": "text/csv"})  # fmt: skip
    assert r.status_code == 200, r.text
    same_answers(r.json()["predictions"], want["table"])
    # tk predict's matching for a CSV file, named by row and column: request.csv.
    bad = body.replace(b"60.0,red", b"60.0,purple")
    r = httpx.post(f"{served['url']}/predict/table", content=bad,
                   headers={"content-type": "text/csv; charset=utf-8"})  # fmt: skip
    assert r.status_code == 400
    assert r.json()["error"].startswith(
        "request.csv: row 4, column 'color': unknown category 'purple'"
    )


def test_a_null_number_is_the_gap_the_run_fills_as_tk_predict_does(served, want):
    records = [{"size": 9.25, "color": "red", "weight": None},
               {"weight": 41.5, "color": "red", "size": 9.25}]  # fmt: skip
    r = httpx.post(f"{served['url']}/predict/table", json=records)
    assert r.status_code == 200, r.text
    same_answers(r.json()["predictions"], [want["table"][5], want["table"][0]])
    filled = {"size": 9.25, "color": "red", "weight": served["weight_mean"]}
    r = httpx.post(f"{served['url']}/predict/table", json=[filled])
    same_answers(r.json()["predictions"], [want["table"][5]])


def test_multipart_images_get_tk_predict_answer(served, want):
    picked = sorted(served["picked"].iterdir())  # the order tk predict reads the folder
    files = [("file", (p.name, p.read_bytes(), "image/png")) for p in picked]
    r = httpx.post(f"{served['url']}/predict/digits", files=files)
    assert r.status_code == 200, r.text
    same_answers(r.json()["predictions"], want["images"])


# ------------------------------------------------------------------ bad input
def answered(url: str) -> None:
    """The server still answers a good request after a bad one."""
    r = httpx.post(f"{url}/predict/table", json=[{"size": 1, "color": "red", "weight": 2}])
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1


def one_error(r: httpx.Response, status: int, text: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"] and text in body["error"], body
    assert "\n" not in body["error"]


def test_each_bad_body_gets_its_status_and_one_json_error(served, tmp_path):
    url = served["url"]
    png = (served["picked"] / "digit3.png").read_bytes()
    bomb_png = bomb(tmp_path / "bomb.png").read_bytes()
    big = png + b"\0" * (MAX_BODY_MB << 20)  # a file past the body limit
    infer = {"inputs": [{"name": "input", "shape": [1, 5], "datatype": "FP32",
                         "data": [0.0] * 5}]}  # fmt: skip
    wrong_shape = json.loads(json.dumps(infer))
    wrong_shape["inputs"][0]["shape"] = [1, 4]
    wrong_type = json.loads(json.dumps(infer))
    wrong_type["inputs"][0]["datatype"] = "UINT8"
    record = {"size": 1, "color": "red", "weight": 2}
    cases = [
        ("table", {"content": b'[{"size": 1,', "headers": {"content-type": "application/json"}},
         400, "malformed JSON"),
        ("table", {"content": b""}, 400, "empty body"),
        ("table", {"content": b"", "headers": {"content-type": "text/csv"}}, 400, "empty body"),
        ("v2", {"json": wrong_shape}, 400, "shape [1, 4], the model takes Nx5"),
        ("v2", {"json": wrong_type}, 400, "datatype 'UINT8', the model takes FP32"),
        ("table", {"json": [{"size": 1, "color": "red"}]}, 400, "missing column weight"),
        ("table", {"content": b"size,color\n1,red\n", "headers": {"content-type": "text/csv"}},
         400, "request.csv: missing column weight"),
        ("table", {"json": [record, {**record, "color": "teal"}]}, 400,
         "row 2, column 'color': unknown category 'teal'"),
        ("digits", {"files": [("file", ("a.png", png, "image/png")),
                              ("file", ("notes.txt", b"hello", "text/plain"))]}, 400,
         "file 2 ('notes.txt'): cannot identify image file"),
        ("digits", {"files": [("file", ("bomb.png", bomb_png, "image/png"))]}, 400,
         "file 1 ('bomb.png'): cannot decode it: Image size (1600000000 pixels) exceeds limit"),
        ("digits", {"content": b'--x\r\nContent-Disposition: form-data; name="note"\r\n\r\n'
                               b"no file\r\n--x--\r\n",
                    "headers": {"content-type": "multipart/form-data; boundary=x"}}, 400,
         "multipart body holds no file"),
        ("table", {"files": [("file", ("a.png", png, "image/png"))]}, 400,
         "model table was not trained on images"),
        ("digits", {"files": [("file", ("big.png", big, "image/png"))]}, 413, "over the limit"),
    ]  # fmt: skip
    with httpx.Client() as client:
        for target, kwargs, status, text in cases:
            path = "/v2/models/table/infer" if target == "v2" else f"/predict/{target}"
            one_error(client.post(url + path, **kwargs), status, text)
            answered(url)


def raw_request(port: int, head: bytes, body_chunks, *, timeout: float = 30) -> tuple[bytes, int]:
    """Send ``head`` then body chunks on a raw socket until the server answers or closes;
    (the response, the body bytes the server took before answering)."""
    import select

    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        for chunk in body_chunks:
            if select.select([s], [], [], 0)[0]:
                break  # the answer came before the body was all sent
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        data = b""
        try:
            while not data.endswith(b"}"):
                more = s.recv(65536)
                if not more:
                    break
                data += more
        except ConnectionResetError:
            pass
    return data, sent


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the RSS")
def test_100_mb_bodies_are_413_without_being_held(served):
    url, pid = served["url"], served["proc"].pid
    port = int(url.rsplit(":", 1)[1])
    before = rss_kb(pid)
    chunk = b" " * (1 << 20)
    # Declared: refused from the Content-Length, before the body is read.
    head = (b"POST /predict/table HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (100 << 20))  # fmt: skip
    data, sent = raw_request(port, head, [chunk] * 100)
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    assert json.loads(data.split(b"\r\n\r\n", 1)[1]) == {
        "error": f"body of {100 << 20} bytes is over the limit of {MAX_BODY_MB << 20}"
    }
    # Streamed (chunked, no length): cut off once the bytes read pass the limit.
    head = (b"POST /predict/table HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    data, sent = raw_request(port, head, [framed] * 100)
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    assert b"over the limit" in data
    assert sent < 100 * len(framed)  # answered before the 100 MB were all sent
    # Neither body was kept: the server grew by far less than 100 MB.
    assert rss_kb(pid) - before < 30_000
    answered(url)


def test_a_client_gone_mid_body_leaves_the_server_answering(served):
    url = served["url"]
    port = int(url.rsplit(":", 1)[1])
    before = httpx.get(f"{url}/metrics").text
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"POST /predict/table HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                      b'Content-Type: application/json\r\n\r\n[{"size": 1, ')  # fmt: skip
        answered(url)
    deadline = time.monotonic() + 10
    count = 'tk_serve_requests_total{route="predict",status="499"}'

    def seen(text: str) -> float:
        found = re.search(re.escape(count) + r" (\S+)", text)
        return float(found.group(1)) if found else 0.0

    while seen(httpx.get(f"{url}/metrics").text) - seen(before) < 3:
        assert time.monotonic() < deadline, "the server never saw the clients go"
        time.sleep(0.05)
    assert "Traceback" not in served["log"].read_text()


def test_a_runtime_failure_is_500_for_that_request_only(served):
    url = f"{served['url']}/predict/fragile"
    r = httpx.post(url, json=[[2, 0, 0, 1, 1]])
    assert r.status_code == 200 and r.json()["predictions"][0]["class"] == "keep"
    r = httpx.post(url, json=[[7, 0, 0, 1, 1]])
    one_error(r, 500, "runtime error: ")
    assert "indices" in r.json()["error"], r.json()
    r = httpx.post(url, json=[[2, 0, 0, 1, 1], [0, 1, 0, 0, 1]])  # the worker goes on
    assert r.status_code == 200
    assert [p["class"] for p in r.json()["predictions"]] == ["keep", "drop"]


def test_thousands_of_connections_at_once_then_still_answering(served):
    # 1,000 sockets open at the same time, then one request on each, all to one worker
    # process (the issue asks 10,000: TK_TEST_CONNECTIONS=10000 runs that, and passed
    # here in 28.5 s on the shared 2-core machine, most of it the client's own Python
    # event loop; 1,000 keep this test near 3 s while showing the same: no connection
    # refused, no answer lost, and the server answering afterwards).
    import asyncio

    port = int(served["url"].rsplit(":", 1)[1])
    n = int(os.environ.get("TK_TEST_CONNECTIONS", "1000"))
    body = b'[{"size": 1, "color": "red", "weight": 2}]'
    request = (b"POST /predict/table HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip

    async def answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
        return head, await reader.readexactly(length)

    async def all_at_once() -> list[tuple[bytes, bytes]]:
        conns = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", port) for _ in range(n))
        )
        for _, writer in conns:  # every connection is open before any request is sent
            writer.write(request)
        try:
            return await asyncio.wait_for(
                asyncio.gather(*(answer(reader) for reader, _ in conns)), 120
            )
        finally:
            for _, writer in conns:
                writer.close()

    start = time.perf_counter()
    answers = asyncio.run(all_at_once())
    seconds = time.perf_counter() - start
    assert len(answers) == n
    assert all(head.startswith(b"HTTP/1.1 200") for head, _ in answers)
    assert len({body for _, body in answers}) == 1  # every one the same answer
    print(f"{n} connections at once answered in {seconds:.2f} s")
    answered(served["url"])


# ------------------------------------------------------------------ OpenAPI
def test_openapi_document_is_valid_and_answers_match_it(served, want):
    from openapi_schema_validator import validate as validate_instance
    from openapi_spec_validator import validate

    url = served["url"]
    r = httpx.get(f"{url}/openapi.json")
    assert r.status_code == 200
    schema = r.json()
    validate(schema)  # the OpenAPI 3.0 meta-schema, and every $ref resolves
    predict = schema["paths"]["/predict/{name}"]["post"]
    assert set(predict["requestBody"]["content"]) == {
        "application/json", "text/csv", "multipart/form-data",
    }  # fmt: skip
    assert {"/v2/models/{name}/infer", "/v2/health/ready", "/metrics", "/"} <= set(schema["paths"])
    # Real answers fit the schemas the document gives for them.
    components = schema["components"]["schemas"]
    r = httpx.post(f"{url}/predict/table", content=served["new"].read_bytes(),
                   headers={"content-type": "text/csv"})  # fmt: skip
    validate_instance(r.json(), components["Prediction"])
    r = httpx.post(f"{url}/predict/table", json=[{"size": 1}])
    assert r.status_code == 400
    validate_instance(r.json(), components["Error"])
    page = httpx.get(f"{url}/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<code>/v2/models/{name}/infer</code>" in page.text
    assert "text/csv" in page.text and "src=" not in page.text  # nothing fetched elsewhere


def test_page_is_self_contained_and_wide_plain_inputs_get_a_json_box(served):
    import dataclasses

    from toolkit.serve.model import load_models
    from toolkit.serve.page import render_page

    html = httpx.get(served["url"] + "/").text
    assert "://" not in html and "src=" not in html  # nothing fetched from elsewhere
    assert html.count('<form class="try"') == 3
    # A number the run fills may be left blank; the plain model's numbers may not.
    hint = f"blank: {served['weight_mean']:.6g}"
    assert f'<input type="number" step="any" name="weight" placeholder="{hint}">' in html
    assert '<input type="number" step="any" name="x1" required>' in html
    # The digits cnn without its image record: 64 plain numbers, too many for fields.
    (model,) = load_models([str(served["images"])]).values()
    plain = dataclasses.replace(model, meta={**model.meta, "inputs": None}, full_meta={})
    page = render_page({"plain": plain})
    assert 'data-kind="json"' in page and "a list of 64 numbers each" in page
    assert 'type="number"' not in page and 'type="file"' not in page
