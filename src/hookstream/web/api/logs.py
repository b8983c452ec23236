"""The message log and the delivery log: what arrived, where it went, and each attempt."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query

from hookstream.errors import NotFound
from hookstream.models import DeliveryStatus
from hookstream.pipeline.message import Kind
from hookstream.pipeline.queue.enqueue import enqueue, plan_delivery, wake
from hookstream.storage.repository import Repository
from hookstream.web.api.common import (
    Cursor,
    Limit,
    OrgId,
    RuntimeDep,
    decode_cursor,
    page,
    parse_time,
    rfc3339,
)

router = APIRouter(prefix="/api/v1", tags=["logs"])

Status = Literal["pending", "delivered", "failed", "held", "cancelled"]
Since = Annotated[str | None, Query(description="RFC 3339; from this time (inclusive)")]
Until = Annotated[str | None, Query(description="RFC 3339; before this time")]


def delivery_body(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "messageId": row.message_id,
        "webhookId": row.message_id,
        "connectorId": row.connector_id,
        "kind": row.kind,
        "deviceId": row.device_id,
        "status": row.status,
        "attemptCount": row.attempts,
        "nextAttemptAt": (
            rfc3339(row.next_attempt_at) if row.status == DeliveryStatus.PENDING else None
        ),
        "lastStatusCode": row.last_status_code,
        "lastError": row.last_error,
        "replayOf": row.replay_of,
        "batchId": row.batch_id,  # the webhook-id of the batch it was sent in, if any
        "createdAt": rfc3339(row.created_at),
        "updatedAt": rfc3339(row.updated_at),
    }


def _message(row: Any, deliveries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "gatewayId": row.gateway_id,
        "deviceId": row.device_id,
        "acceptedAt": rfc3339(row.accepted_at),
        "message": orjson.loads(row.body),
        "deliveries": deliveries,
    }


@router.get("/messages", summary="The message log, newest first, with each message's deliveries")
async def list_messages(
    org_id: OrgId,
    rt: RuntimeDep,
    gatewayId: str | None = None,
    deviceId: str | None = None,
    kind: Kind | None = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    filters = dict(
        gateway_id=gatewayId, device_id=deviceId, kind=kind,
        since_ms=parse_time(since, "since"), until_ms=parse_time(until, "until"),
        before=decode_cursor(cursor), limit=limit,
    )
    async with rt.db.read() as conn:
        repo = Repository(conn)
        rows = await repo.list_messages(org_id, **filters)
        dels = await repo.deliveries_of_messages([r.id for r in rows])
    by_message: dict[str, list[dict[str, Any]]] = {}
    for d in dels:
        by_message.setdefault(d.message_id, []).append(delivery_body(d))
    return page([_message(r, by_message.get(r.id, [])) for r in rows], limit)


@router.get("/messages/{message_id}", summary="One message and the deliveries it was routed to")
async def get_message(message_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.db.read() as conn:
        repo = Repository(conn)
        row = await repo.get_message(org_id, message_id)
        if row is None:
            raise NotFound(f"no message '{message_id}'")
        dels = await repo.deliveries_of_messages([message_id])
    return _message(row, [delivery_body(d) for d in dels])


@router.get("/deliveries", summary="The delivery log, newest first")
async def list_deliveries(
    org_id: OrgId,
    rt: RuntimeDep,
    connectorId: str | None = None,
    status: Status | None = None,
    deviceId: str | None = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    filters = dict(
        connector_id=connectorId, status=status, device_id=deviceId,
        since_ms=parse_time(since, "since"), until_ms=parse_time(until, "until"),
        before=decode_cursor(cursor), limit=limit,
    )
    async with rt.db.read() as conn:
        rows = await Repository(conn).list_deliveries(org_id, **filters)
    return page([delivery_body(r) for r in rows], limit)


@router.get("/deliveries/{delivery_id}", summary="One delivery with every attempt")
async def get_delivery(delivery_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.db.read() as conn:
        repo = Repository(conn)
        row = await repo.get_delivery(org_id, delivery_id)
        if row is None:
            raise NotFound(f"no delivery '{delivery_id}'")
        attempts = await repo.list_attempts(delivery_id)
    body = delivery_body(row)
    body["attempts"] = [
        {
            "id": a.id,
            "number": a.number,
            "startedAt": rfc3339(a.started_at),
            "durationMs": a.duration_ms,
            "statusCode": a.status_code,
            "responseBody": a.response_body,
            "error": a.error,
        }
        for a in attempts
    ]
    return body


@router.post("/deliveries/{delivery_id}/replay", status_code=202,
             summary="Send a delivery's message to its connector again (same webhook-id)")
async def replay_delivery(delivery_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    now = int(time.time() * 1000)
    async with rt.db.write() as conn:
        repo = Repository(conn)
        row = await repo.get_delivery(org_id, delivery_id)
        if row is None:
            raise NotFound(f"no delivery '{delivery_id}'")
        connector = await repo.get_connector(org_id, row.connector_id)
        if connector is None:
            raise NotFound(f"the connector '{row.connector_id}' of this delivery was deleted")
        new = plan_delivery(
            org_id=org_id, message_id=row.message_id, connector_id=row.connector_id,
            kind=row.kind, device_id=row.device_id, now=now, active=bool(connector.active),
            replay_of=row.id,
        )
        due = await enqueue(repo, [new])
        created = await repo.get_delivery(org_id, new["id"])
    wake(rt.wakeup, due)
    return delivery_body(created)
