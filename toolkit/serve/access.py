"""``tk serve``'s access log: one line per request, on standard output.

The line is uvicorn's own (``INFO:     127.0.0.1:50312 - "POST /v2/models/m/infer
HTTP/1.1" 200 OK``), written by this middleware instead of uvicorn's logger:
through the logging module (a record, a formatter, a handler's lock and a flush,
so a write system call, per request) the line cost a small model about a sixth of
its requests per second at concurrency 64. Here it is one formatted string into
the stream's buffer, flushed at most ``FLUSH_S`` after the first line waiting in it
(a terminal's stream flushes each line itself): under load one write per tenth of
a second, idle a line within a tenth of a second. A process killed outright loses
at most that tenth of a second of lines; a drained shutdown flushes them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from http import HTTPStatus
from typing import Any, TextIO

from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

# "200 OK", "404 Not Found", ...; a status outside the standard ones shows its number.
PHRASES = {int(s): f"{int(s)} {s.phrase}" for s in HTTPStatus}
FLUSH_S = 0.1


class AccessLog:
    """ASGI middleware: after each HTTP request, its access line on ``stream``."""

    def __init__(self, app: Any, stream: TextIO | None = None) -> None:
        self.app = app
        self.stream = stream
        self._flush_due = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the request, noting the status it was answered with, then log it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets when the app fails before it answers

        async def noted(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            self._write(scope, status)

    def _write(self, scope: dict[str, Any], status: int) -> None:
        # uvicorn's own helpers: the raw (still percent-encoded) path with '"' escaped,
        # so a request cannot write a line break or a quote into the log.
        line = (
            f'INFO:     {get_client_addr(scope) or "-"} - "{scope["method"]} '
            f'{get_path_with_query_string(scope)} HTTP/{scope["http_version"]}" '
            f"{PHRASES.get(status, status)}\n"
        )
        try:
            self._stream().write(line)
        except (OSError, ValueError):
            return  # a closed or full log must not fail the request it records
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_later(FLUSH_S, self.flush)

    def flush(self) -> None:
        """Write out the lines waiting in the stream's buffer."""
        self._flush_due = False
        with contextlib.suppress(OSError, ValueError):
            self._stream().flush()

    def _stream(self) -> TextIO:
        return self.stream or sys.stdout  # looked up late: tests and tools swap stdout
