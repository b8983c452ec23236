"""The message log and the delivery log: what arrived, where it went, and each attempt."""

from __future__ import annotations

from typing import Any

import orjson

from hookstream.errors import NotFound
from hookstream.models import Delivery, DeliveryStatus, Message
from hookstream.services.paging import decode_cursor, page
from hookstream.services.runtime import Runtime
from hookstream.services.times import rfc3339
from hookstream.storage.repository import Repository


def delivery_representation(row: Delivery) -> dict[str, Any]:
    """A delivery as the API shows it (``webhookId`` is its message's id)."""
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


def _message(row: Message, deliveries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "gatewayId": row.gateway_id,
        "deviceId": row.device_id,
        "acceptedAt": rfc3339(row.accepted_at),
        "message": orjson.loads(row.body),
        "deliveries": deliveries,
    }


async def list_messages(
    rt: Runtime, org_id: str, *, gateway_id: str | None = None, device_id: str | None = None,
    kind: str | None = None, since_ms: int | None = None, until_ms: int | None = None,
    limit: int, cursor: str | None = None,
) -> dict[str, Any]:
    """One page of the message log, newest first, each message with its deliveries."""
    async with rt.db.read() as conn:
        repo = Repository(conn)
        rows = await repo.list_messages(
            org_id, gateway_id=gateway_id, device_id=device_id, kind=kind, since_ms=since_ms,
            until_ms=until_ms, before=decode_cursor(cursor), limit=limit,
        )
        dels = await repo.deliveries_of_messages([r.id for r in rows])
    by_message: dict[str, list[dict[str, Any]]] = {}
    for d in dels:
        by_message.setdefault(d.message_id, []).append(delivery_representation(d))
    return page([_message(r, by_message.get(r.id, [])) for r in rows], limit)


async def get_message(rt: Runtime, org_id: str, message_id: str) -> dict[str, Any]:
    """One message and the deliveries it was routed to."""
    async with rt.db.read() as conn:
        repo = Repository(conn)
        row = await repo.get_message(org_id, message_id)
        if row is None:
            raise NotFound(f"no message '{message_id}'")
        dels = await repo.deliveries_of_messages([message_id])
    return _message(row, [delivery_representation(d) for d in dels])


async def list_deliveries(
    rt: Runtime, org_id: str, *, connector_id: str | None = None, status: str | None = None,
    device_id: str | None = None, since_ms: int | None = None, until_ms: int | None = None,
    limit: int, cursor: str | None = None,
) -> dict[str, Any]:
    """One page of the delivery log, newest first."""
    async with rt.db.read() as conn:
        rows = await Repository(conn).list_deliveries(
            org_id, connector_id=connector_id, status=status, device_id=device_id,
            since_ms=since_ms, until_ms=until_ms, before=decode_cursor(cursor), limit=limit,
        )
    return page([delivery_representation(r) for r in rows], limit)


async def get_delivery(rt: Runtime, org_id: str, delivery_id: str) -> dict[str, Any]:
    """One delivery with every attempt, oldest first."""
    async with rt.db.read() as conn:
        repo = Repository(conn)
        row = await repo.get_delivery(org_id, delivery_id)
        if row is None:
            raise NotFound(f"no delivery '{delivery_id}'")
        attempts = await repo.list_attempts(delivery_id)
    body = delivery_representation(row)
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
