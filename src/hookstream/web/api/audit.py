"""The audit log, read through the API (``services/audit.py`` writes and reads it)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from hookstream.services import audit
from hookstream.web.api.common import (
    Cursor,
    Limit,
    OrgId,
    RuntimeDep,
    parse_time,
)

router = APIRouter(prefix="/api/v1/audit-events", tags=["audit"])


@router.get("", operation_id="listAuditEvents",
            summary="The organization's audit log, oldest first")
async def list_events(
    org_id: OrgId,
    rt: RuntimeDep,
    targetId: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    since: str | None = None,
    until: str | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    return await audit.list_events(
        rt, org_id, target_id=targetId, action=action, since_ms=parse_time(since, "since"),
        until_ms=parse_time(until, "until"), cursor=cursor, limit=limit,
    )
