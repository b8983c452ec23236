"""Replay (one delivery, or a connector's range), cancelling a queued delivery, and the
connector test button.

Replays keep the message's ``webhook-id``; what creates the new deliveries is the pipeline's
one enqueue (through ``pipeline.record.replay`` for a range).
"""

from __future__ import annotations

import time
from typing import Any

from hookstream.errors import Conflict, NotFound
from hookstream.ids import new_id, now_ms
from hookstream.pipeline.deliver.attempt import attempt
from hookstream.pipeline.deliver.client import Sender
from hookstream.pipeline.deliver.topics import Source
from hookstream.pipeline.message import DatastreamMessage, to_body
from hookstream.pipeline.queue.enqueue import enqueue, plan_delivery, wake
from hookstream.pipeline.record.replay import replay_connector
from hookstream.pipeline.worker import EndpointCache
from hookstream.services.connectors import not_found
from hookstream.services.logs import delivery_representation
from hookstream.services.runtime import Runtime
from hookstream.storage.repository import Repository

# The most deliveries one API or console call replays; a larger range is refused, asking to
# narrow it (``hookstream replay`` has no cap and shows its progress).
MAX_API_REPLAY = 100_000


async def replay_delivery(rt: Runtime, org_id: str, delivery_id: str) -> dict[str, Any]:
    """Send a delivery's message to its connector again (same webhook-id): a new delivery."""
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
    assert created is not None  # inserted in this transaction
    wake(rt.wakeup, due)
    return delivery_representation(created)


async def replay_range(
    rt: Runtime, org_id: str, connector_id: str, *, since_ms: int, until_ms: int | None,
    statuses: tuple[str, ...],
) -> int:
    """Replay the connector's deliveries created in [since, until) with these statuses; how
    many were created (ReplayTooLarge past ``MAX_API_REPLAY``)."""
    result = await replay_connector(
        rt.db, org_id, connector_id, since_ms=since_ms, until_ms=until_ms, statuses=statuses,
        max_rows=MAX_API_REPLAY,
    )
    wake(rt.wakeup, result.replayed - result.held)
    return result.replayed


async def cancel_delivery(rt: Runtime, org_id: str, delivery_id: str) -> dict[str, Any]:
    """Cancel a pending or held delivery; Conflict for one already finished."""
    async with rt.db.write() as conn:
        repo = Repository(conn)
        cancelled = await repo.cancel_delivery(org_id, delivery_id, now_ms())
        if cancelled:  # its queue row goes, with its lease: an attempt in flight records nothing
            await repo.cancel_queued_delivery(delivery_id)
        row = await repo.get_delivery(org_id, delivery_id)
    if row is None:
        raise NotFound(f"no delivery '{delivery_id}'")
    if not cancelled:
        raise Conflict(
            f"delivery '{delivery_id}' is {row.status}; only pending or held deliveries "
            "can be cancelled",
            code="not_cancellable",
            details=[{"field": "status", "message": f"the delivery is {row.status}"}],
        )
    return delivery_representation(row)


# What each kind of sample reports; the rest of the message is the same for all.
_SAMPLES: dict[str, dict[str, Any]] = {
    "values": {"property": "temperature", "payload": 215, "scaledPayload": 21.5, "unit": "°C"},
    "events": {"property": "door", "payload": "open", "scaledPayload": None, "unit": None},
    "alarms": {"property": "overheat", "payload": True, "scaledPayload": None, "unit": None},
}


def sample_message(kind: str, at_ms: int) -> bytes:
    """A realistic datastream message of ``kind``, as delivered (the 15 fields, in order)."""
    sample = _SAMPLES[kind]
    message = DatastreamMessage.model_validate({
        "deviceId": "hookstream-test",
        "timestamp": at_ms,
        "receivedAt": at_ms,
        "name": "hookstream test device",
        "externalId": "hookstream-test",
        "propertyId": f"hookstream-test-{sample['property']}",
        "equipmentId": "hookstream-test-equipment",
        "gatewayInterfaceId": "hookstream-test-interface",
        "slug": sample["property"],
        "isOutOfService": False,
        "tags": {"test": "true"},
        **sample,
    })
    return to_body(message, at_ms)


async def test_connector(rt: Runtime, org_id: str, connector_id: str, kind: str
                         ) -> dict[str, Any]:
    """Send a signed sample of ``kind`` to the connector now, outside the queue; its answer.

    Nothing is stored; a receiver that cannot be reached is reported in ``error``."""
    async with rt.db.read() as conn:
        if await Repository(conn).get_connector(org_id, connector_id) is None:
            raise not_found(connector_id)
    endpoint = (await EndpointCache(rt.db, rt.box, rt.settings).get_many({connector_id})).get(
        connector_id
    )
    if endpoint is None:  # deleted meanwhile
        raise not_found(connector_id)
    webhook_id = new_id("msg")
    payload = sample_message(kind, int(time.time() * 1000))
    sender = Sender.from_settings(rt.settings, max_connections=4)
    try:
        # A broker connector's topic names the sample's device and property.
        source = Source(kind, device_id="hookstream-test", property=_SAMPLES[kind]["property"])
        result = await attempt(sender, endpoint, kind, webhook_id, payload, source=source,
                               transforms=rt.transforms)
    finally:
        await sender.close()
    return {
        "webhookId": webhook_id,
        "statusCode": result.status_code,
        "durationMs": result.duration_ms,
        "responseBody": result.response_body,
        "error": result.error,
        "succeeded": result.succeeded,
    }
