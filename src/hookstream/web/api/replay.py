"""Replay of a connector's range, cancelling a queued delivery, and the connector test button.

The single-delivery replay (``POST /api/v1/deliveries/{id}/replay``) and the dead-letter list
(``GET /api/v1/deliveries?status=failed``) are in ``logs.py``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from hookstream.pipeline.record.replay import parse_statuses
from hookstream.services import replay
from hookstream.services.schemas import ConnectorReplay, ConnectorTest
from hookstream.web.api.common import OrgId, RuntimeDep, parse_time

router = APIRouter(prefix="/api/v1")


@router.post(
    "/connectors/{connector_id}/replay", operation_id="replayConnector",
    status_code=202,
    tags=["connectors"],
    summary="Replay a connector's deliveries created in [since, until) with the given statuses",
    description=(
        "Creates one new delivery (`replayOf` = the original) per matching delivery, each "
        "keeping its message's `webhook-id`. Default statuses: delivered, failed, cancelled. "
        "New deliveries are `held` while the connector is switched off. At most "
        f"{replay.MAX_API_REPLAY} deliveries per call: a larger range is a 422 "
        "(`replay_too_large`); narrow it, or use `hookstream replay`."
    ),
)
async def replay_range(
    connector_id: str, body: ConnectorReplay, org_id: OrgId, rt: RuntimeDep
) -> dict[str, Any]:
    since_ms = parse_time(body.since, "since")
    assert since_ms is not None
    replayed = await replay.replay_range(
        rt, org_id, connector_id, since_ms=since_ms, until_ms=parse_time(body.until, "until"),
        statuses=body.status or parse_statuses(None),
    )
    return {"replayed": replayed}


@router.post(
    "/deliveries/{delivery_id}/cancel", operation_id="cancelDelivery",
    tags=["deliveries"],
    summary="Cancel a pending or held delivery (409 for one already delivered, failed or "
            "cancelled)",
)
async def cancel_delivery(delivery_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    return await replay.cancel_delivery(rt, org_id, delivery_id)


@router.post(
    "/connectors/{connector_id}/test", operation_id="testConnector",
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
    return await replay.test_connector(rt, org_id, connector_id, body.kind)
