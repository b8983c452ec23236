"""``POST /ingest/v1/{kind}``: a gateway's messages, answered 202 only once committed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from hookstream.api.common import RuntimeDep, bearer
from hookstream.api.responses import JSON
from hookstream.errors import BadRequest, PayloadTooLarge, Unauthorized, ValidationFailed
from hookstream.ids import hash_key
from hookstream.ingest.message import MAX_BODY_BYTES, Kind, MessageFormatError, parse_messages
from hookstream.ingest.store import store_messages
from hookstream.metrics import DELIVERIES_ROUTED, INGEST_REJECTED, MESSAGES_INGESTED
from hookstream.storage.repository import Repository

router = APIRouter(tags=["ingest"])

_BODY_DOC: dict[str, Any] = {
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
    openapi_extra=_BODY_DOC,
    response_class=JSON,
)
async def ingest(kind: Kind, request: Request, rt: RuntimeDep) -> JSON:
    token = bearer(request)
    async with rt.db.read() as conn:
        gateway = await Repository(conn).gateway_by_token_hash(hash_key(token))
    if gateway is None:
        INGEST_REJECTED.labels("unauthorized").inc()
        raise Unauthorized("unknown ingest token")
    try:
        raw = await read_limited(request, MAX_BODY_BYTES)
    except PayloadTooLarge:
        INGEST_REJECTED.labels("too_large").inc()
        raise
    try:
        messages, _ = parse_messages(raw)
    except MessageFormatError as exc:
        INGEST_REJECTED.labels("invalid").inc()
        if exc.message.startswith("body is not valid JSON"):
            raise BadRequest(exc.message, code="malformed_json") from None
        raise ValidationFailed(exc.message, details=exc.details or None) from None
    async with rt.db.write() as conn:
        ids, routed = await store_messages(
            Repository(conn), org_id=gateway.org_id, gateway_id=gateway.id, kind=kind,
            messages=messages,
        )
    MESSAGES_INGESTED.labels(kind).inc(len(ids))
    if routed:
        DELIVERIES_ROUTED.labels(kind).inc(routed)
        rt.wakeup.set()
    return JSON({"accepted": len(ids), "ids": ids}, status_code=202)
