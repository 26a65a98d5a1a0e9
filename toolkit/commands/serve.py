"""``tk serve``: exported files behind HTTP (Open Inference Protocol, /predict, /metrics)."""

from __future__ import annotations

import signal
import socket
from typing import Annotated

import typer

from toolkit.commands.common import TrustOpt


def serve(
    files: Annotated[
        list[str], typer.Argument(help="Exported files to serve (named by file stem).")
    ],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    max_batch: Annotated[
        int, typer.Option("--max-batch", min=1, help="Most rows coalesced into one runtime call.")
    ] = 64,
    max_delay_ms: Annotated[
        float,
        typer.Option("--max-delay-ms", min=0, help="Longest wait for more requests to batch."),
    ] = 2.0,
    max_body_mb: Annotated[
        float, typer.Option("--max-body-mb", min=0, help="Largest request body (413 beyond).")
    ] = 64.0,
    workers: Annotated[
        int,
        typer.Option("--workers", min=1, help="Processes answering on the one port."),
    ] = 1,
    trust: TrustOpt = False,
) -> None:
    """Serve exported models over HTTP: KServe v2 REST, POST /predict, GET /metrics.

    Every file passes the gate tk predict uses (integrity, --trust for code) before
    the server starts listening.
    """
    from toolkit.serve.model import load_models

    models = load_models(files, trust=trust)  # refused here: one line, its exit code
    max_body = int(max_body_mb * (1 << 20))
    sock = listen(host, port)
    names = ", ".join(models)
    bound = sock.getsockname()[1]
    typer.echo(f"serving {names} on http://{host}:{bound} (v2: /v2/models/NAME/infer)", err=True)
    if workers > 1:
        from toolkit.serve.workers import run_workers

        del models  # each worker opens the files itself; the parent only supervises
        settings = {"files": files, "trust": trust, "max_batch": max_batch,
                    "max_delay_ms": max_delay_ms, "max_body": max_body}  # fmt: skip
        run_workers(sock, workers, settings)
        return
    import uvicorn

    from toolkit.serve.app import create_app

    app = create_app(models, max_batch=max_batch, max_delay_ms=max_delay_ms, max_body=max_body)
    # uvicorn drains in-flight requests on SIGTERM/SIGINT, then re-raises the signal to
    # the handler it found: a no-op here, so a drained shutdown exits 0 (not -15).
    signal.signal(signal.SIGTERM, lambda *_: None)
    # The access log is tk's own middleware (toolkit/serve/access.py), not uvicorn's.
    config = uvicorn.Config(app, log_level="info", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` before the server starts: a port in use is one
    line (exit 2), not uvicorn's startup log."""
    from toolkit.errors import UsageError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise UsageError(f"cannot listen on {host}: {exc}", "--host 127.0.0.1") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", "--port with a free port"
        ) from None
    return sock


def register(app: typer.Typer) -> None:
    """Add ``tk serve`` to the tk app."""
    app.command("serve")(serve)
