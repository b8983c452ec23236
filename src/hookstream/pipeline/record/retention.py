"""Retention: old messages, with their deliveries and attempts, are purged in small batches.

Every ``retention_interval`` seconds a ``Purger`` deletes what is older than
``retention_seconds``: a message accepted before the cutoff goes, together with its
deliveries and their attempts, once none of its deliveries is still open (``pending`` or
``held``): nothing that is still to be delivered is ever deleted. It also deletes
Idempotency-Key rows older than ``idempotency_window_seconds`` (they answer nothing any
more), and expired OAuth2 codes and tokens and console sessions.

Each transaction is one ``DELETE … WHERE id IN (SELECT … LIMIT retention_batch)``, so the
tables are locked for one small statement at a time, and the purger pauses briefly between
batches so that ingest and workers get their turn (SQLite has one writer at a time). The
order is bottom up, attempts, then deliveries without attempts, then messages without
deliveries, so at no moment is a row left without its parent; a message's history may
shrink for the few moments before the message itself goes. Every process that runs a worker
runs a purger; on PostgreSQL they share the work (rows are chosen ``SKIP LOCKED``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from hookstream.ids import first_id_at
from hookstream.settings import Settings
from hookstream.storage.database import Database
from hookstream.storage.repository import Repository

log = logging.getLogger(__name__)

COUNTS_KEPT_MS = 2 * 86_400_000  # a connector's attempt counts (record.rollup)

# Between two full batches, so that other writers get the database in between.
PAUSE_SECONDS = 0.05

Step = Callable[[Repository], Awaitable[int]]


class Purger:
    """Deletes what retention allows, ``settings.retention_batch`` rows per transaction.

    ``on_batch(table, rows)`` is called after each committed batch that deleted rows.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        on_batch: Callable[[str, int], None] | None = None,
        pause: float = PAUSE_SECONDS,
    ) -> None:
        self.db = db
        self.settings = settings
        self.on_batch = on_batch
        self.pause = pause

    async def purge_once(self) -> dict[str, int]:
        """Purge everything that is due now; returns the rows deleted per table."""
        now = int(time.time() * 1000)
        cutoff = max(0, now - int(self.settings.retention_seconds * 1000))
        cutoff_id = first_id_at("msg", cutoff)
        keys_cutoff = max(0, now - int(self.settings.idempotency_window_seconds * 1000))
        limit = self.settings.retention_batch
        steps: list[tuple[str, Step]] = [
            ("attempts", lambda repo: repo.purge_attempts(cutoff, cutoff_id, limit)),
            ("deliveries", lambda repo: repo.purge_deliveries(cutoff, cutoff_id, limit)),
            ("messages", lambda repo: repo.purge_messages(cutoff, cutoff_id, limit)),
            ("idempotency_keys", lambda repo: repo.purge_idempotency_keys(keys_cutoff, limit)),
            # Expired OAuth2 codes and tokens and console sessions answer nothing any more.
            ("oauth_codes", lambda repo: repo.delete_expired_oauth_codes(now)),
            ("oauth_tokens", lambda repo: repo.purge_expired_oauth_tokens(now)),
            ("console_sessions", lambda repo: repo.delete_expired_console_sessions(now)),
            # The charts show a day; two are kept.
            ("attempt_counts", lambda repo: repo.purge_attempt_counts(now - COUNTS_KEPT_MS)),
        ]
        counts: dict[str, int] = {}
        for table, step in steps:
            counts[table] = await self._drain(table, step, limit)
        return counts

    async def _drain(self, table: str, step: Step, limit: int) -> int:
        """Run one step batch after batch until a batch comes back short."""
        total = 0
        while True:
            async with self.db.write(durable=False) as conn:
                deleted = await step(Repository(conn))
            total += deleted
            if deleted and self.on_batch is not None:
                self.on_batch(table, deleted)
            if deleted < limit:
                return total
            await asyncio.sleep(self.pause)

    async def run(self) -> None:
        """Purge every ``retention_interval`` seconds, forever; a failure waits a round."""
        interval = self.settings.retention_interval
        while True:
            try:
                counts = await self.purge_once()
            except Exception:  # noqa: BLE001 - the database may be restarting; keep going
                log.exception("retention: purging failed; trying again in %g s", interval)
            else:
                if any(counts.values()):
                    log.info(
                        "retention: purged %s",
                        ", ".join(f"{n} {table}" for table, n in counts.items()),
                    )
            await asyncio.sleep(interval)
