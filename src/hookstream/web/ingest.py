"""``POST /ingest/v1/{kind}``: a gateway's messages, answered 202 only once committed."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from hookstream.errors import (
    BadRequest,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)
from hookstream.metrics import DELIVERIES_ROUTED, INGEST_REJECTED, MESSAGES_INGESTED
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
from hookstream.web.api.common import RuntimeDep, bearer
from hookstream.web.api.responses import JSON

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
        }}},
    }
}


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/ingest/v1/{kind}",
    status_code=202,
    summary="Accept one message or an array of up to 1000 from a gateway",
    description=_DESCRIPTION,
    openapi_extra=_BODY_DOC,
    response_class=JSON,
)
async def ingest(kind: Kind, request: Request, rt: RuntimeDep) -> JSON:
    gateway = await rt.gateway_tokens.gateway(bearer(request))
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
    key = idempotency.check_key(request.headers.get(idempotency.HEADER))
    try:
        raw = await read_limited(request, MAX_BODY_BYTES)
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
            return _answered(answer)
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
        idempotency=claim,
    ))).answer()
    if not answer.replayed:
        MESSAGES_INGESTED.labels(kind).inc(answer.body["accepted"])
    if answer.routed:
        DELIVERIES_ROUTED.labels(kind).inc(answer.routed)
    wake(rt.wakeup, answer.routed)
    return _answered(answer)


def _answered(answer: idempotency.Answer) -> JSON:
    headers = {idempotency.REPLAYED_HEADER: "true"} if answer.replayed else None
    return JSON(answer.body, status_code=202, headers=headers)
