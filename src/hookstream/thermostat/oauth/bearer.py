"""Access tokens the authorization server issued, as the thermostat API checks them."""

from __future__ import annotations

from dataclasses import dataclass

from hookstream.ids import hash_key
from hookstream.storage.database import Database
from hookstream.storage.repository import Repository

# Issued tokens are "hsat_" + 43 characters; anything much longer is not one of them.
_MAX_TOKEN = 200


@dataclass(frozen=True, slots=True)
class AccessToken:
    token_id: str
    org_id: str
    client_id: str
    user_id: str
    scopes: frozenset[str]


async def access_token(db: Database, raw: str, now_ms: int) -> AccessToken | None:
    """The live access token ``raw``; None when it is unknown, expired or revoked."""
    if not raw or len(raw) > _MAX_TOKEN or not raw.isascii():
        return None
    async with db.read() as conn:
        row = await Repository(conn).oauth_token_by_access_hash(hash_key(raw))
    if row is None or row.revoked_at is not None or row.access_expires_at <= now_ms:
        return None
    return AccessToken(
        token_id=str(row.id),
        org_id=str(row.org_id),
        client_id=str(row.client_id),
        user_id=str(row.user_id),
        scopes=frozenset(str(row.scope).split()),
    )
