"""Which gateway an ingest token belongs to, remembered for a moment.

A busy gateway posts many times a second; looking its token up in the database each time cost
more than storing its message. A token found is trusted for ``TTL`` seconds, so a deleted
gateway or a rotated token stops working within that time in every process. A token not found
is looked up again every time.
"""

from __future__ import annotations

import time
from typing import Any

from hookstream.ids import hash_key
from hookstream.storage.database import Database
from hookstream.storage.repository import Repository

TTL = 2.0
MAX_ENTRIES = 10_000


class GatewayTokens:
    """Ingest token -> the gateway row (id, org_id), cached for ``ttl`` seconds."""

    def __init__(self, db: Database, ttl: float = TTL) -> None:
        self.db = db
        self.ttl = ttl
        self._found: dict[str, tuple[float, Any]] = {}

    async def gateway(self, token: str) -> Any | None:
        digest = hash_key(token)
        now = time.monotonic()
        hit = self._found.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self.db.read() as conn:
            row = await Repository(conn).gateway_by_token_hash(digest, int(time.time() * 1000))
        if row is None:
            self._found.pop(digest, None)
            return None
        if len(self._found) >= MAX_ENTRIES:
            self._found = {k: v for k, v in self._found.items() if v[0] > now}
            if len(self._found) >= MAX_ENTRIES:
                self._found.clear()
        self._found[digest] = (now + self.ttl, row)
        return row

    def forget(self, gateway_id: str) -> None:
        """Drop the gateway's token at once (it was deleted or its token replaced)."""
        self._found = {k: v for k, v in self._found.items() if v[1].id != gateway_id}
