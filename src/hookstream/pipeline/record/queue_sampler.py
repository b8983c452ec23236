"""Samples the delivery queue for ``/metrics``: depth and oldest due age per connector."""

from __future__ import annotations

import asyncio
import logging
import time

from hookstream.metrics import QUEUE
from hookstream.storage.database import Database
from hookstream.storage.repository import Repository

log = logging.getLogger(__name__)


class QueueSampler:
    """Refreshes ``hookstream_queue_*`` every ``interval`` seconds until cancelled."""

    def __init__(self, db: Database, interval: float) -> None:
        self.db = db
        self.interval = interval

    async def sample(self) -> None:
        async with self.db.read() as conn:
            rows = await Repository(conn).queue_depth()
        now = time.time() * 1000
        QUEUE.rows = [
            (r.connector_id, int(r.depth),
             max(0.0, (now - r.oldest_due) / 1000) if r.oldest_due is not None else 0.0)
            for r in rows
        ]

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:  # noqa: BLE001 - the database may be restarting; keep the last
                log.warning("sampling the queue for /metrics failed", exc_info=True)
            await asyncio.sleep(self.interval)
