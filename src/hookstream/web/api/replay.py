"""Replay of a connector's range, cancelling a queued delivery, and the connector test button.

The single-delivery replay (``POST /api/v1/deliveries/{id}/replay``) and the dead-letter list
(``GET /api/v1/deliveries?status=failed``) are in ``logs.py``.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from pydantic import Field, field_validator

from hookstream.errors import Conflict, NotFound
from hookstream.ids import new_id, now_ms
from hookstream.pipeline.deliver.attempt import attempt
from hookstream.pipeline.deliver.client import Sender
from hookstream.pipeline.message import DatastreamMessage, Kind, to_body
from hookstream.pipeline.queue.enqueue import wake
from hookstream.pipeline.record.replay import STATUSES, parse_statuses, replay_connector
from hookstream.pipeline.worker import EndpointCache
from hookstream.storage.repository import Repository
from hookstream.web.api.common import OrgId, RuntimeDep, parse_time
from hookstream.web.api.logs import delivery_body
from hookstream.web.api.schemas import Strict

router = APIRouter(prefix="/api/v1", tags=["replay"])

# The most deliveries one API call replays; a larger range is a 422 asking to narrow it
# (``hookstream replay`` has no cap and shows its progress).
MAX_API_REPLAY = 100_000

_STATUS_SCHEMA: dict[str, Any] = {"type": "string", "enum": list(STATUSES)}


class ConnectorReplay(Strict):
    since: str = Field(description="RFC 3339: replay deliveries created from this time (inclusive)")
    until: str | None = Field(
        default=None, description="RFC 3339: ... and before this time (default: now)"
    )
    status: Any = Field(
        default=None,
        description="A status or a list of them (default: delivered, failed and cancelled)",
        json_schema_extra={"anyOf": [_STATUS_SCHEMA, {"type": "array", "items": _STATUS_SCHEMA,
                                                      "minItems": 1}]},
    )

    @field_validator("status")
    @classmethod
    def _statuses(cls, value: Any) -> tuple[str, ...] | None:
        return None if value is None else parse_statuses(value)


class ConnectorTest(Strict):
    kind: Kind = Field(description="Which route of the connector receives the sample message")


@router.post(
    "/connectors/{connector_id}/replay",
    status_code=202,
    tags=["connectors"],
    summary="Replay a connector's deliveries created in [since, until) with the given statuses",
    description=(
        "Creates one new delivery (`replayOf` = the original) per matching delivery, each "
        "keeping its message's `webhook-id`. Default statuses: delivered, failed, cancelled. "
        "New deliveries are `held` while the connector is switched off. At most "
        f"{MAX_API_REPLAY} deliveries per call: a larger range is a 422 "
        "(`replay_too_large`); narrow it, or use `hookstream replay`."
    ),
)
async def replay_range(
    connector_id: str, body: ConnectorReplay, org_id: OrgId, rt: RuntimeDep
) -> dict[str, Any]:
    since_ms = parse_time(body.since, "since")
    assert since_ms is not None
    result = await replay_connector(
        rt.db, org_id, connector_id,
        since_ms=since_ms,
        until_ms=parse_time(body.until, "until"),
        statuses=body.status or parse_statuses(None),
        max_rows=MAX_API_REPLAY,
    )
    wake(rt.wakeup, result.replayed - result.held)
    return {"replayed": result.replayed}


@router.post(
    "/deliveries/{delivery_id}/cancel",
    tags=["logs"],
    summary="Cancel a pending or held delivery (409 for one already delivered, failed or "
            "cancelled)",
)
async def cancel_delivery(delivery_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.db.write() as conn:
        repo = Repository(conn)
        cancelled = await repo.cancel_delivery(org_id, delivery_id, now_ms())
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
    return delivery_body(row)


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


@router.post(
    "/connectors/{connector_id}/test",
    tags=["connectors"],
    summary="Send a signed sample message of a kind to the connector now and report the answer",
    description=(
        "Sends one sample message (deviceId `hookstream-test`, tags `{\"test\": \"true\"}`) "
        "to the connector's route for `kind`, right away and not through the queue, signed "
        "and authenticated exactly like a delivery, with a fresh `webhook-id`. Works whether "
        "the connector is switched on or off. Nothing is stored. A receiver that cannot be "
        "reached is reported in `error` (the answer is still 200)."
    ),
)
async def test_connector(
    connector_id: str, body: ConnectorTest, org_id: OrgId, rt: RuntimeDep
) -> dict[str, Any]:
    async with rt.db.read() as conn:
        if await Repository(conn).get_connector(org_id, connector_id) is None:
            raise NotFound(f"no connector '{connector_id}'")
    endpoint = (await EndpointCache(rt.db, rt.box, rt.settings).get_many({connector_id})).get(
        connector_id
    )
    if endpoint is None:  # deleted meanwhile
        raise NotFound(f"no connector '{connector_id}'")
    webhook_id = new_id("msg")
    payload = sample_message(body.kind, int(time.time() * 1000))
    s = rt.settings
    sender = Sender.from_settings(s, max_connections=4)
    try:
        result = await attempt(sender, endpoint, body.kind, webhook_id, payload)
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
