"""Serving benchmark: tk serve against LitServe and the stack's constant-answer ceiling.

Usage::

    .venv/bin/python scripts/bench_serve.py [--out docs/benchmarks-serve.md]
        [--duration 4] [--work DIR] [--models circle,digits-cnn,resnet18]

Needs ``wrk`` (Debian: ``apt-get install wrk``); LitServe (``pip install litserve``)
is the peer and is skipped, with a note, when it is not installed. Everything runs
on 127.0.0.1, one server at a time, bounded ``wrk -t1 -cC -dD`` runs at concurrency
1, 8 and 64 after a 1 s warm-up; every request is one row as a v2 infer JSON body.

Models, trained tiny by ``tk train`` (accuracy is irrelevant here) and exported by
``tk export --format onnx``: circle (2 features), digits-cnn (1x8x8), resnet18 on the
digits as 3x32x32 images (one epoch). Servers, each on the same ONNX file:

- tk serve, batching (``--max-batch 64 --max-delay-ms 2``) and not (``--max-batch 1``);
- LitServe with onnxruntime (the same session options), ``max_batch_size`` 64 with a
  2 ms ``batch_timeout``, and 1 (not batching);
- the constant answer: the same Starlette + uvicorn stack answering a fixed JSON;
- raw onnxruntime: tk's own runner called in a loop, batch 1 and the batch size the
  batching server reached at concurrency 64 (and 64).

The machine is shared: compare figures as ratios within one run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
CONCURRENCY = (1, 8, 64)
MODELS = ("circle", "digits-cnn", "resnet18")


def sh(*args: str, cwd: Path) -> None:
    """Run a command, failing loudly."""
    res = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")


def tk(*args: str, cwd: Path) -> None:
    sh(PY, "-m", "toolkit", *args, cwd=cwd)


def write_digit_images(root: Path, per_class: int) -> Path:
    """The 8x8 digits as PNG folders (resnet18's imagefolder data, resized to 32x32)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    seen: dict[int, int] = {}
    for i, (image, label) in enumerate(zip(bunch.images, bunch.target, strict=True)):
        k = seen[int(label)] = seen.get(int(label), 0) + 1
        if k > per_class:
            continue
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.round(image * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels, "L").convert("RGB").save(folder / f"{i:04d}.png")
    return root


def prepare(work: Path, models: list[str]) -> dict[str, Path]:
    """Train and export each model (tk's own commands); the ONNX files."""
    runs = str(work / "runs")
    files = {}
    for name in models:
        run = work / "runs" / name / "bench"
        if not (run / "model.onnx").exists():
            if name == "resnet18":
                images = write_digit_images(work / "digits-images", 20)
                tk("train", "resnet18", "--dataset", "imagefolder", "--data-param",
                   f"path={images}", "--data-param", "size=32x32", "--epochs", "1",
                   "--runs-dir", runs, "--name", "bench", "--overwrite", cwd=work)  # fmt: skip
            else:
                epochs = [] if name == "circle" else ["--epochs", "1"]
                tk("train", name, *epochs, "--runs-dir", runs, "--name", "bench", "--overwrite",
                   cwd=work)  # fmt: skip
            tk("export", str(run), "--format", "onnx", "--overwrite", cwd=work)
        files[name] = run / "model.onnx"
    return files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """A server process, started and ready, stopped by ``stop``."""

    def __init__(
        self, args: list[str], ready_path: str, port: int, log: Path, cwd: Path = REPO
    ) -> None:
        self.port = port
        self.log = log
        with open(log, "w") as err:
            self.proc = subprocess.Popen(
                args, cwd=cwd, stdout=err, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{args} exited {self.proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url(ready_path), timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"{args} not ready in 120 s")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def rss_mb(self) -> float:
        """Resident memory of the server's processes (itself and its children), MB."""
        total = 0
        for pid in [self.proc.pid, *children(self.proc.pid)]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            found = re.search(r"VmRSS:\s+(\d+) kB", status)
            total += int(found.group(1)) if found else 0
        return total / 1024

    def stop(self) -> None:
        # The whole session: LitServe's inference workers are children of the server.
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for k in map(int, kids):
            out += [k, *children(k)]
    return out


def body(name: str, shape: list[int]) -> str:
    """A one-row v2 infer request for input ``name`` of ``shape`` (after the batch)."""
    import numpy as np

    x = np.random.default_rng(0).random([1, *shape], dtype=np.float32)
    data = [round(float(v), 6) for v in x.reshape(-1)]
    tensor = {"name": name, "shape": [1, *shape], "datatype": "FP32", "data": data}
    return json.dumps({"inputs": [tensor]})


def wrk(url: str, lua: Path, conns: int, seconds: float) -> dict[str, Any]:
    """One bounded wrk run: requests/s, p50/p99 ms, errors."""
    res = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency",
         "-s", str(lua), url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    text = res.stdout

    def ms(pct: str) -> float:
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        assert found, text
        return float(found.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[found.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    return {"rps": rps, "p50": ms("50"), "p99": ms("99"),
            "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else ""}  # fmt: skip


def sweep(server: Served, path: str, lua: Path, seconds: float) -> dict[int, dict[str, Any]]:
    wrk(server.url(path), lua, 8, 1)  # warm-up
    return {c: wrk(server.url(path), lua, c, seconds) for c in CONCURRENCY}


def metric(server: Served, name: str) -> float:
    with urllib.request.urlopen(server.url("/metrics"), timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return 0.0


def raw_rows_per_s(path: Path, batch: int, shape: list[int], seconds: float = 1.5) -> dict:
    """tk's own runner on ``batch`` rows in a loop: rows/s and the median call in ms."""
    import numpy as np

    from toolkit.serve.model import load_models

    model = next(iter(load_models([str(path)]).values()))
    x = np.random.default_rng(0).random([batch, *shape], dtype=np.float32)
    for _ in range(20):
        model.run(x)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        model.run(x)
        times.append(time.perf_counter() - t)
    return {"rows_per_s": batch * len(times) / sum(times), "p50_ms": statistics.median(times) * 1e3}


CEILING = "constant answer (ceiling)"


def bench_model(
    name: str, path: Path, work: Path, logs: Path, args: argparse.Namespace, peer: bool
) -> dict[str, Any]:
    """Every server up on ``path`` at once; wrk rotates over them, round after round.

    Interleaving matters on a shared machine: the load from other work moves by
    several times within minutes, so each figure is the median of ``--rounds``
    rounds, each round running every server at each concurrency back to back.
    """
    input_name, shape = input_of(path)
    lua = work / f"{name}.lua"
    write_lua(lua, body(input_name, shape))
    infer = "/v2/models/model/infer"
    specs: dict[str, tuple[list[str], str, str]] = {
        "tk serve, batching": (["--max-batch", "64", "--max-delay-ms", "2"], "tk", infer),
        "tk serve, no batching": (["--max-batch", "1"], "tk", infer),
        CEILING: ([], "constant", "/infer"),
    }
    if args.old_src:  # the same command from an older checkout: before/after in one run
        specs[f"tk serve at {args.old_label}, batching"] = (
            ["--max-batch", "64", "--max-delay-ms", "2"], "old", infer)  # fmt: skip
    if peer:
        specs["LitServe, batching"] = (["64"], "litserve", "/predict")
        specs["LitServe, no batching"] = (["1"], "litserve", "/predict")
    servers: dict[str, Served] = {}
    try:
        for label, (extra, kind, _) in specs.items():
            port = free_port()
            log = logs / f"{name}-{label.replace(' ', '').replace(',', '-')}.log"
            if kind in ("tk", "old"):
                cmd = [PY, "-m", "toolkit", "serve", str(path), "--port", str(port), *extra]
                # `python -m` puts its working directory first on sys.path: the older
                # toolkit/ is imported from there, ahead of this checkout's.
                cwd = Path(args.old_src) if kind == "old" else REPO
                servers[label] = Served(cmd, "/v2/health/ready", port, log, cwd)
            elif kind == "constant":
                cmd = [PY, "scripts/serve_peers.py", "constant", str(port)]
                servers[label] = Served(cmd, "/live", port, log)
            else:
                cmd = [PY, "scripts/serve_peers.py", "litserve", str(path), str(port), *extra]
                servers[label] = Served(cmd, "/health", port, log)
        for label, server in servers.items():  # warm-up
            wrk(server.url(specs[label][2]), lua, 8, 1)
        runs: dict[str, dict[int, list[dict[str, Any]]]] = {
            label: {c: [] for c in CONCURRENCY} for label in servers
        }
        labels = list(servers)
        for r in range(args.rounds):
            for c in CONCURRENCY:
                for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
                    url = servers[label].url(specs[label][2])
                    runs[label][c].append(wrk(url, lua, c, args.duration))
        rows: dict[str, Any] = {"shape": shape}
        for label, server in servers.items():
            rows[label] = {c: median_run(runs[label][c]) for c in CONCURRENCY}
            if specs[label][1] in ("tk", "old"):
                count = metric(server, 'tk_serve_batch_rows_count{model="model"}')
                total = metric(server, 'tk_serve_batch_rows_sum{model="model"}')
                rows[label]["mean_batch"] = total / count if count else None
                rows[label]["rss_mb"] = metric(server, "process_resident_memory_bytes") / 2**20
            else:
                rows[label]["rss_mb"] = server.rss_mb()
            print(name, label, rows[label], flush=True)
    finally:
        for server in servers.values():
            server.stop()
    # The batch size tk serve's batcher reached at c=64 (from its batch histogram, all runs).
    reached = max(1, round(rows["tk serve, batching"].get("mean_batch") or 1))
    rows["raw"] = {str(b): raw_rows_per_s(path, b, shape) for b in sorted({1, reached, 64})}
    rows["reached_batch"] = reached
    print(name, "raw", rows["raw"], flush=True)
    return rows


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over the rounds (and every round's requests/s)."""
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "p50": statistics.median(r["p50"] for r in runs),
        "p99": statistics.median(r["p99"] for r in runs),
        "non2xx": sum(r["non2xx"] for r in runs),
        "rounds_rps": [r["rps"] for r in runs],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks-serve.md"))
    ap.add_argument("--json", default=None, help="Also save the figures here.")
    ap.add_argument("--duration", type=int, default=3, help="Seconds per wrk run.")
    ap.add_argument("--rounds", type=int, default=3, help="Rounds; figures are medians.")
    ap.add_argument("--work", default=None, help="Where models are trained (default: a temp dir).")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--before", default=None, help="An earlier run's --json, compared.")
    ap.add_argument(
        "--old-src",
        default=None,
        help="A directory holding an older toolkit/ (git archive REV toolkit): "
        "its tk serve runs beside the current one, in the same rounds.",
    )
    ap.add_argument("--old-label", default="the older checkout", help="Its name on the page.")
    ap.add_argument("--render", default=None, help="Only write the page from this --json.")
    args = ap.parse_args(argv)
    if args.render:
        before = json.loads(Path(args.before).read_text()) if args.before else None
        Path(args.out).write_text(render(json.loads(Path(args.render).read_text()), before))
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (try: apt-get install wrk)")
    try:
        import litserve  # noqa: F401

        peer = True
    except ImportError:
        peer = False
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(args.work or tempfile.mkdtemp(prefix="tk-bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    models = args.models.split(",")
    files = prepare(work, models)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out: dict[str, Any] = {"duration": args.duration, "rounds": args.rounds, "peer": peer,
                           "models": {},
                           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                           "started": started}  # fmt: skip
    try:
        import uvloop  # noqa: F401

        out["loop"] = "uvloop + httptools (installed, uvicorn picks them)"
    except ImportError:
        out["loop"] = "asyncio + h11"
    out["load"] = [os.getloadavg()[0]]
    for name in models:
        out["models"][name] = bench_model(name, files[name], work, logs, args, peer)
        out["load"].append(os.getloadavg()[0])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    before = json.loads(Path(args.before).read_text()) if args.before else None
    Path(args.out).write_text(render(out, before))
    print(f"wrote {args.out}")


def render(out: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    """docs/benchmarks-serve.md from the figures (``before``: an earlier run to compare)."""
    loads = out.get("load") or []
    load = " -> ".join(f"{x:.1f}" for x in loads) + " from start to end" if loads else "unknown"
    lines = [
        "# Serving benchmarks: `tk serve` against LitServe and the stack's ceiling",
        "",
        "```console",
        "$ make bench-serve",
        "```",
        "",
        "(`.venv/bin/python scripts/bench_serve.py`; needs `wrk`, Debian's package, and "
        "LitServe, `pip install litserve`, for the peer). This page's run "
        f"started {out['started']}: {out['machine']}, event loop {out['loop']}. "
        f"wrk (`wrk -t1 -cC -d{out['duration']}s --latency`) on 127.0.0.1, each request one "
        "row as a v2 infer JSON body (the constant answer reads the same body); per model, "
        "every server is up at once and wrk goes round them, at each concurrency in turn, "
        f"{out.get('rounds', 1)} rounds: each figure is the median over the rounds. "
        "p50/p99 in ms as wrk reports them.",
        "",
        f"**The machine**: {os.cpu_count()} cores, wrk on the same cores as the servers "
        f"(1-minute load average {load}; the load of the servers and wrk themselves is "
        "about 2). Figures move by tens of percent from one round to the next (each row "
        "keeps its rounds in the --json output); compare the ratios within one run, which "
        "is what the goals below do.",
        "",
    ]
    for name, rows in out["models"].items():
        shape = "x".join(map(str, rows["shape"]))
        lines += [f"## {name} (input {shape})", "",
                  "| server | " + " | ".join(f"c={c} req/s, p50, p99" for c in CONCURRENCY)
                  + " | mean batch | RSS MB |",
                  "| --- |" + " --- |" * (len(CONCURRENCY) + 2)]  # fmt: skip
        table = {k: v for k, v in rows.items() if k.startswith(("tk", "LitServe", "constant"))}
        for label, r in table.items():
            cells = [_cell(r[c] if c in r else r[str(c)]) for c in CONCURRENCY]
            batch = f"{r['mean_batch']:.1f}" if r.get("mean_batch") else ""
            rss = f"{r['rss_mb']:.0f}" if r.get("rss_mb") else ""
            lines.append(f"| {label} | {' | '.join(cells)} | {batch} | {rss} |")
        raw = ", ".join(f"batch {b}: {v['rows_per_s']:,.0f} rows/s ({v['p50_ms']:.3f} ms a call)"
                        for b, v in rows["raw"].items())  # fmt: skip
        lines += ["", f"Raw onnxruntime (tk's runner, same session options): {raw}.", ""]
    lines += goals(out)
    old = [k for k in next(iter(out["models"].values()), {}) if k.startswith("tk serve at ")]
    if old:
        lines += compare_in_run(out, old[0])
    elif before is not None:
        lines += compare(before, out)
    lines += [
        "",
        "Notes: tk serve's RSS is its own `process_resident_memory_bytes` (one worker; "
        "with `--workers N` each worker is one such process, the parent supervises); "
        "LitServe's is its server and inference worker processes together; all three "
        "servers log one access line per request (to a file here).",
    ]
    return "\n".join(lines) + "\n"


def _cell(r: dict[str, Any]) -> str:
    bad = f" ({r['non2xx']} non-2xx)" if r.get("non2xx") else ""
    return f"{r['rps']:,.0f}, {r['p50']:.2f}, {r['p99']:.1f}{bad}"


def _at(r: dict[str, Any], c: int) -> dict[str, Any]:
    return r[c] if c in r else r[str(c)]


def goals(out: dict[str, Any]) -> list[str]:
    """The issue's goals, each measured in this run, and whether it is met."""
    lines = ["## Goals (issue 21)", "", "| goal | measured | met |", "| --- | --- | --- |"]
    m = out["models"]

    def row(goal: str, measured: str, ok: bool) -> None:
        lines.append(f"| {goal} | {measured} | {'yes' if ok else '**no**'} |")

    if "digits-cnn" in m:
        d = m["digits-cnn"]
        tk = max(
            _at(d["tk serve, batching"], 64)["rps"], _at(d["tk serve, no batching"], 64)["rps"]
        )
        if out["peer"]:
            lit = max(
                _at(d["LitServe, batching"], 64)["rps"], _at(d["LitServe, no batching"], 64)["rps"]
            )
            row("c=64, digits-cnn: tk serve >= 10x LitServe's requests/s (best of each)",
                f"{tk:,.0f} / {lit:,.0f} = {tk / lit:.1f}x", tk >= 10 * lit)  # fmt: skip
        ceiling = _at(d[CEILING], 64)["rps"]
        row("c=64, digits-cnn: tk serve >= 50% of the constant-answer ceiling",
            f"{tk:,.0f} / {ceiling:,.0f} = {tk / ceiling:.0%}", tk >= 0.5 * ceiling)  # fmt: skip
    if "circle" in m:
        c = m["circle"]
        served = _at(c["tk serve, no batching"], 1)["p50"]
        raw = c["raw"]["1"]["p50_ms"]
        floor = _at(c[CEILING], 1)["p50"]
        row("circle, batch 1: HTTP+JSON adds <= 1 ms (tk serve p50 at c=1 minus raw call)",
            f"{served:.2f} - {raw:.3f} = {served - raw:.2f} ms (the constant answer's own "
            f"p50: {floor:.2f} ms)", served - raw <= 1.0)  # fmt: skip
    if "resnet18" in m:
        r = m["resnet18"]
        b = str(r["reached_batch"])
        served = _at(r["tk serve, batching"], 64)["rps"]
        raw = r["raw"][b]["rows_per_s"]
        row(f"resnet18, c=64 with batching: rows/s >= 0.7x raw onnxruntime at the batch "
            f"reached ({b})", f"{served:,.0f} / {raw:,.0f} = {served / raw:.2f}x",
            served >= 0.7 * raw)  # fmt: skip
    return [*lines, ""]


def compare_in_run(out: dict[str, Any], old: str) -> list[str]:
    """tk serve from another checkout (``--old-src``) and this one, measured in the same rounds."""
    lines = [
        "## Before and after (same run)",
        "",
        f"The row {old} is tk serve from another checkout's `toolkit/` (`--old-src DIR`, "
        "`python -m toolkit serve` run from DIR, e.g. `git archive COMMIT toolkit` unpacked "
        "there), up beside the others in the same rounds.",
        "",
        "| model | c=1 p50 ms before -> after | c=1 req/s | c=8 req/s | c=64 req/s "
        "| c=64 / ceiling |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, rows in out["models"].items():
        b, a, top = rows[old], rows["tk serve, batching"], _at(rows[CEILING], 64)["rps"]
        lines.append(
            f"| {name} | {_at(b, 1)['p50']:.2f} -> {_at(a, 1)['p50']:.2f} "
            + "".join(f"| {_at(b, c)['rps']:,.0f} -> {_at(a, c)['rps']:,.0f} " for c in (1, 8, 64))
            + f"| {_at(b, 64)['rps'] / top:.0%} -> {_at(a, 64)['rps'] / top:.0%} |"
        )
    return [*lines, ""]


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """tk serve with batching, before and after the lone-request change (two runs)."""
    lines = [
        "## The lone-request change (toolkit/serve/batching.py)",
        "",
        "Two changes: a request that finds nothing queued, right after a batch of one, "
        "runs at once instead of waiting `--max-delay-ms`; and a call expected under "
        "0.5 ms runs on the event loop instead of a worker thread (whose GIL hand-off "
        "waited up to the 5 ms switch interval under load). Before and after are two "
        "runs on the shared machine, so each is also shown against its own run's ceiling.",
        "",
        "| model | c=1 p50 ms before -> after | c=1 req/s before -> after "
        "| c=64 req/s before -> after | c=64 / ceiling before -> after |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in after["models"]:
        if name not in before["models"]:
            continue
        b, a = (
            before["models"][name]["tk serve, batching"],
            after["models"][name]["tk serve, batching"],
        )
        cb = _at(before["constant"], 64)["rps"]
        ca = _at(after["models"][name][CEILING], 64)["rps"]
        lines.append(
            f"| {name} | {_at(b, 1)['p50']:.2f} -> {_at(a, 1)['p50']:.2f} "
            f"| {_at(b, 1)['rps']:,.0f} -> {_at(a, 1)['rps']:,.0f} "
            f"| {_at(b, 64)['rps']:,.0f} -> {_at(a, 64)['rps']:,.0f} "
            f"| {_at(b, 64)['rps'] / cb:.0%} -> {_at(a, 64)['rps'] / ca:.0%} |"
        )
    return [*lines, ""]


def write_lua(path: Path, text: str) -> None:
    path.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{text}]==]\n"
    )


def input_of(path: Path) -> tuple[str, list[int]]:
    """The ONNX file's input: its name and the shape of one row."""
    import onnxruntime as ort

    first = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0]
    return first.name, [int(d) for d in first.shape[1:]]


if __name__ == "__main__":
    main()
