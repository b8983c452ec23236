"""Organizations, managed with the admin key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from hookstream.errors import NotFound
from hookstream.ids import hash_key, new_id, new_key, now_ms
from hookstream.services.audit import audit
from hookstream.services.runtime import Runtime
from hookstream.storage.repository import Repository
from hookstream.web.api.common import (
    Cursor,
    Limit,
    OrgId,
    RuntimeDep,
    decode_cursor,
    page,
    require_admin,
    rfc3339,
)
from hookstream.web.api.schemas import OrganizationCreate, Rotation, overlap_of

router = APIRouter(prefix="/api/v1/organizations", tags=["organizations"],
                   dependencies=[Depends(require_admin)])
# The organization's own key, rotated with that key.
own = APIRouter(prefix="/api/v1/organization", tags=["organizations"])


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


async def rotate_api_key(rt: Runtime, org_id: str, body: Rotation | None) -> dict[str, Any] | None:
    """A new API key; the previous one works until the overlap ends (None: no such org)."""
    overlap = overlap_of(body, rt.settings.key_rotation_overlap_seconds)
    key, now = new_key("hsk"), now_ms()
    until = now + overlap * 1000
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if not await repo.rotate_organization_key(org_id, hash_key(key), until):
            return None
        await audit(repo, org_id, "api_key.rotated", "organization", org_id,
                    {"overlapSeconds": overlap})
    return {"apiKey": key, "previousKeyExpiresAt": rfc3339(until)}


@router.post("/{org_id}/rotate-api-key",
             summary="Give an organization a new API key (admin key; for a lost key)")
async def rotate_by_admin(
    org_id: str, rt: RuntimeDep, body: Rotation | None = None
) -> dict[str, Any]:
    result = await rotate_api_key(rt, org_id, body)
    if result is None:
        raise NotFound(f"no organization '{org_id}'")
    return result


@own.post("/rotate-api-key",
          summary="A new API key for this organization; the current one keeps working for "
                  "overlapSeconds (default 24 h; 0 revokes it at once)")
async def rotate_own(
    org_id: OrgId, rt: RuntimeDep, body: Rotation | None = None
) -> dict[str, Any]:
    result = await rotate_api_key(rt, org_id, body)
    assert result is not None  # the key that signed the request belongs to it
    return result
