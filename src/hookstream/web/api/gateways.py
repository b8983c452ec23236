"""Gateways (the vendor's "Towers") and their ingest tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from hookstream.services import gateways
from hookstream.services.schemas import GatewayCreate, GatewayUpdate, Rotation
from hookstream.web.api.common import Cursor, Limit, OrgId, RuntimeDep
from hookstream.web.api.docs import GATEWAY_EXAMPLES

router = APIRouter(prefix="/api/v1/gateways", tags=["gateways"])


@router.post("", operation_id="createGateway",
             status_code=201, summary="Create a gateway; its ingest token is shown once")
async def create(
    body: Annotated[GatewayCreate, Body(openapi_examples=GATEWAY_EXAMPLES)],
    org_id: OrgId, rt: RuntimeDep,
) -> dict[str, Any]:
    return await gateways.create(rt, org_id, body)


@router.get("", operation_id="listGateways", summary="List gateways")
async def list_(
    org_id: OrgId, rt: RuntimeDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    return await gateways.list_(rt, org_id, limit=limit, cursor=cursor)


@router.get("/{gateway_id}", operation_id="getGateway", summary="Get a gateway")
async def get(gateway_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    return await gateways.get(rt, org_id, gateway_id)


@router.patch("/{gateway_id}", operation_id="updateGateway",
              summary="Rename a gateway or change its external id")
async def update(
    gateway_id: str, body: GatewayUpdate, org_id: OrgId, rt: RuntimeDep
) -> dict[str, Any]:
    return await gateways.update(rt, org_id, gateway_id, body)


@router.delete("/{gateway_id}", operation_id="deleteGateway", status_code=204,
               summary="Delete a gateway (its token stops working, within 2 s in every process)")
async def delete(gateway_id: str, org_id: OrgId, rt: RuntimeDep) -> Response:
    await gateways.delete(rt, org_id, gateway_id)
    return Response(status_code=204)


@router.post("/{gateway_id}/rotate-token", operation_id="rotateGatewayToken",
             summary="A new ingest token; the current one keeps working for overlapSeconds "
                     "(default 24 h; 0 revokes it at once)")
async def rotate_token(
    gateway_id: str, org_id: OrgId, rt: RuntimeDep, body: Rotation | None = None
) -> dict[str, Any]:
    return await gateways.rotate_token(rt, org_id, gateway_id, body)
