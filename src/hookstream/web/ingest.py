"""``POST /ingest/v1/{kind}``: a gateway's messages, answered 202 only once committed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hookstream import tracing
from hookstream.errors import (
    BadRequest,
    PayloadTooLarge,
    Refused,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)
from hookstream.kinds import KINDS
from hookstream.metrics import (
    DELIVERIES_ROUTED,
    INGEST_REJECTED,
    INGEST_RESPONSES,
    MESSAGES_INGESTED,
    status_class,
)
from hookstream.pipeline.ingest import idempotency
from hookstream.pipeline.ingest.intake import Idempotency, Submission
from hookstream.pipeline.message import (
    MAX_BODY_BYTES,
    Kind,
    MalformedJson,
    MessageFormatError,
    parse_messages,
)
from hookstream.pipeline.queue.enqueue import wake
from hookstream.services.runtime import Runtime
from hookstream.web.api.common import RuntimeDep, bearer_token
from hookstream.web.api.docs import INGEST_EXAMPLES
from hookstream.web.api.errors import error_body
from hookstream.web.api.responses import JSON
from hookstream.web.statuses import status_for

router = APIRouter(tags=["ingest"])

_DESCRIPTION = f"""
Authenticate with the gateway's ingest token (`Authorization: Bearer <ingestToken>`). The body
is one datastream message or an array of 1 to 1000. The answer is `202 {{"accepted", "ids"}}`
once the messages and their deliveries are committed; nothing of a refused request is stored.

