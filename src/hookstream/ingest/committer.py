"""Group commit: ingest requests that arrive together are stored in one transaction.

Each request still gets its 202 only after the transaction holding its messages has committed;
what changes is that one commit (one fsync on SQLite, one round trip on PostgreSQL) serves every
request that was waiting while the previous one ran. An idle server commits a lone request at
once: nothing waits for a batch to fill.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hookstream.ingest.message import DatastreamMessage
from hookstream.ingest.store import Planned, insert_planned, org_triggers, plan_messages
from hookstream.route.routing import Trigger
from hookstream.storage.database import Database
from hookstream.storage.repository import Repository

# Messages per shared transaction; a request is never split across two.
MAX_GROUP_MESSAGES = 5000


@dataclass(slots=True)
class _Request:
    org_id: str
    gateway_id: str
    kind: str
    messages: list[DatastreamMessage]
    done: asyncio.Future[tuple[list[str], int]] = field(repr=False)


class GroupCommitter:
    """Stores ingest requests, sharing a transaction among those that arrive together."""

    def __init__(self, db: Database, max_messages: int = MAX_GROUP_MESSAGES) -> None:
        self.db = db
        self.max_messages = max_messages
        self._waiting: deque[_Request] = deque()
        self._writer: asyncio.Task[None] | None = None
        # Transactions committed and requests they held (for tests and metrics).
        self.commits = 0
        self.requests = 0

    async def store(
        self, *, org_id: str, gateway_id: str, kind: str, messages: list[DatastreamMessage]
    ) -> tuple[list[str], int]:
        """Store the messages and their deliveries; returns their ids and the deliveries made.

        Returns once committed. Cancelling the caller does not take the messages out of a
        transaction they are already in.
        """
        done: asyncio.Future[tuple[list[str], int]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Request(org_id, gateway_id, kind, messages, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())
        return await asyncio.shield(done)

    async def _write_all(self) -> None:
        while self._waiting:
            group: list[_Request] = []
            size = 0
            while self._waiting and (not group or size + len(self._waiting[0].messages)
                                     <= self.max_messages):
                request = self._waiting.popleft()
                group.append(request)
                size += len(request.messages)
            try:
                results = await self._write(group)
            except Exception as exc:  # noqa: BLE001 - each waiting request answers with it
                for request in group:
                    if not request.done.done():
                        request.done.set_exception(exc)
                continue
            for request, result in zip(group, results, strict=True):
                if not request.done.done():
                    request.done.set_result(result)

    async def _write(self, group: list[_Request]) -> list[tuple[list[str], int]]:
        message_rows: list[dict[str, Any]] = []
        delivery_rows: list[dict[str, Any]] = []
        results: list[tuple[list[str], int]] = []
        async with self.db.write() as conn:
            repo = Repository(conn)
            triggers: dict[str, list[Trigger]] = {}
            for r in group:
                if r.org_id not in triggers:
                    triggers[r.org_id] = await org_triggers(repo, r.org_id)
                planned = await plan_messages(
                    repo, org_id=r.org_id, gateway_id=r.gateway_id, kind=r.kind,
                    messages=r.messages, triggers=triggers[r.org_id],
                )
                message_rows += planned.message_rows
                delivery_rows += planned.delivery_rows
                results.append((planned.ids, len(planned.delivery_rows)))
            await insert_planned(repo, Planned(message_rows, delivery_rows))
        self.commits += 1
        self.requests += len(group)
        return results
