"""``tk serve --workers N``: N processes answering on one listening socket.

The parent binds the socket (a port in use is still one line, exit 2) and opens
every file through the gate once, so a refused file stops it before any worker
starts. Then uvicorn's process supervisor spawns N workers, each handed the bound
socket; each worker builds its own app from the settings in ``TK_SERVE_WORKER``
(``worker_app``, an import-string factory: spawned processes share no memory with
the parent, and an onnxruntime session does not survive a fork). The kernel
spreads new connections over the workers accepting on the shared socket.

SIGTERM (or SIGINT) to the parent sends SIGTERM to every worker; each drains its
in-flight requests, and the parent exits 0 once all have. SIGHUP replaces the
workers one by one (a rolling restart), as uvicorn's supervisor does.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from toolkit.errors import TkError

ENV = "TK_SERVE_WORKER"


def run_workers(sock: socket.socket, workers: int, settings: dict[str, Any]) -> None:
    """Serve ``settings`` (``worker_app``'s keywords) from ``workers`` processes on ``sock``.

    Returns once every worker has exited after SIGTERM/SIGINT; raises TkError when a
    worker could not start (its own log line says why).
    """
    import shutil
    import tempfile

    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from toolkit.serve.metrics import MULTIPROC_ENV

    os.environ[ENV] = json.dumps(settings)  # read by each spawned worker
    # The workers count in one fresh directory (never a previous server's counts);
    # prometheus-client reads the variable when a worker first imports it.
    metrics_dir = tempfile.mkdtemp(prefix="tk-serve-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    config = uvicorn.Config(
        "toolkit.serve.workers:worker_app",
        factory=True,
        workers=workers,
        log_level="info",
        access_log=False,  # tk's own middleware writes it (toolkit/serve/access.py)
    )
    supervisor = Multiprocess(config, sockets=[sock])
    try:
        supervisor.run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    failed = [p.pid for p in supervisor.processes if p.exitcode == STARTUP_FAILURE]
    if failed:
        raise TkError(f"worker {failed[0]} failed to start (its error is logged above)")


def worker_app() -> Any:
    """The app of one worker process, from the parent's settings in ``TK_SERVE_WORKER``."""
    from toolkit.serve.app import create_app
    from toolkit.serve.metrics import MULTIPROC_ENV
    from toolkit.serve.model import load_models

    settings = json.loads(os.environ[ENV])
    models = load_models(settings["files"], trust=settings["trust"])
    return create_app(
        models,
        max_batch=settings["max_batch"],
        max_delay_ms=settings["max_delay_ms"],
        max_body=settings["max_body"],
        metrics_dir=os.environ[MULTIPROC_ENV],
    )
