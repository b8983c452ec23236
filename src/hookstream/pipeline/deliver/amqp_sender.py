"""AMQP 0-9-1 publishing for broker connectors (RabbitMQ), with aiormq.

The channel is in confirm mode: a delivery is delivered on the broker's ``basic.ack``; a
``basic.nack``, a message no queue takes (published ``mandatory``, so the broker returns it
rather than dropping it), an exchange that does not exist or a broken connection fail the
attempt. Messages are persistent (delivery mode 2), ``message_id`` is the webhook-id, and the
signature headers (and the connector's static headers, ``traceparent``) are message headers.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection
from pamqp import commands as spec
from yarl import URL

from hookstream.errors import DeliveryError
from hookstream.pipeline.deliver.broker_target import BrokerTarget
from hookstream.pipeline.deliver.http11 import Timeouts

PERSISTENT = 2


class AmqpConnection:
    """One AMQP connection of a connector and its confirm-mode channel."""

    def __init__(self, target: BrokerTarget, connection: AbstractConnection,
                 channel: AbstractChannel) -> None:
        self._target = target
        self._connection = connection
        self._channel = channel
        self._reopening: asyncio.Lock = asyncio.Lock()

    @classmethod
    async def open(cls, target: BrokerTarget, address: str, timeouts: Timeouts,
                   tls: ssl.SSLContext) -> AmqpConnection:
        """Connected to ``address`` (the checked address of the host; by name with TLS, whose
        certificate is checked against it)."""
        host = target.host if target.tls else address
        url = URL.build(
            scheme="amqps" if target.tls else "amqp", host=host, port=target.port,
            user=target.username, password=target.password, path="/" + target.vhost,
        )
        connection = await aiormq.connect(url, context=tls if target.tls else None)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        except BaseException:
            await connection.close()
            raise
        return cls(target, connection, channel)

    @property
    def alive(self) -> bool:
        return not self._connection.is_closed

    async def _open_channel(self) -> AbstractChannel:
        """The channel, opened again when the broker closed it (an unknown exchange closes
        the channel, not the connection)."""
        if not self._channel.is_closed:
            return self._channel
        async with self._reopening:
            if self._channel.is_closed:
                self._channel = await self._connection.channel(
                    publisher_confirms=True, on_return_raises=True)
        return self._channel

    async def publish(self, topic: str, webhook_id: str, headers: Mapping[str, str],
                      body: bytes, timeout: float) -> str:
        channel = await self._open_channel()
        table: dict[str, Any] = {k: v for k, v in headers.items() if k != "content-type"}
        properties = spec.Basic.Properties(
            content_type=headers.get("content-type", "application/json"),
            delivery_mode=PERSISTENT, message_id=webhook_id, headers=table,
        )
        try:
            # aiormq's Channel takes ``wait``; its abstract base does not declare it.
            confirmation = await channel.basic_publish(  # type: ignore[call-arg]
                body, exchange=self._target.exchange, routing_key=topic,
                properties=properties, mandatory=True, timeout=timeout,
                # Not waiting for the frames to be written: the channel's lock is held for that
                # wait, which on a busy loop lets one publish out per loop iteration. The
                # broker's confirmation is still awaited.
                wait=False,
            )
        except aiormq.exceptions.PublishError as exc:
            frame = exc.frame if hasattr(exc, "frame") else None
            why = getattr(frame, "reply_text", None) or "returned"
            raise DeliveryError(f"the broker returned the message: {why} (no queue is bound "
                                f"for routing key '{topic}' on exchange "
                                f"'{self._target.exchange}')") from exc
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise DeliveryError(f"the broker refused: {exc}") from exc
        if isinstance(confirmation, spec.Basic.Ack):
            return "basic.ack"
        raise DeliveryError(f"the broker refused the message ({type(confirmation).__name__})")

    async def close(self) -> None:
        await self._connection.close()
