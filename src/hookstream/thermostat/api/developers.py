"""What third-party developers get from an organization: OAuth2 clients and subscription keys.

Both secrets are shown once, at creation, and stored as SHA-256 hashes only.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Response
from pydantic import Field, field_validator

from hookstream.errors import NotFound
from hookstream.ids import hash_key, new_id, new_key, now_ms
from hookstream.services.audit import audit
from hookstream.services.schemas import Name, Rotation, Strict, overlap_of
from hookstream.storage.repository import Repository
from hookstream.thermostat.subscriptions import end_subscriptions
from hookstream.web.api.common import Cursor, Limit, OrgId, RuntimeDep, decode_cursor, page, rfc3339

clients = APIRouter(prefix="/api/v1/oauth-clients", tags=["oauth-clients"])
keys = APIRouter(prefix="/api/v1/subscription-keys", tags=["subscription-keys"])

RedirectUri = Annotated[str, Field(min_length=1, max_length=2048)]


def check_redirect_uri(value: str) -> str:
    """https, or http to a loopback address (RFC 8252 native apps); no fragment."""
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"'{value}' is not a valid URL: {exc}") from None
    if parts.fragment or "#" in value:
        raise ValueError(f"'{value}' must not have a #fragment (RFC 6749 3.1.2)")
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return value
    loopback = host == "localhost"
    try:
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if parts.scheme == "http" and loopback:
        return value
    raise ValueError(
        f"'{value}' must be an https:// URL (http:// only to localhost or a loopback address)"
    )


class ClientCreate(Strict):
    name: Name
    redirectUris: list[RedirectUri] = Field(min_length=1, max_length=20)
    public: bool = False

    @field_validator("redirectUris")
    @classmethod
    def _uris(cls, value: list[str]) -> list[str]:
        return [check_redirect_uri(v) for v in value]


class KeyCreate(Strict):
    name: Name


def _client(row: Any) -> dict[str, Any]:
    return {
        "clientId": row.id,
        "name": row.name,
        "redirectUris": orjson.loads(row.redirect_uris),
        "public": bool(row.public),
        "createdAt": rfc3339(row.created_at),
    }


@clients.post("", operation_id="createOauthClient", status_code=201,
              summary="Register an OAuth2 client; its secret is shown once (none when public)")
async def create_client(body: ClientCreate, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    now = now_ms()
    client_id = new_id("cli")
    secret = None if body.public else new_key("hscs")
    async with rt.db.write() as conn:
        repo = Repository(conn)
        await repo.insert_oauth_client(
            id=client_id, org_id=org_id, name=body.name,
            secret_hash=None if secret is None else hash_key(secret),
            redirect_uris=orjson.dumps(body.redirectUris).decode(), public=body.public,
            created_at=now,
        )
        await audit(repo, org_id, "oauth_client.created", "oauth_client", client_id, {
            "name": body.name, "redirectUris": body.redirectUris, "public": body.public})
    return {
        "clientId": client_id, "clientSecret": secret, "name": body.name,
        "redirectUris": body.redirectUris, "public": body.public, "createdAt": rfc3339(now),
    }


@clients.get("", operation_id="listOauthClients", summary="List OAuth2 clients")
async def list_clients(
    org_id: OrgId, rt: RuntimeDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    async with rt.db.read() as conn:
        rows = await Repository(conn).list_oauth_clients(org_id, decode_cursor(cursor), limit)
    return page([_client(r) for r in rows], limit, id_key="clientId")


@clients.delete("/{client_id}", operation_id="deleteOauthClient", status_code=204,
                summary="Delete a client: its tokens stop working and its subscriptions end")
async def delete_client(client_id: str, org_id: OrgId, rt: RuntimeDep) -> Response:
    now = now_ms()
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if not await repo.delete_oauth_client(org_id, client_id, now):
            raise NotFound(f"no OAuth2 client '{client_id}'")
        await repo.revoke_client_tokens(client_id, now)
        await audit(repo, org_id, "oauth_client.deleted", "oauth_client", client_id)
        await end_subscriptions(
            repo, org_id, await repo.subscriptions_to_end(org_id, client_id=client_id), now
        )
    return Response(status_code=204)


@keys.post("", operation_id="createSubscriptionKey",
           status_code=201, summary="Create a subscription key; shown once")
async def create_key(body: KeyCreate, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    now = now_ms()
    key_id, key = new_id("skey"), new_key("hssk")
    async with rt.db.write() as conn:
        repo = Repository(conn)
        await repo.insert_subscription_key(
            id=key_id, org_id=org_id, name=body.name, key_hash=hash_key(key), created_at=now
        )
        await audit(repo, org_id, "subscription_key.created", "subscription_key", key_id,
                    {"name": body.name})
    return {"id": key_id, "name": body.name, "key": key, "createdAt": rfc3339(now)}


@keys.get("", operation_id="listSubscriptionKeys", summary="List subscription keys (names only)")
async def list_keys(
    org_id: OrgId, rt: RuntimeDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    async with rt.db.read() as conn:
        rows = await Repository(conn).list_subscription_keys(org_id, decode_cursor(cursor), limit)
    return page(
        [{"id": r.id, "name": r.name, "createdAt": rfc3339(r.created_at)} for r in rows], limit
    )


@keys.delete("/{key_id}", operation_id="deleteSubscriptionKey",
             status_code=204, summary="Revoke a subscription key")
async def delete_key(key_id: str, org_id: OrgId, rt: RuntimeDep) -> Response:
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if not await repo.delete_subscription_key(org_id, key_id, now_ms()):
            raise NotFound(f"no subscription key '{key_id}'")
        await audit(repo, org_id, "subscription_key.deleted", "subscription_key", key_id)
    return Response(status_code=204)


@keys.post("/{key_id}/rotate", operation_id="rotateSubscriptionKey",
           summary="A new value for the key; the current one keeps working for overlapSeconds "
                   "(default 24 h; 0 revokes it at once)")
async def rotate_key(
    key_id: str, org_id: OrgId, rt: RuntimeDep, body: Rotation | None = None
) -> dict[str, Any]:
    overlap = overlap_of(body, rt.settings.key_rotation_overlap_seconds)
    key, now = new_key("hssk"), now_ms()
    until = now + overlap * 1000
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if not await repo.rotate_subscription_key(org_id, key_id, hash_key(key), until):
            raise NotFound(f"no subscription key '{key_id}'")
        await audit(repo, org_id, "subscription_key.rotated", "subscription_key", key_id,
                    {"overlapSeconds": overlap})
    return {"id": key_id, "key": key, "previousKeyExpiresAt": rfc3339(until)}
