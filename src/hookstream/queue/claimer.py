"""Claiming due deliveries: one statement marks a batch as leased to this worker."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hookstream.ids import new_id
from hookstream.storage.database import Database
from hookstream.storage.repository import Repository


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery leased to this worker until ``lease_until`` (epoch ms)."""

    id: str
    message_id: str
    connector_id: str
    kind: str
    attempts: int
    lease_id: str
    lease_until: int


class Claimer:
    """Leases due deliveries. A crashed worker's leases run out and the rows fall due again."""

    def __init__(self, db: Database, lease_seconds: float) -> None:
        self._db = db
        self._lease_ms = int(lease_seconds * 1000)

    async def claim(self, limit: int) -> tuple[list[Claimed], dict[str, bytes]]:
        """Up to ``limit`` due deliveries and the bodies of their messages."""
        now = int(time.time() * 1000)
        lease_id = new_id("lse")
        async with self._db.write() as conn:
            repo = Repository(conn)
            rows = await repo.claim_due(
                now=now, lease_until=now + self._lease_ms, lease_id=lease_id, limit=limit
            )
            if not rows:
                return [], {}
            bodies = await repo.message_bodies(list({r.message_id for r in rows}))
        claimed = [
            Claimed(r.id, r.message_id, r.connector_id, r.kind, r.attempts, lease_id,
                    now + self._lease_ms)
            for r in rows
        ]
        return claimed, bodies

    async def next_due_at(self) -> int | None:
        async with self._db.read() as conn:
            return await Repository(conn).next_due_at()