**Idempotent retries**: send an `{idempotency.HEADER}` header (1 to
{idempotency.MAX_KEY_LENGTH} characters, unique per request, e.g. a UUID) and send the same
request again with the same key when you did not get an answer. Within
`HOOKSTREAM_IDEMPOTENCY_WINDOW_SECONDS` (24 h by default) a repeat from the same gateway is
answered with the first answer (the same `202` and the same `ids`) plus the header
`{idempotency.REPLAYED_HEADER}: true`, and stores nothing. Keys are per gateway. The same key
with a different body or kind within the window is refused with 422
(`idempotency_key_reused`). After the window a key counts as new. An empty or longer key is a
422.
"""

_BODY_DOC: dict[str, Any] = {
    "parameters": [{
        "name": idempotency.HEADER,
        "in": "header",
        "required": False,
        "description": "Makes a retried request safe: a repeat within the window gets the "
                       "first answer and stores nothing.",
        "schema": {"type": "string", "minLength": 1,
                   "maxLength": idempotency.MAX_KEY_LENGTH},
    }, {
        "name": tracing.HEADER,
        "in": "header",
        "required": False,
        "description": "W3C Trace Context: the messages' traces continue the gateway's, and "
                       "their webhooks carry it on (an invalid value is ignored).",
        "schema": {"type": "string",
                   "example": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    }],
    "responses": {"202": {"headers": {idempotency.REPLAYED_HEADER: {
        "description": "`true` when this is the stored answer to an earlier request with "
                       f"the same {idempotency.HEADER} (nothing new was stored).",
        "schema": {"type": "string", "enum": ["true"]},
    }}, "content": {"application/json": {"schema": {  # FastAPI would say "a string"
        "type": "object", "required": ["accepted", "ids"], "additionalProperties": False,
        "properties": {"accepted": {"type": "integer", "minimum": 1},
                       "ids": {"type": "array", "items": {"type": "string"}}},
    }}}}},
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "oneOf": [
                {"$ref": "#/components/schemas/DatastreamMessage"},
                {"type": "array", "minItems": 1, "maxItems": 1000,
                 "items": {"$ref": "#/components/schemas/DatastreamMessage"}},
            ]
        }, "examples": INGEST_EXAMPLES}},
    }
}


async def read_limited(declared: str | None, chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading them all."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def accept(
    rt: Runtime, kind: str, *, authorization: str, idempotency_key: str | None,
    content_length: str | None, chunks: AsyncIterator[bytes], traceparent: str | None = None,
) -> idempotency.Answer:
    """Authenticate, read, check and store one ingest request; the answer to send (202).

    Refusals raise the matching ``Refused`` (nothing of a refused request is stored). Both
    the FastAPI route and the fast lane (``IngestLane``) come here. ``traceparent`` is the
    gateway's W3C header: the request's span continues it (tracing on), or its messages'
    webhooks carry it on (tracing off)."""
    if rt.tracing is None:
        return await _accept(rt, kind, authorization, idempotency_key, content_length, chunks,
                             tracing.passed_on(traceparent))
    route = f"/ingest/v1/{kind}"
    with rt.tracing.span(f"POST {route}", parent=traceparent, kind="server", attributes={
        "http.request.method": "POST", "http.route": "/ingest/v1/{kind}", "url.path": route,
    }) as span:
        try:
            answer = await _accept(rt, kind, authorization, idempotency_key, content_length,
                                   chunks, rt.tracing.traceparent(span))
        except Refused as exc:
            span.set_attribute("http.response.status_code", status_for(exc))
            raise
        span.set_attributes({"http.response.status_code": 202,
                             "hookstream.messages": answer.body["accepted"]})
        return answer


async def _accept(
    rt: Runtime, kind: str, authorization: str, idempotency_key: str | None,
    content_length: str | None, chunks: AsyncIterator[bytes], traceparent: str | None,
) -> idempotency.Answer:
    gateway = await rt.gateway_tokens.gateway(bearer_token(authorization))
    if gateway is None:
        INGEST_REJECTED.labels("unauthorized").inc()
        raise Unauthorized("unknown ingest token")
    if rt.ingest_token_limiter is not None:
        decision = rt.ingest_token_limiter.take(gateway.id, time.monotonic())
        if not decision.allowed:
            INGEST_REJECTED.labels("rate_limited").inc()
            raise TooManyRequests(
                "this gateway sends more than HOOKSTREAM_INGEST_TOKEN_RATE_PER_MINUTE "
                f"requests a minute; try again in {decision.retry_after} s",
                retry_after=decision.retry_after,
            )
    key = idempotency.check_key(idempotency_key)
    try:
        raw = await read_limited(content_length, chunks, MAX_BODY_BYTES)
    except PayloadTooLarge:
        INGEST_REJECTED.labels("too_large").inc()
        raise
    window = rt.settings.idempotency_window_seconds
    digest = idempotency.request_hash(kind, raw) if key is not None else ""
    if key is not None:
        # A repeat is answered without parsing the body again or taking the write lock.
        answer = await idempotency.find_answer(
            rt.db, gateway_id=gateway.id, key=key, digest=digest, window_seconds=window
        )
        if answer is not None:
            return answer
    try:
        messages, _ = parse_messages(raw, rt.message_limits)
    except MalformedJson as exc:
        INGEST_REJECTED.labels("invalid").inc()
        raise BadRequest(exc.message, code="malformed_json") from None
    except MessageFormatError as exc:
        INGEST_REJECTED.labels("invalid").inc()
        raise ValidationFailed(exc.message, details=exc.details or None) from None
    claim = Idempotency(key, digest, window) if key is not None else None
    answer = (await rt.intake.store(Submission(
        gateway_id=gateway.id, kind=kind, messages=messages, org_id=gateway.org_id,
        idempotency=claim, traceparent=traceparent,
    ))).answer()
    if not answer.replayed:
        MESSAGES_INGESTED.labels(kind).inc(answer.body["accepted"])
    if answer.routed:
        DELIVERIES_ROUTED.labels(kind).inc(answer.routed)
    wake(rt.wakeup, answer.routed)
    return answer


@router.post(
    "/ingest/v1/{kind}",
    operation_id="ingestMessages",
    status_code=202,
    summary="Accept one message or an array of up to 1000 from a gateway",
    description=_DESCRIPTION,
    openapi_extra=_BODY_DOC,
    response_class=JSON,
)
async def ingest(kind: Kind, request: Request, rt: RuntimeDep) -> JSON:
    answer = await accept(
        rt, kind, authorization=request.headers.get("authorization", ""),
        idempotency_key=request.headers.get(idempotency.HEADER),
        content_length=request.headers.get("content-length"), chunks=request.stream(),
        traceparent=request.headers.get(tracing.HEADER),
    )
    headers = {idempotency.REPLAYED_HEADER: "true"} if answer.replayed else None
    return JSON(answer.body, status_code=202, headers=headers)


# --- the fast lane ----------------------------------------------------------------------

_PREFIX = "/ingest/v1/"
_KINDS = frozenset(KINDS)
_IDEMPOTENCY = idempotency.HEADER.lower().encode("latin-1")


class _Gone(Exception):
    """The client went away before its body was read."""


class IngestLane:
    """ASGI middleware: ``POST /ingest/v1/{kind}`` answered without FastAPI's routing and
    dependency machinery (most of a single message's cost, measured in the bench note).

    Same code (``accept``), same answers: a refusal gets the contract's error body; any other
    failure hands the request, body replayed, to the FastAPI route, whose exception handlers
    answer it as they always did (a database restart is a 503)."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST"
                or not scope["path"].startswith(_PREFIX)
                or scope["path"][len(_PREFIX):] not in _KINDS):
            await self.app(scope, receive, send)
            return
        answered = False

        async def counted(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                INGEST_RESPONSES.labels(
                    status_class(message["status"], timed_out=False, refused=False)
                ).inc()
            await send(message)

        try:
            await self._ingest(scope, receive, counted)
        except Exception:
            if not answered:  # Starlette's error middleware, outside, answers it with a 500
                INGEST_RESPONSES.labels("5xx").inc()
            raise

    async def _ingest(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["path"][len(_PREFIX):]
        headers = dict(scope["headers"])
        received: list[Message] = []

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                received.append(message)
                if message["type"] != "http.request":
                    raise _Gone
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        def header(name: bytes) -> str | None:
            value = headers.get(name)
            return None if value is None else value.decode("latin-1")

        try:
            answer = await accept(
                self.runtime, kind, authorization=header(b"authorization") or "",
                idempotency_key=header(_IDEMPOTENCY), content_length=header(b"content-length"),
                chunks=chunks(), traceparent=header(b"traceparent"),
            )
        except _Gone:
            return
        except Refused as exc:
            body = error_body(status_for(exc), exc.code, exc.message, exc.details)
            await _respond(send, status_for(exc), orjson.dumps(body), exc.headers)
            return
        except Exception:  # noqa: BLE001 - the route's handlers answer it, as before
            await self.app(scope, _replay(received, receive), send)
            return
        extra = {idempotency.REPLAYED_HEADER: "true"} if answer.replayed else None
        await _respond(send, 202, orjson.dumps(answer.body), extra)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that gives ``messages`` again first, then what is still to come."""
    pending = list(messages)

    async def again() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return again


async def _respond(send: Send, status: int, body: bytes,
                   headers: dict[str, str] | None) -> None:
    raw = [(b"content-type", b"application/json"),
           (b"content-length", str(len(body)).encode("latin-1"))]
    for name, value in (headers or {}).items():
        raw.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
