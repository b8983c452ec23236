"""The repository's OAuth2 methods: clients, authorization codes, tokens."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from hookstream.storage import queries as q
from hookstream.storage.repository._base import Rows, _Base


class OAuthQueries(_Base):
    # --- OAuth2 -------------------------------------------------------------------------
    async def insert_oauth_client(self, **values: Any) -> None:
        await self.conn.execute(q.insert_oauth_client, values)

    async def oauth_client_by_id(self, client_id: str) -> Row[Any] | None:
        return await self._one(q.oauth_client_by_id, {"id": client_id})

    async def list_oauth_clients(self, org_id: str, after: str | None, limit: int) -> Rows:
        return await self._all(q.list_oauth_clients(org_id, after, limit))

    async def delete_oauth_client(self, org_id: str, client_id: str, now: int) -> int:
        return await self._count(
            q.delete_oauth_client, {"b_org_id": org_id, "b_id": client_id, "b_now": now}
        )

    async def revoke_client_tokens(self, client_id: str, now: int) -> int:
        return await self._count(
            q.revoke_client_tokens, {"b_client_id": client_id, "b_now": now}
        )

    async def insert_oauth_code(self, **values: Any) -> None:
        await self.conn.execute(q.insert_oauth_code, values)

    async def oauth_code_by_hash(self, code_hash: str) -> Row[Any] | None:
        return await self._one(q.oauth_code_by_hash, {"code_hash": code_hash})

    async def use_oauth_code(self, code_hash: str, now: int) -> int:
        return await self._count(q.use_oauth_code, {"b_code_hash": code_hash, "b_now": now})

    async def delete_expired_oauth_codes(self, before: int) -> int:
        return await self._count(q.delete_expired_oauth_codes, {"before": before})

    async def insert_oauth_token(self, **values: Any) -> None:
        await self.conn.execute(q.insert_oauth_token, values)

    async def oauth_token_by_access_hash(self, token_hash: str) -> Row[Any] | None:
        return await self._one(q.oauth_token_by_access_hash, {"hash": token_hash})

    async def oauth_token_by_refresh_hash(self, token_hash: str) -> Row[Any] | None:
        return await self._one(q.oauth_token_by_refresh_hash, {"hash": token_hash})

    async def use_refresh_token(self, token_id: str, now: int) -> int:
        return await self._count(q.use_refresh_token, {"b_id": token_id, "b_now": now})

    async def revoke_token_family(self, family_id: str, now: int) -> int:
        return await self._count(
            q.revoke_token_family, {"b_family_id": family_id, "b_now": now}
        )

    async def purge_expired_oauth_tokens(self, before: int) -> int:
        return await self._count(q.purge_expired_oauth_tokens, {"before": before})
