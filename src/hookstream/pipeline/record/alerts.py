"""Operational alerts: ``connector.deactivated`` and ``delivery.failed`` events, queued to the
organization's alerts endpoint as ordinary signed deliveries (same engine, same retries).

Events are queued in the transaction that records what they report, so an alert is never
lost nor sent for something that did not happen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from hookstream.ids import new_id
from hookstream.models import Kind
from hookstream.pipeline.queue.enqueue import enqueue, plan_delivery
from hookstream.storage.repository import Repository

ALERT_KIND: str = Kind.ALERT.value


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """Something an organization's operators should hear about, raised by ``connector_id``."""

    type: str
    connector_id: str
    data: dict[str, Any] = field(default_factory=dict)


def alert_body(event: AlertEvent, org_id: str, now_ms: int) -> bytes:
    """The Standard Webhooks event shape: {"type", "timestamp", "data"}."""
    when = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="milliseconds")
    return orjson.dumps({
        "type": event.type,
        "timestamp": when.replace("+00:00", "Z"),
        "data": {"organizationId": org_id, "connectorId": event.connector_id, **event.data},
    })


async def enqueue_alerts(repo: Repository, events: list[AlertEvent], now_ms: int) -> int:
    """Queue each event to its organization's alerts connector; returns how many were queued."""
    if not events:
        return 0
    targets = {
        r.id: r for r in await repo.alert_targets(list({e.connector_id for e in events}))
    }
    messages, deliveries = [], []
    for event in events:
        target = targets.get(event.connector_id)
        if target is None:
            continue
        message_id = new_id("msg", now_ms)
        messages.append({
            "id": message_id, "org_id": target.org_id, "gateway_id": "", "kind": ALERT_KIND,
            "device_id": "", "body": alert_body(event, target.org_id, now_ms),
            "accepted_at": now_ms,
        })
        deliveries.append(plan_delivery(
            org_id=target.org_id, message_id=message_id,
            connector_id=target.alerts_connector_id, kind=ALERT_KIND, device_id="", now=now_ms,
        ))
    await repo.insert_messages(messages)
    # The recorder wakes its own process's workers after every write it commits.
    return await enqueue(repo, deliveries)
