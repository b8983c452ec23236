"""The repository's retention methods: the purge of old messages, deliveries, attempts."""

from __future__ import annotations

from hookstream.storage import queries as q
from hookstream.storage.repository._base import _Base


class RetentionQueries(_Base):
    # --- retention --------------------------------------------------------------------
    async def purge_attempt_counts(self, before: int) -> int:
        return await self._count(q.purge_attempt_counts, {"before": before})

    async def purge_attempts(self, cutoff: int, cutoff_id: str, limit: int) -> int:
        return await self._count(
            q.purge_attempts, {"cutoff": cutoff, "cutoff_id": cutoff_id, "limit": limit}
        )

    async def purge_deliveries(self, cutoff: int, cutoff_id: str, limit: int) -> int:
        return await self._count(
            q.purge_deliveries, {"cutoff": cutoff, "cutoff_id": cutoff_id, "limit": limit}
        )

    async def purge_messages(self, cutoff: int, cutoff_id: str, limit: int) -> int:
        return await self._count(
            q.purge_messages, {"cutoff": cutoff, "cutoff_id": cutoff_id, "limit": limit}
        )

    async def purge_idempotency_keys(self, cutoff: int, limit: int) -> int:
        return await self._count(q.purge_idempotency_keys, {"cutoff": cutoff, "limit": limit})
