"""Claiming due deliveries: one statement marks a batch as leased to this worker."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from hookstream.ids import new_id
from hookstream.kinds import KINDS
from hookstream.pipeline.queue.fairness import Due, share
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
    batch_id: str | None = None
    # The W3C traceparent of its message (tracing.py), when it has one.
    traceparent: str | None = None
    # Its message's gateway (a broker connector's topic may name them).
    gateway_id: str | None = None
    gateway_external_id: str | None = None


class Claimer:
    """Leases due deliveries. A crashed worker's leases run out and the rows fall due again."""

    def __init__(self, db: Database, lease_seconds: float, default_max_in_flight: int) -> None:
        self._db = db
        self._lease_ms = int(lease_seconds * 1000)
        self._default_max = default_max_in_flight

    async def claim(self, limit: int, settling: Mapping[str, int] | None = None,
                    ) -> tuple[list[Claimed], dict[str, bytes]]:
        """Up to ``limit`` due deliveries, fairly shared among connectors within their limits,
        and the bodies of their messages."""
        now = int(time.time() * 1000)
        lease_id = new_id("lse")
        async with self._db.write(durable=False) as conn:
            repo = Repository(conn)
            await repo.lock_claims()
            connectors = await repo.due_connectors(now)
            per_device = {c.id for c in connectors if c.ordering == "per_device"}
            # A connector's leased rows include this worker's attempts that are over, their
            # outcomes not yet written (``settling``): those are not requests in flight.
            over = settling or {}
            due = [
                Due(c.id, c.max_concurrency or self._default_max,
                    max(0, c.in_flight - over.get(c.id, 0)), c.rate_limit,
                    c.rate_tokens, None if c.rate_updated_at is None else c.rate_updated_at / 1000)
                for c in connectors
            ]
            batching = {
                c.id: (c.batch_max_messages, c.batch_max_wait_ms or 0)
                for c in connectors if c.batch_max_messages
            }
            shares = share(due, limit, now / 1000)
            ids = await repo.due_ids(
                {s.connector_id: (s.count, s.connector_id in per_device)
                 for s in shares if s.count and s.connector_id not in batching},
                now,
            )
            for s in shares:
                if s.count and s.connector_id in batching:
                    ids += await self._batches(repo, s.connector_id, s.count,
                                               *batching[s.connector_id], now)
            rows = await repo.claim_ids(
                ids, now=now, lease_until=now + self._lease_ms, lease_id=lease_id
            )
            if not rows:
                return [], {}
            claimed_per_connector = Counter(r.connector_id for r in rows)
            await repo.spend_rate_tokens([
                {"b_id": s.connector_id, "b_now": now,
                 "b_tokens": s.bucket - claimed_per_connector[s.connector_id]}
                for s in shares if s.bucket is not None
            ])
            found = await repo.message_bodies(list({r.message_id for r in rows}))
        no_message = (None, None, None, None)
        claimed = []
        for r in rows:
            _, traceparent, gateway_id, external_id = found.get(r.message_id, no_message)
            claimed.append(Claimed(r.id, r.message_id, r.connector_id, r.kind, r.attempts,
                                   lease_id, now + self._lease_ms, r.batch_id, traceparent,
                                   gateway_id, external_id))
        return claimed, {message_id: found_[0] for message_id, found_ in found.items()}

    async def _batches(
        self, repo: Repository, connector_id: str, count: int, max_messages: int,
        max_wait_ms: int, now: int,
    ) -> list[str]:
        """Delivery ids of up to ``count`` batches: retries of formed batches first, then new
        ones (one kind each, as a route is per kind). A batch that is not full waits until its
        oldest delivery has waited ``max_wait_ms``."""
        batch_ids = await repo.due_batches(connector_id, now, count)
        for kind in KINDS:
            while len(batch_ids) < count:
                rows = await repo.unbatched_due(connector_id, kind, now, max_messages)
                if not rows:
                    break
                oldest = min(r.created_at for r in rows)
                if len(rows) < max_messages and oldest + max_wait_ms > now:
                    await repo.defer_deliveries([r.id for r in rows], oldest + max_wait_ms)
                    break
                batch_id = new_id("msg")
                await repo.assign_batch([r.id for r in rows], batch_id)
                await repo.assign_batch_deliveries([r.id for r in rows], batch_id)
                batch_ids.append(batch_id)
        return await repo.batch_members(batch_ids, now)

    async def next_due_at(self) -> int | None:
        async with self._db.read() as conn:
            return await Repository(conn).next_due_at()
