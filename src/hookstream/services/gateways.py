"""Gateways (the vendor's "Towers") and their ingest tokens: what the API, console and CLI call.

Each function opens its own transaction, checks the organization owns what it touches, writes
the audit entry in the same transaction, and returns the contract's representation.
"""

from __future__ import annotations

from typing import Any

from hookstream.errors import NotFound
from hookstream.ids import hash_key, new_id, new_key, now_ms
from hookstream.models import Gateway
from hookstream.services.audit import audit
from hookstream.services.paging import decode_cursor, page
from hookstream.services.runtime import Runtime
from hookstream.services.schemas import GatewayCreate, GatewayUpdate, Rotation, overlap_of
from hookstream.services.times import rfc3339
from hookstream.storage.repository import Repository


def representation(row: Gateway) -> dict[str, Any]:
    """A gateway as the API shows it (never its token)."""
    return {
        "id": row.id,
        "name": row.name,
        "externalId": row.external_id,
        "createdAt": rfc3339(row.created_at),
    }


def not_found(gateway_id: str) -> NotFound:
    return NotFound(f"no gateway '{gateway_id}'")


async def create(rt: Runtime, org_id: str, body: GatewayCreate) -> dict[str, Any]:
    """Create a gateway; the answer holds its ingest token, shown this once."""
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


async def list_(rt: Runtime, org_id: str, *, limit: int, cursor: str | None = None
                ) -> dict[str, Any]:
    """One page of the organization's gateways, oldest first."""
    async with rt.db.read() as conn:
        rows = await Repository(conn).list_gateways(org_id, decode_cursor(cursor), limit)
    return page([representation(r) for r in rows], limit)


async def get(rt: Runtime, org_id: str, gateway_id: str) -> dict[str, Any]:
    async with rt.db.read() as conn:
        row = await Repository(conn).get_gateway(org_id, gateway_id)
    if row is None:
        raise not_found(gateway_id)
    return representation(row)


async def update(rt: Runtime, org_id: str, gateway_id: str, body: GatewayUpdate
                 ) -> dict[str, Any]:
    """Rename a gateway or change its external id (the fields ``body`` carries)."""
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
        raise not_found(gateway_id)
    return representation(row)


async def delete(rt: Runtime, org_id: str, gateway_id: str) -> None:
    """Delete a gateway; its token stops working at once here, in other processes within TTL."""
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if not await repo.delete_gateway(org_id, gateway_id, now_ms()):
            raise not_found(gateway_id)
        await repo.unlink_gateway_from_triggers(gateway_id)
        await audit(repo, org_id, "gateway.deleted", "gateway", gateway_id)
    rt.gateway_tokens.forget(gateway_id)


async def rotate_token(rt: Runtime, org_id: str, gateway_id: str, body: Rotation | None
                       ) -> dict[str, Any]:
    """A new ingest token; the current one keeps working for the overlap (0 revokes it)."""
    overlap = overlap_of(body, rt.settings.key_rotation_overlap_seconds)
    token, now = new_key("hsi"), now_ms()
    until = now + overlap * 1000
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if not await repo.rotate_gateway_token(org_id, gateway_id, hash_key(token), until):
            raise not_found(gateway_id)
        await audit(repo, org_id, "gateway.token_rotated", "gateway", gateway_id,
                    {"overlapSeconds": overlap})
    rt.gateway_tokens.forget(gateway_id)
    return {"id": gateway_id, "ingestToken": token, "previousTokenExpiresAt": rfc3339(until)}
