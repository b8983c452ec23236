"""The message log and the delivery log: what arrived, where it went, and each attempt."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from hookstream.pipeline.message import Kind
from hookstream.services import logs, replay
from hookstream.web.api.common import Cursor, Limit, OrgId, RuntimeDep, parse_time

router = APIRouter(prefix="/api/v1")

Status = Literal["pending", "delivered", "failed", "held", "cancelled"]
Since = Annotated[str | None, Query(description="RFC 3339; from this time (inclusive)")]
Until = Annotated[str | None, Query(description="RFC 3339; before this time")]


@router.get("/messages", operation_id="listMessages", tags=["messages"],
            summary="The message log, newest first, with each message's deliveries")
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
    return await logs.list_messages(
        rt, org_id, gateway_id=gatewayId, device_id=deviceId, kind=kind,
        since_ms=parse_time(since, "since"), until_ms=parse_time(until, "until"),
        limit=limit, cursor=cursor,
    )


@router.get("/messages/{message_id}", operation_id="getMessage", tags=["messages"],
            summary="One message and the deliveries it was routed to")
async def get_message(message_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    return await logs.get_message(rt, org_id, message_id)


@router.get("/deliveries", operation_id="listDeliveries", tags=["deliveries"],
            summary="The delivery log, newest first")
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
    return await logs.list_deliveries(
        rt, org_id, connector_id=connectorId, status=status, device_id=deviceId,
        since_ms=parse_time(since, "since"), until_ms=parse_time(until, "until"),
        limit=limit, cursor=cursor,
    )


@router.get("/deliveries/{delivery_id}", operation_id="getDelivery", tags=["deliveries"],
            summary="One delivery with every attempt")
async def get_delivery(delivery_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    return await logs.get_delivery(rt, org_id, delivery_id)


@router.post("/deliveries/{delivery_id}/replay", operation_id="replayDelivery",
             tags=["deliveries"], status_code=202,
             summary="Send a delivery's message to its connector again (same webhook-id)")
async def replay_delivery(delivery_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    return await replay.replay_delivery(rt, org_id, delivery_id)
