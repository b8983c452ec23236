"""The body size limit of the management, thermostat, OAuth2 and console endpoints.

Ingest has its own limit (1 MiB, read as it streams); every other request body is read here up
to ``HOOKSTREAM_API_MAX_BODY_BYTES`` and answered 413 beyond it, before any route parses it.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hookstream.web.api.errors import error_body

_LIMITED = ("/api/", "/smarther/", "/oauth2/", "/console/")
# A refused body is still read (and dropped) up to this much, so that the client, still
# sending, reads the 413 instead of a reset connection; beyond it the connection is closed.
_DRAIN_LIMIT = 8 * 1024 * 1024


class BodyLimit:
    """ASGI middleware: a request body larger than ``max_bytes`` is answered 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(_LIMITED):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            drained = declared <= _DRAIN_LIMIT and await _drain(receive, 0)
            await self._too_large(scope, send, close=not drained)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                drained = not message.get("more_body", False) or await _drain(receive, size)
                await self._too_large(scope, send, close=not drained)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _too_large(self, scope: Scope, send: Send, *, close: bool) -> None:
        text = f"the body is larger than {self.max_bytes} bytes (HOOKSTREAM_API_MAX_BODY_BYTES)"
        payload = error_body(413, "payload_too_large", text, None, scope.get("app"),
                             scope.get("path", ""))
        raw = orjson.dumps(payload)
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(raw)).encode())]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": raw})


async def _drain(receive: Receive, size: int) -> bool:
    """Read the rest of the body and drop it; False when it ran past the drain limit."""
    while size <= _DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return False
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that hands out ``messages`` first, then whatever the client sends next."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
