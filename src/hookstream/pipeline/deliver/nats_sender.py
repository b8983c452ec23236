"""NATS publishing for broker connectors, with nats-py.

With ``jetstream``, a delivery is delivered on the stream's PubAck; ``Nats-Msg-Id`` is the
webhook-id, so a stream with a duplicate window stores a retried or replayed message once (the
PubAck says ``duplicate``). A subject no stream takes fails the attempt ("no responders").
Without JetStream (core NATS has no acknowledgement), a delivery is delivered once the server
answered a PING sent after it (``flush``): it reached the server, whether or not anyone was
subscribed. The signature headers (and the connector's static headers, ``traceparent``) are
NATS headers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.js.errors import NoStreamResponseError

from hookstream.errors import DeliveryError
from hookstream.pipeline.deliver.broker_target import BrokerTarget
from hookstream.pipeline.deliver.http11 import Timeouts

log = logging.getLogger(__name__)


async def _quiet(exc: Exception) -> None:
    # nats-py logs every error at ERROR by default; here a failure is an attempt's error.
    log.debug("NATS connection error: %s", exc)


class NatsConnection:
    """One NATS connection of a connector."""

    def __init__(self, target: BrokerTarget, client: NatsClient) -> None:
        self._target = target
        self._client = client
        self._js = client.jetstream() if target.jetstream else None

    @classmethod
    async def open(cls, target: BrokerTarget, address: str, timeouts: Timeouts
                   ) -> NatsConnection:
        """Connected to ``address``, the checked address of the host."""
        host = f"[{address}]" if ":" in address else address
        client = await nats.connect(
            servers=[f"nats://{host}:{target.port}"],
            user=target.username, password=target.password,
            # A broken connection fails the attempts on it; the pool opens a new one.
            allow_reconnect=False, max_reconnect_attempts=0,
            connect_timeout=max(1, round(timeouts.connect)),
            error_cb=_quiet, name="hookstream",
        )
        return cls(target, client)

    @property
    def alive(self) -> bool:
        return not (self._client.is_closed or self._client.is_reconnecting)

    async def publish(self, topic: str, webhook_id: str, headers: Mapping[str, str],
                      body: bytes, timeout: float) -> str:
        sent = dict(headers)
        if self._js is not None:
            sent["Nats-Msg-Id"] = webhook_id
            try:
                ack = await self._js.publish(topic, body, timeout=timeout, headers=sent)
            except (NoRespondersError, NoStreamResponseError) as exc:
                raise DeliveryError(f"no JetStream stream takes subject '{topic}' (no "
                                    "responders)") from exc
            return (f"PubAck {ack.stream} #{ack.seq}" + (" duplicate" if ack.duplicate else ""))
        await self._client.publish(topic, body, headers=sent)
        await self._client.flush(timeout=timeout)  # type: ignore[arg-type]
        return "flushed"

    async def close(self) -> None:
        if not self._client.is_closed:
            await self._client.close()
