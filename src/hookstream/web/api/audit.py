"""The audit log, read through the API (``record/audit.py`` writes it)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from hookstream.services.audit import event_representation
from hookstream.storage.repository import Repository
from hookstream.web.api.common import (
    Cursor,
    Limit,
    OrgId,
    RuntimeDep,
    decode_cursor,
    page,
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
    async with rt.db.read() as conn:
        rows = await Repository(conn).list_audit_events(
            org_id, target_id=targetId, action=action, since=parse_time(since, "since"),
            until=parse_time(until, "until"), after=decode_cursor(cursor), limit=limit,
        )
    return page([event_representation(r) for r in rows], limit)
