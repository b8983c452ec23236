"""Publishing to a broker connector's MQTT, AMQP or NATS server: one pooled connection per
connector, opened on first use, reused by every delivery, opened again after a failure.

A publish reports an ``AttemptResult`` like a POST, so retries, ordering, batching, replay,
logs, alerts and the test button work alike. A broker's acknowledgement (PUBACK, basic.ack,
JetStream's PubAck; for MQTT QoS 0 and core NATS, the write) is recorded as status 200 with
what acknowledged it as the response excerpt, so that every report that counts 2xx as
delivered counts it; a refusal, a connection failure or no acknowledgement in time is an
error, retried by the connector's policy like an HTTP failure.

The broker's host is resolved through the guarded resolver and the connection goes to the
address checked (the SSRF guard of webhooks, including its DNS rebinding defence); for TLS the
certificate is checked against the name.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from hookstream.errors import TargetRefused, TimeoutError_
from hookstream.pipeline.deliver.addresses import REFUSED_HINT
from hookstream.pipeline.deliver.broker_target import BrokerTarget
from hookstream.pipeline.deliver.client import AttemptResult, describe_error, map_error
from hookstream.pipeline.deliver.http11 import Timeouts
from hookstream.pipeline.deliver.topics import Source, render

if TYPE_CHECKING:
    from hookstream.pipeline.deliver.client import GuardedResolver

log = logging.getLogger(__name__)

_MOST_CONNECTIONS = 10_000  # connectors with a connection open in one worker


class Connection(Protocol):
    """One open connection to a broker (``mqtt_sender``, ``amqp_sender``, ``nats_sender``)."""

    @property
    def alive(self) -> bool: ...

    async def publish(self, topic: str, webhook_id: str, headers: Mapping[str, str],
                      body: bytes, timeout: float) -> str:
        """Publish; what acknowledged it (for the attempt log). Raises on failure."""
        ...

    async def close(self) -> None: ...


class Brokers:
    """A worker's broker connections, one per connector, keyed by its target."""

    def __init__(self, resolver: GuardedResolver, *, tls_only: bool = False,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._resolver = resolver
        self._tls_only = tls_only
        self._ssl_context = ssl_context
        self._open: dict[str, tuple[tuple[Any, ...], Connection]] = {}
        self._opening: dict[str, asyncio.Lock] = {}

    async def publish(
        self, connector_id: str, target: BrokerTarget, source: Source, webhook_id: str,
        headers: Mapping[str, str], body: bytes, timeouts: Timeouts,
    ) -> AttemptResult:
        """Publish ``body`` to the connector's topic for ``source``; the attempt's result."""
        started = time.time()
        t0 = time.perf_counter()

        def done(**kw: Any) -> AttemptResult:
            return AttemptResult(started_at=started,
                                 duration_ms=int((time.perf_counter() - t0) * 1000), **kw)

        topic = render(target.template, source, target.type)
        try:
            conn = await asyncio.wait_for(self._connection(connector_id, target, timeouts),
                                          timeouts.connect)
            acked = await conn.publish(topic, webhook_id, headers, body, timeouts.total)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded attempt
            mapped = map_error(exc)
            await self._forget(connector_id, dead_only=True)
            return done(error=f"{target.type} {topic}: {describe_error(exc)}",
                        refused=isinstance(mapped, TargetRefused),
                        timed_out=isinstance(mapped, TimeoutError_))
        return done(status_code=200, response_body=f"{acked} ({target.type} {topic})")

    async def _connection(self, connector_id: str, target: BrokerTarget, timeouts: Timeouts
                          ) -> Connection:
        key = target.key
        known = self._open.get(connector_id)
        if known is not None and known[0] == key and known[1].alive:
            return known[1]
        lock = self._opening.setdefault(connector_id, asyncio.Lock())
        async with lock:  # one connection per connector, however many deliveries wait
            known = self._open.get(connector_id)
            if known is not None and known[0] == key and known[1].alive:
                return known[1]
            await self._forget(connector_id)
            if len(self._open) >= _MOST_CONNECTIONS:
                oldest = next(iter(self._open))
                await self._forget(oldest)
            conn = await self._connect(target, timeouts)
            self._open[connector_id] = (key, conn)
            return conn

    async def _connect(self, target: BrokerTarget, timeouts: Timeouts) -> Connection:
        if self._tls_only and not target.tls:
            raise TargetRefused(f"{target.type}:// is refused: HOOKSTREAM_HTTPS_ONLY=true allows "
                                "only TLS connections (mqtts://, amqps://)")
        address = await self._address(target)
        if target.type == "mqtt":
            from hookstream.pipeline.deliver.mqtt_sender import MqttConnection
            return await MqttConnection.open(target, address, timeouts, self._tls())
        if target.type == "amqp":
            from hookstream.pipeline.deliver.amqp_sender import AmqpConnection
            return await AmqpConnection.open(target, address, timeouts, self._tls())
        from hookstream.pipeline.deliver.nats_sender import NatsConnection
        return await NatsConnection.open(target, address, timeouts)

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    async def _address(self, target: BrokerTarget) -> str:
        """The first address of the broker's host that outgoing connections may reach."""
        answers: list[Any] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                answers = await self._resolver.resolve(target.host, target.port, family)
            except TargetRefused:
                raise
            except OSError:
                continue
            if answers:
                break
        if not answers:
            raise TargetRefused(f"{target.host} has no address outgoing connections may reach; "
                                + REFUSED_HINT)
        return str(answers[0]["host"])

    async def _forget(self, connector_id: str, *, dead_only: bool = False) -> None:
        known = self._open.get(connector_id)
        if known is None or (dead_only and known[1].alive):
            return
        del self._open[connector_id]
        try:
            await known[1].close()
        except Exception:  # noqa: BLE001 - a connection already broken closes as it can
            log.debug("closing a broker connection failed", exc_info=True)

    async def close(self) -> None:
        for connector_id in list(self._open):
            await self._forget(connector_id)
