"""Subscribers of the machine's RabbitMQ and NATS (JetStream) and of a Mosquitto the tests
start, and a TCP proxy a test can take down and bring back (the machine's brokers cannot be
stopped by a test)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import aiormq
import nats
import paho.mqtt.client as paho
from nats.js.api import StreamConfig
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.conftest import unavailable
from tests.mqtt_support import TESTER_PASSWORD, TESTER_USER, Broker, release
from tests.support import free_port

AMQP_ENV = "HOOKSTREAM_TEST_AMQP_URL"
NATS_ENV = "HOOKSTREAM_TEST_NATS_URL"
AMQP_URL = os.environ.get(AMQP_ENV, "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get(NATS_ENV, "nats://127.0.0.1:4222")


@dataclass
class Got:
    """One message a subscriber received: where, its headers (user properties), its body."""

    topic: str
    headers: dict[str, str]
    body: bytes
    message_id: str | None = None
    persistent: bool | None = None


# --- RabbitMQ ------------------------------------------------------------------------------

@dataclass
class AmqpSubscriber:
    """An exclusive queue bound to ``exchange`` with ``binding``; what it receives."""

    exchange: str
    binding: str = "#"
    got: list[Got] = field(default_factory=list)

    async def _on(self, message: Any) -> None:
        props = message.header.properties
        headers = {k: (v.decode() if isinstance(v, bytes) else str(v))
                   for k, v in (props.headers or {}).items()}
        self.got.append(Got(message.routing_key or "", headers, bytes(message.body),
                            props.message_id, props.delivery_mode == 2))


@contextlib.asynccontextmanager
async def amqp_subscriber(exchange: str, binding: str = "#") -> AsyncIterator[AmqpSubscriber]:
    try:
        connection = await asyncio.wait_for(aiormq.connect(AMQP_URL), 10)
    except Exception as exc:  # noqa: BLE001 - reported as the service being unavailable
        unavailable("RabbitMQ", f"it cannot be reached at {AMQP_URL} ({AMQP_ENV}): {exc}")
        raise
    sub = AmqpSubscriber(exchange, binding)
    try:
        channel = await connection.channel()
        await channel.exchange_declare(exchange, exchange_type="topic", auto_delete=True)
        queue = await channel.queue_declare("", exclusive=True)
        assert queue.queue is not None
        await channel.queue_bind(queue.queue, exchange, routing_key=binding)
        await channel.basic_consume(queue.queue, sub._on, no_ack=True)
        yield sub
    finally:
        await connection.close()


def amqp_url_at(port: int) -> str:
    """The machine's RabbitMQ URL (its credentials and vhost) at another port of 127.0.0.1."""
    rest = AMQP_URL.split("://", 1)[1]
    userinfo, _, hostpath = rest.rpartition("@")
    path = hostpath.partition("/")[2]
    return f"amqp://{userinfo}@127.0.0.1:{port}/{path}" if userinfo else \
        f"amqp://127.0.0.1:{port}/{path}"


def amqp_hostport() -> tuple[str, int]:
    hostpath = AMQP_URL.split("://", 1)[1].rpartition("@")[2]
    hostport = hostpath.partition("/")[0]
    host, _, port = hostport.partition(":")
    return unquote(host), int(port or 5672)


# --- NATS ------------------------------------------------------------------------------------

@dataclass
class NatsSubscriber:
    got: list[Got] = field(default_factory=list)
    stream: str = ""

    async def _on(self, msg: Any) -> None:
        self.got.append(Got(msg.subject, dict(msg.headers or {}), bytes(msg.data)))


@contextlib.asynccontextmanager
async def nats_subscriber(prefix: str) -> AsyncIterator[NatsSubscriber]:
    """A JetStream stream for ``prefix.>`` (de-duplicating for 2 minutes), and a core
    subscription to it that records what arrives."""
    try:
        nc = await nats.connect(NATS_URL, connect_timeout=5, allow_reconnect=False,
                                max_reconnect_attempts=0)
    except Exception as exc:  # noqa: BLE001 - reported as the service being unavailable
        unavailable("NATS", f"it cannot be reached at {NATS_URL} ({NATS_ENV}): {exc}")
        raise
    sub = NatsSubscriber(stream=prefix.replace(".", "_").upper())
    js = nc.jetstream()
    try:
        await js.add_stream(StreamConfig(name=sub.stream, subjects=[f"{prefix}.>"],
                                         duplicate_window=120.0))
        await nc.subscribe(f"{prefix}.>", cb=sub._on)
        await nc.flush()
        yield sub
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(sub.stream)
        await nc.close()


def nats_hostport() -> tuple[str, int]:
    hostport = NATS_URL.split("://", 1)[1].rpartition("@")[2].partition("/")[0]
    host, _, port = hostport.partition(":")
    return host, int(port or 4222)


# --- MQTT ------------------------------------------------------------------------------------

class MqttSubscriber:
    """A paho MQTT 5 client subscribed to ``topic``; what arrives, with its user properties."""

    def __init__(self, broker: Broker, topic: str, *, persistent: bool = False) -> None:
        self.got: list[Got] = []
        self._lock = threading.Lock()
        self._topic = topic
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self.persistent = persistent
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{free_port()}",
                                  protocol=paho.MQTTv5)
        # Back at once when a test restarts the broker (paho's default waits up to 2 min).
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.username_pw_set(TESTER_USER, TESTER_PASSWORD)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.broker = broker

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if not reason.is_failure:
            self._connected.set()
            client.subscribe(self._topic, qos=1)

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        headers = dict(getattr(props, "UserProperty", []) or [])
        with self._lock:
            self.got.append(Got(msg.topic, headers, bytes(msg.payload)))

    def start(self) -> MqttSubscriber:
        properties = None
        if self.persistent:
            # The broker keeps the subscription and what arrives for it while we are away.
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", self.broker.port, keepalive=30,
                            clean_start=not self.persistent, properties=properties)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the test subscriber got no SUBACK"
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release(self.client)

    def messages(self) -> list[Got]:
        with self._lock:
            return list(self.got)


# --- a proxy to take a broker away and bring it back ----------------------------------------

class Proxy:
    """Forwards 127.0.0.1:``port`` to ``upstream`` while up; while down nothing listens there
    and the connections it carried are cut."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def down(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for w in list(self._writers):
            w.close()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))
