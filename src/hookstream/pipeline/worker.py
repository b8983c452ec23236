"""The delivery worker: claim due deliveries, POST them concurrently, record the outcomes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from hookstream.ids import id_time_ms
from hookstream.metrics import (
    ATTEMPT_SECONDS,
    ATTEMPT_STATUS,
    DELIVERY_ATTEMPTS,
    DELIVERY_LATENCY,
    status_class,
)
from hookstream.models import DeliveryStatus, Kind
from hookstream.pipeline.deliver import broker_target
from hookstream.pipeline.deliver.attempt import attempt
from hookstream.pipeline.deliver.client import AttemptResult, Sender
from hookstream.pipeline.deliver.oauth2 import TokenCache
from hookstream.pipeline.deliver.retry import Answer, Decision, RetryPolicy, Verdict
from hookstream.pipeline.deliver.sandbox import TransformRunner
from hookstream.pipeline.deliver.signing import secret_key
from hookstream.pipeline.deliver.topics import Source, merge
from hookstream.pipeline.deliver.webhook import Endpoint
from hookstream.pipeline.queue.claimer import Claimed, Claimer
from hookstream.pipeline.queue.wakeup import PostgresListener, Wakeup
from hookstream.pipeline.record.recorder import Outcome, Recorder
from hookstream.security.secretbox import SecretBox
from hookstream.settings import Settings
from hookstream.storage.database import Database, asyncpg_dsn
from hookstream.storage.repository import Repository
from hookstream.tracing import Tracing, now_ns

log = logging.getLogger(__name__)

# Labelled children looked up once: ``labels()`` costs a lock and a tuple per call.
_BY_VERDICT = {v: DELIVERY_ATTEMPTS.labels(v.value) for v in Verdict}
_BY_STATUS_CLASS: dict[str, Any] = {}

_ENDPOINT_TTL = 2.0  # seconds a worker trusts its copy of a connector
SHUTDOWN_GRACE = 5.0  # seconds attempts in flight may finish when a worker stops


class EndpointCache:
    """Connectors as senders need them (secrets decrypted), refreshed every few seconds."""

    def __init__(self, db: Database, box: SecretBox, settings: Settings) -> None:
        self._db = db
        self._box = box
        self._settings = settings
        self._entries: dict[str, tuple[float, Endpoint | None]] = {}

    async def get_many(self, ids: set[str]) -> dict[str, Endpoint | None]:
        now = time.monotonic()
        stale = [i for i in ids if i not in self._entries or self._entries[i][0] < now]
        if stale:
            async with self._db.read() as conn:
                rows = await Repository(conn).connector_for_sending(stale)
            found = {r.id: r for r in rows}
            for cid in stale:
                row = found.get(cid)
                self._entries[cid] = (now + _ENDPOINT_TTL, self._endpoint(row) if row else None)
        return {i: self._entries[i][1] for i in ids}

    def _endpoint(self, row: Any) -> Endpoint | None:
        if row.deleted_at is not None:
            return None
        box = self._box
        auth = orjson.loads(box.decrypt(row.auth_secret_enc)) if row.auth_secret_enc else {}
        headers = orjson.loads(box.decrypt(row.headers_enc)) if row.headers_enc else {}
        schedule = (
            tuple(orjson.loads(row.retry_schedule)) if row.retry_schedule
            else self._settings.retry_schedule
        )
        return Endpoint(
            id=row.id,
            base_url=row.base_url,
            routes={
                Kind.VALUES: row.route_values,
                Kind.EVENTS: row.route_events,
                Kind.ALARMS: row.route_alarms,
                Kind.ALERT: "",  # alerts go to the alerts connector's URL itself
                Kind.THERMOSTAT: "",  # so do a plant subscription's notifications
            },
            signing_key=secret_key(box.decrypt(row.secret_enc)),
            previous_key=(
                secret_key(box.decrypt(row.previous_secret_enc))
                if row.previous_secret_enc else None
            ),
            previous_key_until=(row.previous_secret_expires_at or 0) / 1000,
            policy=RetryPolicy(schedule, self._settings.retry_jitter, row.max_attempts),
            auth=auth,
            headers=headers,
            active=bool(row.active),
            connect_timeout=row.connect_timeout,
            request_timeout=row.request_timeout,
            target=_broker_target(box, row),
            transform=row.transform_expression,
        )


def _broker_target(box: SecretBox, row: Any) -> broker_target.BrokerTarget | None:
    """A broker connector's target, credentials decrypted; None for an HTTP connector."""
    if row.type not in broker_target.BROKER_TYPES or not row.target_public:
        return None
    secret = orjson.loads(box.decrypt(row.target_secret_enc)) if row.target_secret_enc else {}
    return broker_target.build(row.type, orjson.loads(row.target_public), secret)


