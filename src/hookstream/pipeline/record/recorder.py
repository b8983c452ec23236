"""Batched writes of attempt outcomes: one transaction for many deliveries.

A worker hands each outcome to ``Recorder.put``; the recorder writes what has gathered as
soon as a turn of the event loop brings no more (group commit: what arrives meanwhile forms
the next batch), at most ``batch`` outcomes and ``flush_ms`` of gathering per write. The
write runs under ``asyncio.shield`` and is retried until it succeeds, so neither a
cancellation nor a database hiccup loses it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hookstream.ids import new_id
from hookstream.metrics import CONNECTORS_DEACTIVATED
from hookstream.models import DeliveryStatus
from hookstream.pipeline.deliver.client import AttemptResult
from hookstream.pipeline.queue import toggle
from hookstream.pipeline.record.alerts import AlertEvent, enqueue_alerts
from hookstream.pipeline.record.rollup import counted
from hookstream.storage.database import Database, database_away
from hookstream.storage.repository import Repository
from hookstream.tracing import Tracing, now_ns

log = logging.getLogger(__name__)

# Failures of one batch, the database answering, before its outcomes are written one by one.
BAD_BATCH_TRIES = 3
# At shutdown, what is being written and what is queued each get this long.
DRAIN_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one leased delivery.

    ``status`` is ``delivered``, ``pending`` (retry at ``next_attempt_at``), ``failed``, or
    ``release`` (not attempted: give the lease back, held).
    """

    delivery_id: str
    lease_id: str
    status: str
    attempt: int
    next_attempt_at: int
    result: AttemptResult | None
    connector_id: str = ""
    message_id: str = ""
    reason: str | None = None  # why it failed or was held (policy's words)
    deactivate: bool = False  # this answer switches the connector off (410 Gone)
    traceparent: str | None = None  # its message's (the record span links to it)
    # The last of its request's outcomes (a batch's members share one request): counted in
    # ``Recorder.settling`` once per request, as the database counts requests in flight.
    ends_request: bool = True


