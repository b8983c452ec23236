"""The thermostat cloud, management side: plants and their chronothermostat modules."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Response
from pydantic import Field

from hookstream.errors import NotFound, ValidationFailed
from hookstream.ids import new_id, now_ms
from hookstream.services.schemas import Name, Strict
from hookstream.storage.repository import Repository
from hookstream.thermostat.changes import linked_gateways
from hookstream.thermostat.state import (
    DEFAULT_MAPPING,
    CommandError,
    ModuleState,
    check_mapping,
    chronothermostat,
)
from hookstream.thermostat.subscriptions import end_subscriptions
from hookstream.web.api.common import Cursor, Limit, OrgId, RuntimeDep, decode_cursor, page, rfc3339

router = APIRouter(prefix="/api/v1/plants", tags=["plants"])
# A plant's modules, under its path but documented as a resource of their own.
modules_router = APIRouter(prefix="/api/v1/plants", tags=["modules"])
DEVICE = "chronothermostat"


class PlantCreate(Strict):
    name: Name


class PlantUpdate(Strict):
    name: Name


class ModuleCreate(Strict):
    name: Name
    gatewayId: str | None = Field(default=None, max_length=40)
    deviceId: str | None = Field(default=None, min_length=1, max_length=256)
    # Which datastream property reports each measure: {"temperature", "humidity", "loadState"}.
    mapping: dict[str, str] | None = None


class ModuleUpdate(Strict):
    name: Name | None = None
    gatewayId: str | None = Field(default=None, max_length=40)
    deviceId: str | None = Field(default=None, min_length=1, max_length=256)
    mapping: dict[str, str] | None = None


def _plant(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name,
        "createdAt": rfc3339(row.created_at), "updatedAt": rfc3339(row.updated_at),
    }


def _module(row: Any) -> dict[str, Any]:
    state = ModuleState.from_json(row.state)
    return {
        "id": row.id,
        "name": row.name,
        "device": DEVICE,
        "plantId": row.plant_id,
        "gatewayId": row.gateway_id,
        "deviceId": row.device_id,
        "mapping": orjson.loads(row.mapping) if row.mapping else dict(DEFAULT_MAPPING),
        "status": chronothermostat(state, row.plant_id, row.id),
        "createdAt": rfc3339(row.created_at),
        "updatedAt": rfc3339(row.updated_at),
    }


def _plant_not_found(plant_id: str) -> NotFound:
    return NotFound(f"no plant '{plant_id}'")


def _module_not_found(module_id: str) -> NotFound:
    return NotFound(f"no module '{module_id}'")


def _mapping_column(mapping: dict[str, str] | None) -> str | None:
    if mapping is None:
        return None
    try:
        checked = check_mapping(mapping)
    except CommandError as exc:
        raise ValidationFailed(
            exc.message, details=[{"field": exc.field or "mapping", "message": exc.message}]
        ) from exc
    return orjson.dumps(checked).decode()


async def _check_link(
    repo: Repository, org_id: str, gateway_id: str | None, device_id: str | None
) -> None:
    if (gateway_id is None) != (device_id is None):
        raise ValidationFailed(
            "gatewayId and deviceId link a module to its datastream messages together: "
            "give both or neither",
            details=[{"field": "gatewayId" if gateway_id is None else "deviceId",
                      "message": "required with the other"}],
        )
    if gateway_id is not None and not await repo.existing_gateway_ids(org_id, [gateway_id]):
        raise ValidationFailed(
            f"no gateway '{gateway_id}' in this organization",
            details=[{"field": "gatewayId", "message": "unknown gateway"}],
        )


# --- plants -------------------------------------------------------------------------------
@router.post("", operation_id="createPlant", status_code=201, summary="Create a plant")
async def create_plant(body: PlantCreate, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    now = now_ms()
    plant_id = new_id("plt")
    async with rt.db.write() as conn:
        await Repository(conn).insert_plant(
            id=plant_id, org_id=org_id, name=body.name, created_at=now, updated_at=now
        )
    return {"id": plant_id, "name": body.name, "createdAt": rfc3339(now),
            "updatedAt": rfc3339(now)}


@router.get("", operation_id="listPlants", summary="List plants")
async def list_plants(
    org_id: OrgId, rt: RuntimeDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    async with rt.db.read() as conn:
        rows = await Repository(conn).list_plants(org_id, decode_cursor(cursor), limit)
    return page([_plant(r) for r in rows], limit)


@router.get("/{plant_id}", operation_id="getPlant", summary="Get a plant")
async def get_plant(plant_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.db.read() as conn:
        row = await Repository(conn).get_plant(org_id, plant_id)
    if row is None:
        raise _plant_not_found(plant_id)
    return _plant(row)


@router.patch("/{plant_id}", operation_id="updatePlant", summary="Rename a plant")
async def update_plant(
    plant_id: str, body: PlantUpdate, org_id: OrgId, rt: RuntimeDep
) -> dict[str, Any]:
    async with rt.db.write() as conn:
        repo = Repository(conn)
        await repo.update_plant(org_id, plant_id, name=body.name, updated_at=now_ms())
        row = await repo.get_plant(org_id, plant_id)
    if row is None:
        raise _plant_not_found(plant_id)
    return _plant(row)


@router.delete("/{plant_id}", operation_id="deletePlant", status_code=204,
               summary="Delete a plant, its modules and its subscriptions")
async def delete_plant(plant_id: str, org_id: OrgId, rt: RuntimeDep) -> Response:
    now = now_ms()
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if not await repo.delete_plant(org_id, plant_id, now):
            raise _plant_not_found(plant_id)
        await repo.delete_plant_modules(plant_id, now)
        await end_subscriptions(
            repo, org_id, await repo.subscriptions_to_end(org_id, plant_id=plant_id), now
        )
    linked_gateways.forget(org_id)
    return Response(status_code=204)


# --- modules ------------------------------------------------------------------------------
async def _require_plant(repo: Repository, org_id: str, plant_id: str) -> None:
    if await repo.get_plant(org_id, plant_id) is None:
        raise _plant_not_found(plant_id)


@modules_router.post("/{plant_id}/modules", operation_id="createModule",
                     status_code=201, summary="Add a chronothermostat module")
async def create_module(
    plant_id: str, body: ModuleCreate, org_id: OrgId, rt: RuntimeDep
) -> dict[str, Any]:
    now = now_ms()
    module_id = new_id("mod")
    mapping = _mapping_column(body.mapping)
    state = ModuleState(time_ms=now)
    async with rt.db.write() as conn:
        repo = Repository(conn)
        await _require_plant(repo, org_id, plant_id)
        await _check_link(repo, org_id, body.gatewayId, body.deviceId)
        await repo.insert_module(
            id=module_id, org_id=org_id, plant_id=plant_id, name=body.name,
            gateway_id=body.gatewayId, device_id=body.deviceId, mapping=mapping,
            state=state.to_json().decode(), state_version=0, created_at=now, updated_at=now,
        )
        row = await repo.get_module(org_id, plant_id, module_id)
    linked_gateways.forget(org_id)
    return _module(row)


@modules_router.get("/{plant_id}/modules", operation_id="listModules",
                    summary="List a plant's modules")
async def list_modules(
    plant_id: str, org_id: OrgId, rt: RuntimeDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    async with rt.db.read() as conn:
        repo = Repository(conn)
        await _require_plant(repo, org_id, plant_id)
        rows = await repo.list_modules(org_id, plant_id, decode_cursor(cursor), limit)
    return page([_module(r) for r in rows], limit)


@modules_router.get("/{plant_id}/modules/{module_id}", operation_id="getModule",
                    summary="Get a module and its state")
async def get_module(
    plant_id: str, module_id: str, org_id: OrgId, rt: RuntimeDep
) -> dict[str, Any]:
    async with rt.db.read() as conn:
        row = await Repository(conn).get_module(org_id, plant_id, module_id)
    if row is None:
        raise _module_not_found(module_id)
    return _module(row)


@modules_router.patch("/{plant_id}/modules/{module_id}", operation_id="updateModule",
                      summary="Rename a module, or change its link to datastream messages")
async def update_module(
    plant_id: str, module_id: str, body: ModuleUpdate, org_id: OrgId, rt: RuntimeDep
) -> dict[str, Any]:
    fields = body.model_fields_set
    changes: dict[str, Any] = {}
    if "name" in fields and body.name is not None:
        changes["name"] = body.name
    if "mapping" in fields:
        changes["mapping"] = _mapping_column(body.mapping)
    async with rt.db.write() as conn:
        repo = Repository(conn)
        row = await repo.get_module(org_id, plant_id, module_id)
        if row is None:
            raise _module_not_found(module_id)
        if "gatewayId" in fields or "deviceId" in fields:
            gateway_id = body.gatewayId if "gatewayId" in fields else row.gateway_id
            device_id = body.deviceId if "deviceId" in fields else row.device_id
            await _check_link(repo, org_id, gateway_id, device_id)
            changes.update(gateway_id=gateway_id, device_id=device_id)
        if changes:
            await repo.update_module(org_id, plant_id, module_id, updated_at=now_ms(), **changes)
        row = await repo.get_module(org_id, plant_id, module_id)
    linked_gateways.forget(org_id)
    return _module(row)


@modules_router.delete("/{plant_id}/modules/{module_id}", operation_id="deleteModule",
                       status_code=204, summary="Remove a module")
async def delete_module(
    plant_id: str, module_id: str, org_id: OrgId, rt: RuntimeDep
) -> Response:
    async with rt.db.write() as conn:
        if not await Repository(conn).delete_module(org_id, plant_id, module_id, now_ms()):
            raise _module_not_found(module_id)
    linked_gateways.forget(org_id)
    return Response(status_code=204)
