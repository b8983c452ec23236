"""Connectors (where and how to deliver), their triggers and the activation toggle."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from hookstream.services import connectors, triggers
from hookstream.services.schemas import (
    ConnectorCreate,
    ConnectorUpdate,
    RotateSecret,
    TriggerCreate,
)
from hookstream.web.api.common import Cursor, Limit, OrgId, RuntimeDep
from hookstream.web.api.docs import CONNECTOR_EXAMPLES, TRIGGER_EXAMPLES

router = APIRouter(prefix="/api/v1/connectors", tags=["connectors"])
# A connector's triggers, under its path but documented as a resource of their own.
triggers_router = APIRouter(prefix="/api/v1/connectors", tags=["triggers"])


@router.post("", operation_id="createConnector", status_code=201,
             summary="Create a connector; its signing secret is shown this once")
async def create(
    body: Annotated[ConnectorCreate, Body(openapi_examples=CONNECTOR_EXAMPLES)],
    org_id: OrgId, rt: RuntimeDep,
) -> dict[str, Any]:
    return await connectors.create(rt, org_id, body)


@router.get("", operation_id="listConnectors", summary="List connectors")
async def list_(
    org_id: OrgId, rt: RuntimeDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    return await connectors.list_(rt, org_id, limit=limit, cursor=cursor)


@router.get("/{connector_id}", operation_id="getConnector",
            summary="Get a connector (secrets are never shown again)")
async def get(connector_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    return await connectors.get(rt, org_id, connector_id)


@router.patch(
    "/{connector_id}", operation_id="updateConnector",
    summary="Change a connector; {'active': false} holds its queued deliveries, true resumes them",
)
async def update(
    connector_id: str, body: ConnectorUpdate, org_id: OrgId, rt: RuntimeDep
) -> dict[str, Any]:
    return await connectors.update(rt, org_id, connector_id, body)


@router.post(
    "/{connector_id}/rotate-secret", operation_id="rotateConnectorSecret",
    summary="Replace the signing secret; the previous one keeps signing for a grace period",
)
async def rotate_secret(
    connector_id: str, org_id: OrgId, rt: RuntimeDep, body: RotateSecret | None = None
) -> dict[str, Any]:
    return await connectors.rotate_secret(rt, org_id, connector_id, body)


@router.delete("/{connector_id}", operation_id="deleteConnector", status_code=204,
               summary="Delete a connector; its queued deliveries are cancelled")
async def delete(connector_id: str, org_id: OrgId, rt: RuntimeDep) -> Response:
    await connectors.delete(rt, org_id, connector_id)
    return Response(status_code=204)


@triggers_router.post("/{connector_id}/triggers", operation_id="createTrigger",
                      status_code=201,
                      summary="Add a trigger: which kinds, from which gateways (or all of them)")
async def create_trigger(
    connector_id: str,
    body: Annotated[TriggerCreate, Body(openapi_examples=TRIGGER_EXAMPLES)],
    org_id: OrgId, rt: RuntimeDep,
) -> dict[str, Any]:
    return await triggers.create(rt, org_id, connector_id, body)


@triggers_router.get("/{connector_id}/triggers", operation_id="listTriggers",
                     summary="List a connector's triggers")
async def list_triggers(connector_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    return await triggers.list_(rt, org_id, connector_id)


@triggers_router.delete("/{connector_id}/triggers/{trigger_id}",
                        operation_id="deleteTrigger", status_code=204, summary="Remove a trigger")
async def delete_trigger(
    connector_id: str, trigger_id: str, org_id: OrgId, rt: RuntimeDep
) -> Response:
    await triggers.delete(rt, org_id, connector_id, trigger_id)
    return Response(status_code=204)