class Recorder:
    def __init__(
        self,
        db: Database,
        *,
        batch: int,
        flush_ms: float,
        on_retry_scheduled: Callable[[int], None] | None = None,
        on_written: Callable[[], None] | None = None,
        deactivate_after_failing_ms: int = 5 * 86400 * 1000,
        tracing: Tracing | None = None,
    ) -> None:
        self._db = db
        self._tracing = tracing
        self._deactivate_after_ms = deactivate_after_failing_ms
        self._on_retry_scheduled = on_retry_scheduled
        self._on_written = on_written
        self._batch = batch
        self._flush_s = flush_ms / 1000
        self._queue: asyncio.Queue[Outcome] = asyncio.Queue()
        # Per connector, attempts that are over but whose outcomes wait here: their rows are
        # still leased in the database, which counts them as in flight; the claimer does not.
        self.settling: Counter[str] = Counter()
        # The batch being written: cancelling run() does not cancel it (shield), so drain()
        # waits for it, before the caller closes the database under it.
        self._writing: asyncio.Task[None] | None = None

    def put(self, outcome: Outcome) -> None:
        self._queue.put_nowait(outcome)
        if outcome.connector_id and outcome.ends_request:
            self.settling[outcome.connector_id] += 1

    def _taken(self, outcomes: list[Outcome]) -> None:
        # Counted until a write takes them: while it runs, the database still counts them
        # as leased and the claimer no longer subtracts them (too few claimed, never too many).
        for o in outcomes:
            if o.connector_id and o.ends_request:
                left = self.settling[o.connector_id] - 1
                if left > 0:
                    self.settling[o.connector_id] = left
                else:
                    del self.settling[o.connector_id]

    async def run(self) -> None:
        while True:
            first = await self._queue.get()
            pending = [first]
            deadline = time.monotonic() + self._flush_s
            # Group commit: take what the tasks ready to run add, and write as soon as a turn
            # of the loop adds nothing (or the batch is full, or flush_ms has passed). The
            # next batch gathers while this one is written, so batches grow with the load
            # and a lone outcome is not held for flush_ms.
            while len(pending) < self._batch and time.monotonic() < deadline:
                if self._queue.empty():
                    await asyncio.sleep(0)
                    if self._queue.empty():
                        break
                while not self._queue.empty() and len(pending) < self._batch:
                    pending.append(self._queue.get_nowait())
            self._taken(pending)
            self._writing = asyncio.ensure_future(self._write_until_done(pending))
            await asyncio.shield(self._writing)

    async def drain(self) -> None:
        """At shutdown, once run() is cancelled: finish the batch being written, then write
        everything queued. What is not written within DRAIN_SECONDS each is left to its lease
        (sent again); the write given up is cancelled and awaited, so its connection is back in
        the pool, and closed with it, rather than left open under a disposed engine."""
        writing, self._writing = self._writing, None
        if writing is not None and not writing.done():
            done, _ = await asyncio.wait({writing}, timeout=DRAIN_SECONDS)
            if not done:
                log.error("gave up writing a batch of outcomes at shutdown")
                writing.cancel()
                await asyncio.gather(writing, return_exceptions=True)
        pending: list[Outcome] = []
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())
        self._taken(pending)
        if pending:
            await self._write_until_done(pending, give_up_after=DRAIN_SECONDS)

    async def _write_until_done(
        self, outcomes: list[Outcome], give_up_after: float | None = None
    ) -> None:
        delay = 0.1
        deadline = None if give_up_after is None else time.monotonic() + give_up_after
        failures = 0
        while True:
            try:
                started = now_ns()
                await self._write(outcomes)
                if self._tracing is not None:
                    self._tracing.batch_span("record", started, (o.traceparent for o in outcomes),
                                             {"hookstream.outcomes": len(outcomes)})
                break
            except Exception as exc:  # noqa: BLE001 - keep the batch; the database may come back
                log.exception("writing %d delivery outcomes failed; retrying", len(outcomes))
                failures += 1
                if not database_away(exc) and failures >= BAD_BATCH_TRIES:
                    # The database answers but refuses this batch: one bad outcome must not
                    # stop every other. Alone, a bad one is dropped: its lease runs out and
                    # its delivery is sent again.
                    if len(outcomes) > 1:
                        for outcome in outcomes:
                            await self._write_until_done([outcome], give_up_after)
                        return
                    log.error("dropped the outcome of delivery %s (%s); it is sent again when "
                              "its lease runs out", outcomes[0].delivery_id, exc,
                              extra={"delivery_id": outcomes[0].delivery_id})
                    return
                if deadline is not None and time.monotonic() > deadline:
                    # Shutting down: the leases run out and these deliveries are retried.
                    log.error("gave up writing %d outcomes at shutdown", len(outcomes))
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if self._on_written is not None:
            self._on_written()
        if self._on_retry_scheduled is not None:
            due = [o.next_attempt_at for o in outcomes if o.status == DeliveryStatus.PENDING]
            if due:
                self._on_retry_scheduled(min(due))

    async def _write(self, outcomes: list[Outcome]) -> None:
        now = int(time.time() * 1000)
        attempts, delivered, not_delivered, released = [], [], [], []
        retried: list[dict[str, Any]] = []
        finished: list[dict[str, Any]] = []
        for o in outcomes:
            r = o.result
            if r is None:
                released.append({"b_id": o.delivery_id, "b_lease_id": o.lease_id, "b_now": now})
                continue
            attempts.append({
                "id": new_id("att"),
                "delivery_id": o.delivery_id,
                "number": o.attempt,
                "started_at": int(r.started_at * 1000),
                "duration_ms": r.duration_ms,
                "status_code": r.status_code,
                "response_body": r.response_body,
                "error": r.error,
            })
            row = {
                "b_id": o.delivery_id,
                "b_lease_id": o.lease_id,
                "b_attempts": o.attempt,
                "b_status_code": r.status_code,
                "b_now": now,
            }
            if o.status == DeliveryStatus.DELIVERED:
                delivered.append(row)
            else:
                error = r.error or (f"HTTP {r.status_code}" if r.status_code else None)
                if o.reason and o.status != DeliveryStatus.PENDING:
                    error = f"{error}; {o.reason}" if error else o.reason
                row.update(b_status=o.status, b_next_attempt_at=o.next_attempt_at, b_error=error)
                not_delivered.append(row)
                (retried if o.status == DeliveryStatus.PENDING else finished).append(row)
        counts = counted(
            (o.connector_id, int(o.result.started_at * 1000), o.result.status_code,
             o.result.duration_ms)
            for o in outcomes if o.result is not None and o.connector_id
        )
        async with self._db.write(durable=False) as conn:
            repo = Repository(conn)
            await repo.insert_attempts(attempts)
            await repo.add_attempt_counts(counts)
            # Records first: they are written only while the queue row shows the lease.
            await repo.record_delivered(delivered)
            await repo.record_not_delivered(not_delivered)
            await repo.release_deliveries(released)
            await repo.finish_delivered(delivered)
            await repo.finish_queued(finished)
            # A failed one still there was held meanwhile: it gives its lease back, held.
            await repo.requeue(retried + finished)
            await repo.release_queued(released)
            alerts = await self._connector_health(repo, outcomes, now)
            alerts += [
                AlertEvent("delivery.failed", o.connector_id, {
                    "deliveryId": o.delivery_id, "messageId": o.message_id,
                    "attempts": o.attempt, "reason": o.reason,
                })
                for o in outcomes if o.status == DeliveryStatus.FAILED and o.connector_id
            ]
            await enqueue_alerts(repo, alerts, now)
        # Counted once committed: a batch written again after a failure counts once.
        switched_off = sum(1 for a in alerts if a.type == "connector.deactivated")
        if switched_off:
            CONNECTORS_DEACTIVATED.inc(switched_off)

    async def _connector_health(
        self, repo: Repository, outcomes: list[Outcome], now: int
    ) -> list[AlertEvent]:
        """Track since when a connector's every attempt failed; switch off the ones failing
        for too long, and those whose receiver answered 410 Gone (holding their queue)."""
        succeeded: set[str] = set()
        first_failure: dict[str, int] = {}
        gone: dict[str, str] = {}
        for o in outcomes:
            if o.result is None or not o.connector_id:
                continue
            if o.result.succeeded:
                succeeded.add(o.connector_id)
            else:
                started = int(o.result.started_at * 1000)
                first_failure[o.connector_id] = min(first_failure.get(o.connector_id, started),
                                                    started)
            if o.deactivate:
                gone[o.connector_id] = o.reason or "switched off by the receiver's answer"
        await repo.connector_succeeded([{"b_id": c} for c in succeeded])
        failed_only = {c: t for c, t in first_failure.items() if c not in succeeded}
        await repo.connector_failed([{"b_id": c, "b_since": t} for c, t in failed_only.items()])
        if failed_only:
            cutoff = now - self._deactivate_after_ms
            for row in await repo.failing_since_before(list(failed_only), cutoff):
                days = (now - row.failing_since) / 86_400_000
                gone.setdefault(
                    row.id, f"every attempt failed for {days:.2g} days; switched off"
                )
        alerts = []
        for connector_id, reason in gone.items():
            if await repo.deactivate_connector(connector_id, reason, now):
                await toggle.hold(repo, connector_id, now)
                log.warning("connector %s switched off: %s", connector_id, reason)
                alerts.append(AlertEvent("connector.deactivated", connector_id,
                                         {"reason": reason}))
        return alerts
