"""Access tokens as resource servers see them: who is calling, with which scopes."""

from __future__ import annotations

from dataclasses import dataclass

from hookstream.ids import hash_key
from hookstream.storage.database import Database
from hookstream.storage.repository import Repository


@dataclass(frozen=True, slots=True)
class AccessToken:
    token_id: str
    org_id: str
    client_id: str
    user_id: str
    scopes: frozenset[str]


async def access_token(db: Database, raw: str, now_ms: int) -> AccessToken | None:
    """The token behind ``raw``; None when unknown, expired or revoked."""
    async with db.read() as conn:
        row = await Repository(conn).oauth_token_by_access_hash(hash_key(raw))
    if row is None or row.revoked_at is not None or row.access_expires_at <= now_ms:
        return None
    return AccessToken(row.id, row.org_id, row.client_id, row.user_id,
                       frozenset(row.scope.split()))
