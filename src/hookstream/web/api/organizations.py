"""Organizations, managed with the admin key; an organization rotates its own key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from hookstream.services import organizations
from hookstream.services.schemas import OrganizationCreate, Rotation
from hookstream.web.api.common import Cursor, Limit, OrgId, RuntimeDep, require_admin

router = APIRouter(prefix="/api/v1/organizations", tags=["organizations"],
                   dependencies=[Depends(require_admin)])
# The organization's own key, rotated with that key.
own = APIRouter(prefix="/api/v1/organization", tags=["organizations"])


@router.post("", operation_id="createOrganization",
             status_code=201, summary="Create an organization (admin key)")
async def create(body: OrganizationCreate, rt: RuntimeDep) -> dict[str, Any]:
    return await organizations.create(rt, body.name)


@router.get("", operation_id="listOrganizations", summary="List organizations (admin key)")
async def list_(rt: RuntimeDep, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    return await organizations.list_(rt, limit=limit, cursor=cursor)


@router.post("/{org_id}/rotate-api-key", operation_id="rotateOrganizationApiKey",
             summary="Give an organization a new API key (admin key; for a lost key)")
async def rotate_by_admin(
    org_id: str, rt: RuntimeDep, body: Rotation | None = None
) -> dict[str, Any]:
    return await organizations.rotate_api_key(rt, org_id, body)


@own.post("/rotate-api-key", operation_id="rotateOwnApiKey",
          summary="A new API key for this organization; the current one keeps working for "
                  "overlapSeconds (default 24 h; 0 revokes it at once)")
async def rotate_own(
    org_id: OrgId, rt: RuntimeDep, body: Rotation | None = None
) -> dict[str, Any]:
    return await organizations.rotate_api_key(rt, org_id, body)
