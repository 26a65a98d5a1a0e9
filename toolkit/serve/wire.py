"""What every endpoint of ``tk serve`` does with a request body: read it under a cap
(413 past it, declared or streamed), parse it as JSON (400 saying where it is
malformed), and refuse it with a status and one line (:class:`HTTPError`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import Request

MAX_BODY = 64 << 20


class HTTPError(Exception):
    """A request refused with ``status`` and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (declared or streamed)."""
    return b"".join([chunk async for chunk in capped_stream(request, limit)])


async def capped_stream(request: Request, limit: int) -> Any:
    """The body's chunks, refused with 413 past ``limit`` bytes: the declared
    Content-Length before a byte is read, then the bytes actually streamed."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"body of {int(declared)} bytes is over the limit of {limit}")
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"body is over the limit of {limit} bytes")
        yield chunk


def parse_json(body: bytes) -> Any:
    """The body as JSON, or 400 saying where it is malformed."""
    if not body.strip():
        raise HTTPError(400, "empty body: a JSON document is needed")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPError(400, f"malformed JSON: {exc}") from None