def message_source(claimed: Claimed, body: bytes | None) -> Source:
    """What a delivery's placeholders stand for: its gateway, and the device and property
    its message names."""
    device_id = prop = None
    if body is not None:
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            message = None
        if isinstance(message, dict):
            device_id = message.get("deviceId")
            prop = message.get("property")
    return Source(
        kind=claimed.kind, gateway_id=claimed.gateway_id,
        gateway_external_id=claimed.gateway_external_id,
        device_id=device_id if isinstance(device_id, str) else None,
        property=prop if isinstance(prop, str) else None,
    )


class Worker:
    """Runs until cancelled; many workers (processes) may share one PostgreSQL."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        box: SecretBox,
        wakeup: Wakeup | None = None,
        on_ready: Callable[[], None] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.tracing = tracing
        # Called once, after the first claim went through (the database answers the worker).
        self._on_ready = on_ready
        self.db = db
        self.wakeup = wakeup or Wakeup()
        self.claimer = Claimer(db, settings.lease_seconds, settings.connector_max_concurrency)
        self.recorder = Recorder(
            db,
            batch=settings.record_batch,
            flush_ms=settings.record_flush_ms,
            on_retry_scheduled=self._wake_at_ms,
            # Recorded outcomes free connectors' in-flight slots: claim again.
            on_written=self.wakeup.set,
            deactivate_after_failing_ms=int(settings.deactivate_after_failing_seconds * 1000),
            tracing=tracing,
        )
        self.endpoints = EndpointCache(db, box, settings)
        self._inflight: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        # Attempts ended since the last claim: once a few are, their connectors have room
        # again (``Recorder.settling``) and a claim is worth its transaction.
        self._ended = 0
        self._claim_after = max(1, settings.claim_batch // 4)
        self.sender: Sender | None = None
        self.tokens: TokenCache | None = None
        # Connectors' transforms, in child processes started on first use.
        self.transforms = TransformRunner(settings.transform_timeout_ms)

    async def run(self) -> None:
        self.sender = Sender.from_settings(
            self.settings, max_connections=self.settings.worker_concurrency
        )
        self.tokens = TokenCache(self.sender, self.settings.oauth2_refresh_margin_seconds)
        helpers = [asyncio.create_task(self.recorder.run(), name="recorder")]
        if not self.db.is_sqlite:
            listener = PostgresListener(asyncpg_dsn(self.settings.database_url), self.wakeup)
            helpers.append(asyncio.create_task(listener.run(), name="listener"))
        try:
            await self._claim_loop()
        finally:
            # Let attempts in flight finish briefly, then write every outcome we have.
            if self._inflight:
                await asyncio.wait(self._inflight, timeout=SHUTDOWN_GRACE)
                # Whatever still hangs is abandoned: its lease runs out and it is sent again.
                for task in list(self._inflight):
                    task.cancel()
                await asyncio.gather(*self._inflight, return_exceptions=True)
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await asyncio.shield(self.recorder.drain())
            await self.sender.close()
            await self.transforms.close()

    async def _claim_loop(self) -> None:
        limit_total = self.settings.worker_concurrency
        while True:
            free = limit_total - len(self._inflight)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            limit = min(free, self.settings.claim_batch)
            started = now_ns()
            self._ended = 0
            try:
                claimed, bodies = await self.claimer.claim(limit, self.recorder.settling)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database may be restarting; keep trying
                log.exception("claiming deliveries failed; retrying")
                await asyncio.sleep(self.settings.poll_interval)
                continue
            if self._on_ready is not None:
                self._on_ready()
                self._on_ready = None
            if claimed and self.tracing is not None:
                self.tracing.batch_span("claim", started, (c.traceparent for c in claimed),
                                        {"hookstream.deliveries": len(claimed)})
            if claimed:
                # Claim again at once: connectors left out of this claim may have due work.
                await self._start(claimed, bodies)
                continue
            # Due work that was not claimable (a connector at its limit, a device waiting for
            # its previous message) is woken by recorded outcomes, not by a timer.
            next_due = await self._next_due_safe()
            if next_due is not None and next_due > time.time() * 1000:
                self._wake_at_ms(next_due)
            await self.wakeup.wait(self.settings.poll_interval)

    def _wake_at_ms(self, epoch_ms: int) -> None:
        loop = asyncio.get_running_loop()
        self.wakeup.at(loop.time() + max(0.0, epoch_ms / 1000 - time.time()))

    async def _next_due_safe(self) -> int | None:
        try:
            return await self.claimer.next_due_at()
        except Exception:  # noqa: BLE001 - only a hint for the next wake-up
            return None

    async def _start(self, claimed: list[Claimed], bodies: dict[str, bytes]) -> None:
        endpoints = await self.endpoints.get_many({c.connector_id for c in claimed})
        batches: dict[str, list[Claimed]] = {}
        for c in claimed:
            if c.batch_id is not None:
                batches.setdefault(c.batch_id, []).append(c)
            else:
                endpoint = endpoints.get(c.connector_id)
                body = bodies.get(c.message_id)
                source = (message_source(c, body)
                          if endpoint is not None and endpoint.target is not None else None)
                self._spawn(self._deliver([c], c.message_id, body, endpoint, source))
        for batch_id, members in batches.items():
            members.sort(key=lambda m: m.message_id)  # ingest order
            parts = [bodies.get(m.message_id) for m in members]
            body = None if any(p is None for p in parts) else (
                b"[" + b",".join(p for p in parts if p is not None) + b"]"
            )
            endpoint = endpoints.get(members[0].connector_id)
            source = (merge(message_source(m, p) for m, p in zip(members, parts, strict=True))
                      if endpoint is not None and endpoint.target is not None else None)
            self._spawn(self._deliver(members, batch_id, body, endpoint, source))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._inflight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slot_freed.set()
        self._ended += 1
        if self._ended == self._claim_after:
            self.wakeup.nudge()
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed", exc_info=task.exception())

    async def _deliver(
        self, members: list[Claimed], webhook_id: str, body: bytes | None,
        endpoint: Endpoint | None, source: Source | None = None,
    ) -> None:
        """One POST: a single message, or a batch (a JSON array) whose members share it."""
        assert self.sender is not None
        if endpoint is None or not endpoint.active or body is None:
            for c in members:
                self.recorder.put(Outcome(c.id, c.lease_id, "release", c.attempts, 0, None))
            return
        head = members[0]
        number = max(c.attempts for c in members) + 1
        if self.tracing is None:
            result = await attempt(self.sender, endpoint, head.kind, webhook_id, body,
                                   self.tokens, traceparent=head.traceparent, source=source,
                                   transforms=self.transforms)
            decision, now = _decide(endpoint, number, result)
        else:
            result, decision, now = await self._traced_attempt(
                members, webhook_id, body, endpoint, number, source)
        ATTEMPT_SECONDS.observe(result.duration_ms / 1000)
        next_at = int((decision.retry_at or now) * 1000)
        status = (
            DeliveryStatus.PENDING.value if decision.verdict is Verdict.RETRY
            else decision.verdict.value
        )
        _BY_VERDICT[decision.verdict].inc()
        answer = status_class(result.status_code, timed_out=result.timed_out,
                              refused=result.refused)
        counter = _BY_STATUS_CLASS.get(answer)
        if counter is None:
            counter = _BY_STATUS_CLASS[answer] = ATTEMPT_STATUS.labels(answer)
        counter.inc()
        if decision.verdict is Verdict.DELIVERED:
            for c in members:
                DELIVERY_LATENCY.observe(max(0.0, now - id_time_ms(c.message_id) / 1000))
        else:
            log.info(
                "attempt %d of %s to %s: %s; %s", number, webhook_id, endpoint.id,
                result.status_code or result.error, decision.verdict.value,
                extra={"delivery_id": head.id, "message_id": head.message_id,
                       "webhook_id": webhook_id,
                       "connector_id": endpoint.id, "attempt": number,
                       "status_code": result.status_code, "outcome": decision.verdict.value},
            )
        last = members[-1]
        for c in members:
            self.recorder.put(Outcome(
                c.id, c.lease_id, status, number, next_at, result,
                connector_id=c.connector_id, message_id=c.message_id, reason=decision.reason,
                deactivate=decision.deactivate, traceparent=c.traceparent,
                ends_request=c is last,
            ))

    async def _traced_attempt(
        self, members: list[Claimed], webhook_id: str, body: bytes, endpoint: Endpoint,
        number: int, source: Source | None = None,
    ) -> tuple[AttemptResult, Decision, float]:
        """The attempt as a span, a child of its message's ingest span; the webhook's
        ``traceparent`` names this span."""
        assert self.sender is not None and self.tracing is not None
        head = members[0]
        with self.tracing.span(f"POST {head.kind} webhook", parent=head.traceparent,
                               kind="client") as span:
            result = await attempt(self.sender, endpoint, head.kind, webhook_id, body,
                                   self.tokens, traceparent=self.tracing.traceparent(span),
                                   source=source, transforms=self.transforms)
            decision, now = _decide(endpoint, number, result)
            span.set_attributes({
                "http.request.method": "POST", "url.full": endpoint.url_for(head.kind),
                "hookstream.connector_id": endpoint.id, "hookstream.delivery_id": head.id,
                "hookstream.webhook_id": webhook_id, "hookstream.attempt": number,
                "hookstream.messages": len(members), "hookstream.outcome": decision.verdict.value,
            })
            if result.status_code is not None:
                span.set_attribute("http.response.status_code", result.status_code)
            if not result.succeeded:
                self.tracing.failed(span, result.error or f"HTTP {result.status_code}")
        return result, decision, now


def _decide(endpoint: Endpoint, number: int, result: AttemptResult) -> tuple[Decision, float]:
    """The retry policy's decision on attempt ``number``'s result, and the time it was made."""
    now = time.time()
    return endpoint.policy.decide(
        number, result.succeeded, now, answer=Answer(
            result.status_code, result.retry_after, result.abort, result.refused,
            transform_failed=result.transform_failed),
    ), now
