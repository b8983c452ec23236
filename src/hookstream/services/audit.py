"""The audit log: who changed which connector, trigger, gateway, key or subscription, and when.

Each change writes its event in the transaction that makes the change, so the log has every
change that happened and nothing that did not. The actor is whoever the request authenticated
as, set by the authentication dependencies (which run in the request's context):
``api_key``, ``api_key:previous`` (during a rotation's overlap), ``admin``,
``application:<clientId>`` or ``user:<email>``. Details name what changed; secret values never
appear in them.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import orjson

from hookstream.ids import new_id, now_ms
from hookstream.services.paging import decode_cursor, page
from hookstream.services.runtime import Runtime
from hookstream.services.times import rfc3339
from hookstream.storage.repository import Repository

_actor: ContextVar[str] = ContextVar("hookstream_actor", default="system")


def set_actor(actor: str) -> None:
    _actor.set(actor)


def current_actor() -> str:
    return _actor.get()


async def audit(
    repo: Repository,
    org_id: str,
    action: str,
    target_type: str,
    target_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Record ``action`` on a target, by the current actor, in the caller's transaction."""
    await repo.insert_audit_event(
        id=new_id("aud"), org_id=org_id, actor=current_actor(), action=action,
        target_type=target_type, target_id=target_id,
        details=None if not details else orjson.dumps(details).decode(),
        created_at=now_ms(),
    )


def event_representation(row: Any) -> dict[str, Any]:
    """An audit event as the API shows it."""
    return {
        "id": row.id,
        "actor": row.actor,
        "action": row.action,
        "targetType": row.target_type,
        "targetId": row.target_id,
        "details": orjson.loads(row.details) if row.details else {},
        "at": rfc3339(row.created_at),
    }


async def list_events(
    rt: Runtime,
    org_id: str,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    action: str | None = None,
    actor: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    cursor: str | None = None,
    limit: int = 50,
    newest_first: bool = False,
) -> dict[str, Any]:
    """One page of the organization's audit events matching the filters, oldest first (the
    API) or newest first (the console); the cursor continues in that order."""
    position = decode_cursor(cursor)
    async with rt.db.read() as conn:
        rows = await Repository(conn).list_audit_events(
            org_id, target_type=target_type, target_id=target_id, action=action, actor=actor,
            since=since_ms, until=until_ms, limit=limit, newest_first=newest_first,
            **({"before": position} if newest_first else {"after": position}),
        )
    return page([event_representation(r) for r in rows], limit)
