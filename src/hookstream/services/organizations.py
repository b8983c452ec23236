"""Organizations (tenants) and their API keys: what the admin API and the CLI call."""

from __future__ import annotations

from typing import Any

from hookstream.errors import NotFound
from hookstream.ids import hash_key, new_id, new_key, now_ms
from hookstream.services.audit import audit
from hookstream.services.paging import decode_cursor, page
from hookstream.services.runtime import Runtime
from hookstream.services.schemas import Rotation, overlap_of
from hookstream.services.times import rfc3339
from hookstream.storage.repository import Repository


async def create(rt: Runtime, name: str) -> dict[str, Any]:
    """Create an organization and its API key (shown this once)."""
    org_id, key = new_id("org"), new_key("hsk")
    async with rt.db.write() as conn:
        await Repository(conn).insert_organization(
            id=org_id, name=name, api_key_hash=hash_key(key), created_at=now_ms()
        )
    return {"id": org_id, "name": name, "apiKey": key}


async def list_(rt: Runtime, *, limit: int, cursor: str | None = None) -> dict[str, Any]:
    """One page of every organization, oldest first (the admin's view)."""
    async with rt.db.read() as conn:
        rows = await Repository(conn).list_organizations(decode_cursor(cursor), limit)
    items = [{"id": r.id, "name": r.name, "createdAt": rfc3339(r.created_at)} for r in rows]
    return page(items, limit)


async def rotate_api_key(rt: Runtime, org_id: str, body: Rotation | None) -> dict[str, Any]:
    """A new API key; the previous one works until the overlap ends."""
    overlap = overlap_of(body, rt.settings.key_rotation_overlap_seconds)
    key, now = new_key("hsk"), now_ms()
    until = now + overlap * 1000
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if not await repo.rotate_organization_key(org_id, hash_key(key), until):
            raise NotFound(f"no organization '{org_id}'")
        await audit(repo, org_id, "api_key.rotated", "organization", org_id,
                    {"overlapSeconds": overlap})
    return {"apiKey": key, "previousKeyExpiresAt": rfc3339(until)}
