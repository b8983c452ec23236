"""Organizations, managed with the admin key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from hookstream.api.common import (
    Cursor,
    Limit,
    RuntimeDep,
    decode_cursor,
    page,
    require_admin,
    rfc3339,
)
from hookstream.api.schemas import OrganizationCreate
from hookstream.ids import hash_key, new_id, new_key, now_ms
from hookstream.runtime import Runtime
from hookstream.storage.repository import Repository

router = APIRouter(prefix="/api/v1/organizations", tags=["organizations"],
                   dependencies=[Depends(require_admin)])


async def create_organization(rt: Runtime, name: str) -> dict[str, Any]:
    """Create an organization and its API key (shown this once)."""
    org_id, key = new_id("org"), new_key("hsk")
    async with rt.db.write() as conn:
        await Repository(conn).insert_organization(
            id=org_id, name=name, api_key_hash=hash_key(key), created_at=now_ms()
        )
    return {"id": org_id, "name": name, "apiKey": key}


@router.post("", status_code=201, summary="Create an organization (admin key)")
async def create(body: OrganizationCreate, rt: RuntimeDep) -> dict[str, Any]:
    return await create_organization(rt, body.name)


@router.get("", summary="List organizations (admin key)")
async def list_(rt: RuntimeDep, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    async with rt.db.read() as conn:
        rows = await Repository(conn).list_organizations(decode_cursor(cursor), limit)
    items = [{"id": r.id, "name": r.name, "createdAt": rfc3339(r.created_at)} for r in rows]
    return page(items, limit)
