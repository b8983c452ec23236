"""One intake: every accepted message is stored here, whatever carried it (HTTP or MQTT).

A ``Submission`` is one request's messages (one gateway, one kind) with what its transport
asks for: an ``Idempotency-Key`` (HTTP), the digest of a publish to recognise a redelivery
(MQTT), or a gateway whose organization is still to be looked up (an MQTT topic names only
the gateway). ``Intake.write`` stores a batch of submissions in one transaction: the
idempotency rows first (a concurrent request with the same key waits on them, then fails
before inserting anything), the messages, what the post-write hooks of the plug-ins add in
the same transaction, and one pending delivery per matching active connector
(``pipeline.queue.enqueue``). ``Intake.store`` is the group-commit front used by HTTP: requests
that arrive together share one transaction (one fsync on SQLite, one round trip on
PostgreSQL), each answered only once it has committed; an idle server commits a lone request
at once.

Nothing here knows a transport: waking the workers after the commit and counting metrics are
the callers' (``pipeline.queue.enqueue.wake``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError

from hookstream.errors import HookstreamError, StorageError
from hookstream.ids import new_id
from hookstream.pipeline.ingest.idempotency import (
    HEADER,
    Answer,
    IdempotencyKeyReused,
    replay,
    reused,
)
from hookstream.pipeline.message import DatastreamMessage, to_body
from hookstream.pipeline.queue.enqueue import enqueue, plan_delivery
from hookstream.pipeline.route.routing import Trigger, connectors_for
from hookstream.storage.database import Database
from hookstream.storage.repository import Repository
from hookstream.tracing import Tracing

# Messages per shared transaction; a request is never split across two.
MAX_GROUP_MESSAGES = 5000
# A batch that lost a race for an idempotency key is written again (the key then answers).
_ATTEMPTS = 3

IntakeHook = Callable[[Repository, list[dict[str, Any]], int], Awaitable[int]]
"""Runs in the intake's transaction after the messages are inserted, with their rows and the
time; returns how many deliveries it queued with a notification of its own (plug-ins: the
thermostat cloud folds its modules' state from what their gateways report)."""


@dataclass(frozen=True, slots=True)
class Idempotency:
    """An ``Idempotency-Key`` with the hash of its request, kept for ``window_seconds``."""

    key: str
    digest: str
    window_seconds: float


@dataclass(slots=True)
class Submission:
    """One request's messages: one gateway, one kind."""

    gateway_id: str
    kind: str
    messages: list[DatastreamMessage]
    # None: read from the gateway in the transaction (unknown gateways are refused).
    org_id: str | None = None
    idempotency: Idempotency | None = None
    # With ``Intake.write(deduplicate_since=...)``: a digest stored since then is a duplicate.
    source_digest: str | None = None
    # The W3C traceparent its messages' deliveries continue (tracing.py).
    traceparent: str | None = None


@dataclass(slots=True)
class Stored:
    """What became of one submission."""

    ids: list[str] = field(default_factory=list)
    routed: int = 0  # deliveries created
    replayed: dict[str, Any] | None = None  # the first answer, for a repeated key
    duplicate: bool = False  # a redelivery of a publish already stored
    unknown_gateway: bool = False
    error: HookstreamError | None = None  # refused (the key reused for another request)

    @property
    def stored(self) -> bool:
        return not (self.replayed is not None or self.duplicate or self.unknown_gateway
                    or self.error is not None)

    def answer(self) -> Answer:
        """The HTTP ingest answer (raises the submission's error)."""
        if self.error is not None:
            raise self.error
        if self.replayed is not None:
            return Answer(body=self.replayed, replayed=True)
        return Answer({"accepted": len(self.ids), "ids": self.ids}, False, self.routed)


def build_triggers(rows: Any) -> list[Trigger]:
    """Routing rows (one per trigger and scoped gateway) folded into Triggers."""
    grouped: dict[tuple[str, str, bool], set[str]] = {}
    for r in rows:
        key = (r.connector_id, r.kinds, bool(r.all_gateways))
        gateways = grouped.setdefault(key, set())
        if r.gateway_id is not None:
            gateways.add(r.gateway_id)
    return [
        Trigger(cid, frozenset(kinds.split(",")), all_gw, frozenset(gws))
        for (cid, kinds, all_gw), gws in grouped.items()
    ]


class Intake:
    """Stores submissions: the only writer of ingested messages."""

    def __init__(self, db: Database, hooks: Sequence[IntakeHook] = (),
                 max_messages: int = MAX_GROUP_MESSAGES, tracing: Tracing | None = None) -> None:
        self.db = db
        self.hooks = tuple(hooks)
        self.tracing = tracing
        self.max_messages = max_messages
        self._waiting: deque[tuple[Submission, asyncio.Future[Stored]]] = deque()
        self._writer: asyncio.Task[None] | None = None
        # Group-commit transactions committed and the submissions they held (tests, metrics).
        self.commits = 0
        self.requests = 0

    # --- group commit ----------------------------------------------------------------------
    async def store(self, submission: Submission) -> Stored:
        """Store one submission, sharing a transaction with those that arrive with it.

        Returns once committed. Cancelling the caller does not take the messages out of a
        transaction they are already in.
        """
        done: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._waiting.append((submission, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting())
        return await asyncio.shield(done)

    async def _write_waiting(self) -> None:
        while self._waiting:
            # One turn of the loop first: requests already read but not yet parsed join
            # this group rather than wait for the next commit.
            await asyncio.sleep(0)
            group: list[tuple[Submission, asyncio.Future[Stored]]] = []
            size = 0
            while self._waiting and (not group or size + len(self._waiting[0][0].messages)
                                     <= self.max_messages):
                group.append(self._waiting.popleft())
                size += len(group[-1][0].messages)
            try:
                results = await self.write([s for s, _ in group])
            except Exception as exc:  # noqa: BLE001 - each waiting request answers with it
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                continue
            self.commits += 1
            self.requests += len(group)
            for (_, done), result in zip(group, results, strict=True):
                if not done.done():
                    done.set_result(result)

    # --- the write -------------------------------------------------------------------------
    async def write(self, batch: Sequence[Submission], *,
                    deduplicate_since: int | None = None) -> list[Stored]:
        """Store ``batch`` in one transaction; one ``Stored`` per submission, in order."""
        for _ in range(_ATTEMPTS):
            try:
                return await self._write_once(batch, deduplicate_since)
            except IntegrityError:
                # Another transaction stored one of the keys first; written again, the key
                # answers with what that transaction stored.
                if not any(s.idempotency for s in batch):
                    raise
        raise StorageError(f"the {HEADER} could not be recorded; try the request again")

    async def _write_once(self, batch: Sequence[Submission],
                          deduplicate_since: int | None) -> list[Stored]:
        now = int(time.time() * 1000)
        results = [Stored() for _ in batch]
        message_rows: list[dict[str, Any]] = []
        delivery_rows: list[dict[str, Any]] = []
        async with self.db.write() as conn:
            repo = Repository(conn)
            orgs = await self._organizations(repo, batch)
            seen = await self._seen(repo, batch, deduplicate_since)
            keys: dict[tuple[str, str], tuple[Idempotency, Stored]] = {}
            triggers: dict[str, list[Trigger]] = {}
            for submission, result in zip(batch, results, strict=True):
                org_id = orgs.get(submission.gateway_id)
                if org_id is None:
                    result.unknown_gateway = True
                    continue
                digest = submission.source_digest
                if digest is not None and deduplicate_since is not None:
                    if digest in seen:  # a redelivery of what is stored: only ack it
                        result.duplicate = True
                        continue
                    seen.add(digest)
                claim = submission.idempotency
                if claim is not None and await self._repeated(
                        repo, submission.gateway_id, claim, keys, result, now):
                    continue
                if self.tracing is not None and submission.traceparent is not None:
                    with self.tracing.span("route", parent=submission.traceparent) as span:
                        targets = await self._route(repo, submission, org_id, triggers)
                        span.set_attributes({
                            "hookstream.gateway_id": submission.gateway_id,
                            "hookstream.kind": submission.kind,
                            "hookstream.messages": len(submission.messages),
                            "hookstream.connectors": len(targets),
                        })
                else:
                    targets = await self._route(repo, submission, org_id, triggers)
                for m in submission.messages:
                    message_id = new_id("msg", now)
                    result.ids.append(message_id)
                    message_rows.append({
                        "id": message_id, "org_id": org_id, "gateway_id": submission.gateway_id,
                        "kind": submission.kind, "device_id": m.deviceId, "body": to_body(m, now),
                        "accepted_at": now, "source_digest": None,
                        "traceparent": submission.traceparent,
                    })
                    for connector_id in targets:
                        delivery_rows.append(plan_delivery(
                            org_id=org_id, message_id=message_id, connector_id=connector_id,
                            kind=submission.kind, device_id=m.deviceId, now=now))
                    result.routed += len(targets)
                if digest is not None and message_rows:
                    message_rows[-len(submission.messages)]["source_digest"] = digest
                if claim is not None:
                    keys[(submission.gateway_id, claim.key)] = (claim, result)
            # The keys first: a concurrent request with one waits here (PostgreSQL) and fails
            # before inserting its messages.
            for (gateway_id, key), (claim, result) in keys.items():
                body = {"accepted": len(result.ids), "ids": result.ids}
                await repo.insert_idempotency_key(
                    gateway_id=gateway_id, key=key, request_hash=claim.digest,
                    response=orjson.dumps({"status": 202, "body": body}).decode(),
                    created_at=now,
                )
            await repo.insert_messages(message_rows)
            notified = 0
            for hook in self.hooks:
                notified += await hook(repo, message_rows, int(time.time() * 1000))
            # A hook that queued notified deliveries notified for the whole transaction.
            await enqueue(repo, delivery_rows, notify=not notified)
        return results

    @staticmethod
    async def _route(repo: Repository, submission: Submission, org_id: str,
                     triggers: dict[str, list[Trigger]]) -> list[str]:
        """The connectors the submission's messages go to (the org's triggers read once)."""
        if org_id not in triggers:
            triggers[org_id] = build_triggers(await repo.routing_rows(org_id))
        return connectors_for(submission.kind, submission.gateway_id, triggers[org_id])

    @staticmethod
    async def _organizations(repo: Repository, batch: Sequence[Submission]) -> dict[str, str]:
        orgs = {s.gateway_id: s.org_id for s in batch if s.org_id is not None}
        unknown = sorted({s.gateway_id for s in batch if s.org_id is None})
        if unknown:
            orgs.update(await repo.known_gateways(unknown))
        return orgs

    @staticmethod
    async def _seen(repo: Repository, batch: Sequence[Submission],
                    since: int | None) -> set[str]:
        digests = sorted({s.source_digest for s in batch if s.source_digest is not None})
        if since is None or not digests:
            return set()
        gateways = sorted({s.gateway_id for s in batch if s.source_digest is not None})
        return set(await repo.seen_digests(gateways, digests, since))

    @staticmethod
    async def _repeated(repo: Repository, gateway_id: str, claim: Idempotency,
                        keys: dict[tuple[str, str], tuple[Idempotency, Stored]],
                        result: Stored, now: int) -> bool:
        """Whether the key was used already (``result`` then says how); else claims it."""
        earlier = keys.get((gateway_id, claim.key))
        if earlier is not None:  # the same key twice in this batch: the first one counts
            first, stored = earlier
            if first.digest != claim.digest:
                result.error = reused(claim.window_seconds)
            else:
                result.replayed = {"accepted": len(stored.ids), "ids": stored.ids}
            return True
        cutoff = now - int(claim.window_seconds * 1000)
        previous = await repo.get_idempotency_key(gateway_id, claim.key)
        if previous is not None and previous.created_at >= cutoff:
            try:
                result.replayed = replay(previous.request_hash, previous.response, claim.digest,
                                         claim.window_seconds)
            except IdempotencyKeyReused as exc:
                result.error = exc
            return True
        if previous is not None:
            await repo.delete_expired_idempotency_key(gateway_id, claim.key, cutoff)
        return False
