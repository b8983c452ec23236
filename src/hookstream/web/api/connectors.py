"""Connectors (where and how to deliver), their triggers and the activation toggle."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from hookstream.services import connectors, triggers
from hookstream.services.schemas import (
    ConnectorCreate,
    ConnectorUpdate,
    RotateSecret,
    TriggerCreate,
)
from hookstream.web.api.common import Cursor, Limit, OrgId, RuntimeDep

router = APIRouter(prefix="/api/v1/connectors", tags=["connectors"])


@router.post("", status_code=201,
             summary="Create a connector; its signing secret is shown this once")
async def create(body: ConnectorCreate, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    return await connectors.create(rt, org_id, body)


@router.get("", summary="List connectors")
async def list_(
    org_id: OrgId, rt: RuntimeDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    return await connectors.list_(rt, org_id, limit=limit, cursor=cursor)


@router.get("/{connector_id}", summary="Get a connector (secrets are never shown again)")
async def get(connector_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    return await connectors.get(rt, org_id, connector_id)


@router.patch(
    "/{connector_id}",
    summary="Change a connector; {'active': false} holds its queued deliveries, true resumes them",
)
async def update(
    connector_id: str, body: ConnectorUpdate, org_id: OrgId, rt: RuntimeDep
) -> dict[str, Any]:
    return await connectors.update(rt, org_id, connector_id, body)


@router.post(
    "/{connector_id}/rotate-secret",
    summary="Replace the signing secret; the previous one keeps signing for a grace period",
)
async def rotate_secret(
    connector_id: str, org_id: OrgId, rt: RuntimeDep, body: RotateSecret | None = None
) -> dict[str, Any]:
    return await connectors.rotate_secret(rt, org_id, connector_id, body)


@router.delete("/{connector_id}", status_code=204,
               summary="Delete a connector; its queued deliveries are cancelled")
async def delete(connector_id: str, org_id: OrgId, rt: RuntimeDep) -> Response:
    await connectors.delete(rt, org_id, connector_id)
    return Response(status_code=204)


@router.post("/{connector_id}/triggers", status_code=201, tags=["triggers"],
             summary="Add a trigger: which kinds, from which gateways (or all of them)")
async def create_trigger(
    connector_id: str, body: TriggerCreate, org_id: OrgId, rt: RuntimeDep
) -> dict[str, Any]:
    return await triggers.create(rt, org_id, connector_id, body)


@router.get("/{connector_id}/triggers", tags=["triggers"], summary="List a connector's triggers")
async def list_triggers(connector_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    return await triggers.list_(rt, org_id, connector_id)


@router.delete("/{connector_id}/triggers/{trigger_id}", status_code=204, tags=["triggers"],
               summary="Remove a trigger")
async def delete_trigger(
    connector_id: str, trigger_id: str, org_id: OrgId, rt: RuntimeDep
) -> Response:
    await triggers.delete(rt, org_id, connector_id, trigger_id)
    return Response(status_code=204)
