"""Gateways (the vendor's "Towers") and their ingest tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from hookstream.errors import NotFound
from hookstream.ids import hash_key, new_id, new_key, now_ms
from hookstream.services.audit import audit
from hookstream.storage.repository import Repository
from hookstream.web.api.common import (
    Cursor,
    Limit,
    OrgId,
    RuntimeDep,
    decode_cursor,
    page,
    rfc3339,
)
from hookstream.web.api.schemas import GatewayCreate, GatewayUpdate, Rotation, overlap_of

router = APIRouter(prefix="/api/v1/gateways", tags=["gateways"])


def _gateway(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "externalId": row.external_id,
        "createdAt": rfc3339(row.created_at),
    }


def _not_found(gateway_id: str) -> NotFound:
    return NotFound(f"no gateway '{gateway_id}'")


@router.post("", status_code=201, summary="Create a gateway; its ingest token is shown once")
async def create(body: GatewayCreate, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    gateway_id, token = new_id("gw"), new_key("hsi")
    created = now_ms()
    async with rt.db.write() as conn:
        repo = Repository(conn)
        await repo.insert_gateway(
            id=gateway_id, org_id=org_id, name=body.name, external_id=body.externalId,
            ingest_token_hash=hash_key(token), created_at=created,
        )
        await audit(repo, org_id, "gateway.created", "gateway", gateway_id)
    return {
        "id": gateway_id, "name": body.name, "externalId": body.externalId,
        "ingestToken": token, "createdAt": rfc3339(created),
    }


@router.get("", summary="List gateways")
async def list_(
    org_id: OrgId, rt: RuntimeDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    async with rt.db.read() as conn:
        rows = await Repository(conn).list_gateways(org_id, decode_cursor(cursor), limit)
    return page([_gateway(r) for r in rows], limit)


@router.get("/{gateway_id}", summary="Get a gateway")
async def get(gateway_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.db.read() as conn:
        row = await Repository(conn).get_gateway(org_id, gateway_id)
    if row is None:
        raise _not_found(gateway_id)
    return _gateway(row)


@router.patch("/{gateway_id}", summary="Rename a gateway or change its external id")
async def update(
    gateway_id: str, body: GatewayUpdate, org_id: OrgId, rt: RuntimeDep
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if "name" in body.model_fields_set and body.name is not None:
        changes["name"] = body.name
    if "externalId" in body.model_fields_set:
        changes["external_id"] = body.externalId
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if changes and await repo.update_gateway(org_id, gateway_id, **changes):
            await audit(repo, org_id, "gateway.updated", "gateway", gateway_id,
                        {"fields": sorted(body.model_fields_set)})
        row = await repo.get_gateway(org_id, gateway_id)
    if row is None:
        raise _not_found(gateway_id)
    return _gateway(row)


@router.delete("/{gateway_id}", status_code=204,
               summary="Delete a gateway (its token stops working, within 2 s in every process)")
async def delete(gateway_id: str, org_id: OrgId, rt: RuntimeDep) -> Response:
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if not await repo.delete_gateway(org_id, gateway_id, now_ms()):
            raise _not_found(gateway_id)
        await repo.unlink_gateway_from_triggers(gateway_id)
        await audit(repo, org_id, "gateway.deleted", "gateway", gateway_id)
    rt.gateway_tokens.forget(gateway_id)  # at once here; other processes within TTL
    return Response(status_code=204)


@router.post("/{gateway_id}/rotate-token",
             summary="A new ingest token; the current one keeps working for overlapSeconds "
                     "(default 24 h; 0 revokes it at once)")
async def rotate_token(
    gateway_id: str, org_id: OrgId, rt: RuntimeDep, body: Rotation | None = None
) -> dict[str, Any]:
    overlap = overlap_of(body, rt.settings.key_rotation_overlap_seconds)
    token, now = new_key("hsi"), now_ms()
    until = now + overlap * 1000
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if not await repo.rotate_gateway_token(org_id, gateway_id, hash_key(token), until):
            raise _not_found(gateway_id)
        await audit(repo, org_id, "gateway.token_rotated", "gateway", gateway_id,
                    {"overlapSeconds": overlap})
    rt.gateway_tokens.forget(gateway_id)  # at once here; other processes within TTL
    return {"id": gateway_id, "ingestToken": token, "previousTokenExpiresAt": rfc3339(until)}
