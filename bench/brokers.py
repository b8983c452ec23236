"""Drain to a broker: a backlog of N pending deliveries to an MQTT, AMQP or NATS connector,
sent by one ``hookstream worker`` (SQLite), against a bare client of the same protocol.

The broker: a Mosquitto started for the run (deploy/mosquitto's configuration, as the MQTT
ingest figure), the machine's RabbitMQ (``HOOKSTREAM_BENCH_AMQP_URL``, default
amqp://guest:guest@127.0.0.1:5672/) or NATS with JetStream (``HOOKSTREAM_BENCH_NATS_URL``,
default nats://127.0.0.1:4222). A subscriber in this process counts what arrives: an MQTT
QoS 1 subscription, a queue bound to the exchange, a core subscription to the stream's
subjects.

The connector publishes as the issue asks: MQTT QoS 1 (delivered on PUBACK) with the three
user properties; AMQP persistent, in confirm mode, ``mandatory``; NATS JetStream (delivered on
the PubAck) with ``Nats-Msg-Id``. The clock runs from the worker's readiness until the
subscriber counted N (as the HTTP drain, from readiness to the receiver's count).

The reference, measured just before on the same broker and subscriber: a bare client of the
protocol publishing N bodies of the same size with headers of the same size, with the same
acknowledgement and at most 256 unacknowledged (the worker's concurrency): paho QoS 1; aiormq
with publisher confirms; nats-py ``js.publish``. Its rate from the first publish until the
subscriber counted N.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.common import (
    CpuWindow,
    Databases,
    Figure,
    Options,
    Workspace,
    create_tenant,
    fake_webhook_headers,
    hookstream_api,
    message,
    say,
)
from bench.drain import first_ready, ingest_backlog

AMQP_URL = os.environ.get("HOOKSTREAM_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("HOOKSTREAM_BENCH_NATS_URL", "nats://127.0.0.1:4222")
BROKER_BENCHMARKS = ("mqtt_drain", "amqp_drain", "nats_drain")
INFLIGHT = 256


@dataclass
class Counter:
    """What a subscriber counted, and when it reached a number."""

    count: int = 0
    first: float = 0.0
    last: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self) -> None:
        with self._lock:
            now = time.time()
            if not self.count:
                self.first = now
            self.count += 1
            self.last = now

    def reset(self) -> None:
        with self._lock:
            self.count, self.first, self.last = 0, 0.0, 0.0

    async def reach(self, n: int, timeout: float, also: Callable[[], None] = lambda: None
                    ) -> float:
        deadline = time.monotonic() + timeout
        while self.count < n:
            also()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the subscriber counted {self.count} of {n} in {timeout} s")
            await asyncio.sleep(0.01)  # poll interval
        return self.last


@dataclass
class Setup:
    """One broker: the connector's target, the subscriber's counter, a bare publisher."""

    kind: str
    target: dict[str, Any]
    counter: Counter
    publish_all: Callable[[list[tuple[bytes, dict[str, str]]]], Awaitable[None]]
    reference_name: str


def _bodies(n: int) -> list[tuple[bytes, dict[str, str]]]:
    sample = [orjson.dumps(message(i)) for i in range(min(n, 1000))]
    return [(sample[i % len(sample)], fake_webhook_headers(i)) for i in range(n)]


# --- MQTT -------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def _mqtt(ws: Workspace, tag: str) -> AsyncIterator[Setup]:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from tests.mqtt_support import TESTER_PASSWORD, TESTER_USER, Mosquitto, release

    broker = Mosquitto(directory=ws.dir / "mosquitto-drain")
    broker.start()
    counter = Counter()
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"count-{tag}",
                      protocol=paho.MQTTv5)
    sub.username_pw_set(TESTER_USER, TESTER_PASSWORD)
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda *a: counter.hit()
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe(f"hookstream/{tag}/#", qos=1)
    sub.loop_start()
    if not subscribed.wait(10):
        raise RuntimeError("the MQTT counter got no SUBACK")

    async def publish_all(items: list[tuple[bytes, dict[str, str]]]) -> None:
        pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{tag}",
                          protocol=paho.MQTTv5)
        pub.username_pw_set(TESTER_USER, TESTER_PASSWORD)
        pub.max_inflight_messages_set(INFLIGHT)
        pub.max_queued_messages_set(0)
        connected = threading.Event()
        pub.on_connect = lambda *a: connected.set()
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        connected.wait(10)
        infos = []
        for i, (body, headers) in enumerate(items):
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = list(headers.items())
            props.ContentType = "application/json"
            infos.append(pub.publish(f"hookstream/{tag}/values/boiler-{i % 100:03d}", body, 1,
                                     properties=props))
        await asyncio.to_thread(lambda: [info.wait_for_publish(60) for info in infos])
        pub.disconnect()
        pub.loop_stop()
        release(pub)

    try:
        yield Setup("mqtt", {"url": f"mqtt://127.0.0.1:{broker.port}", "username": TESTER_USER,
                             "password": TESTER_PASSWORD, "qos": 1,
                             "topic": f"hookstream/{tag}/{{kind}}/{{deviceId}}"},
                    counter, publish_all, "paho QoS 1 → Mosquitto, messages/s")
    finally:
        sub.disconnect()
        sub.loop_stop()
        release(sub)
        broker.kill()


# --- AMQP -------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def _amqp(tag: str) -> AsyncIterator[Setup]:
    import aiormq
    from pamqp import commands as spec

    counter = Counter()
    connection = await aiormq.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.basic_qos(prefetch_count=1000)
    await channel.exchange_declare(tag, exchange_type="topic", auto_delete=True)
    queue = await channel.queue_declare("", exclusive=True)
    assert queue.queue is not None
    await channel.queue_bind(queue.queue, tag, routing_key="#")

    async def on_message(_: Any) -> None:
        counter.hit()

    await channel.basic_consume(queue.queue, on_message, no_ack=True)

    async def publish_all(items: list[tuple[bytes, dict[str, str]]]) -> None:
        pub_conn = await aiormq.connect(AMQP_URL)
        pub = await pub_conn.channel(publisher_confirms=True)
        gate = asyncio.Semaphore(INFLIGHT)

        async def one(i: int, body: bytes, headers: dict[str, str]) -> None:
            async with gate:
                await pub.basic_publish(
                    body, exchange=tag, routing_key=f"values.boiler-{i % 100:03d}",
                    mandatory=True, properties=spec.Basic.Properties(
                        content_type="application/json", delivery_mode=2,
                        message_id=headers["webhook-id"], headers=dict(headers)))

        await asyncio.gather(*(one(i, b, h) for i, (b, h) in enumerate(items)))
        await pub_conn.close()

    try:
        yield Setup("amqp", {"url": AMQP_URL, "exchange": tag,
                             "routingKey": "{kind}.{deviceId}"},
                    counter, publish_all, "aiormq, publisher confirms → RabbitMQ, messages/s")
    finally:
        await connection.close()


# --- NATS -------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def _nats(tag: str) -> AsyncIterator[Setup]:
    import nats
    from nats.js.api import StreamConfig

    counter = Counter()
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    stream = tag.upper()
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{tag}.>"], duplicate_window=120.0,
                                     max_msgs=10_000_000))

    async def on_message(_: Any) -> None:
        counter.hit()

    await nc.subscribe(f"{tag}.>", cb=on_message)
    await nc.flush()

    async def publish_all(items: list[tuple[bytes, dict[str, str]]]) -> None:
        pub = await nats.connect(NATS_URL)
        pjs = pub.jetstream()
        gate = asyncio.Semaphore(INFLIGHT)

        async def one(i: int, body: bytes, headers: dict[str, str]) -> None:
            async with gate:
                await pjs.publish(f"{tag}.ref.boiler-{i % 100:03d}", body, timeout=30,
                                  headers={**headers, "Nats-Msg-Id": headers["webhook-id"]})

        await asyncio.gather(*(one(i, b, h) for i, (b, h) in enumerate(items)))
        await pub.close()

    try:
        yield Setup("nats", {"url": NATS_URL, "subject": tag + ".{kind}.{deviceId}",
                             "jetstream": True},
                    counter, publish_all, "nats-py js.publish → NATS JetStream, messages/s")
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await nc.close()


def _setup(ws: Workspace, kind: str, tag: str) -> contextlib.AbstractAsyncContextManager[Setup]:
    if kind == "mqtt":
        return _mqtt(ws, tag)
    if kind == "amqp":
        return _amqp(tag)
    return _nats(tag)


async def broker_drain(ws: Workspace, dbs: Databases, options: Options, kind: str
                       ) -> list[Figure]:
    """The drain figure of one broker type, and its bare client's reference."""
    n = options.broker_messages
    tag = f"hsbench{kind}{os.getpid()}"
    async with _setup(ws, kind, tag) as setup:
        say(f"{kind}_drain: reference, {n} messages from a bare client")
        items = _bodies(n)
        t0 = time.time()
        await setup.publish_all(items)
        ref_end = await setup.counter.reach(n, 60 + n / 100)
        ref = n / (ref_end - t0)
        say(f"{kind}_drain: reference {ref:,.0f} messages/s")
        setup.counter.reset()

        url = await dbs.new()
        details: dict[str, Any] = {"deliveries": n, "workers": 1,
                                   "reference": {"messagesPerSecond": round(ref, 1)}}
        async with hookstream_api(ws, "api", url) as (_api, base):
            # The tenant's HTTP connector is switched off: only the broker connector drains.
            tenant = await create_tenant(base, ws.admin_key, "http://127.0.0.1:9/",
                                         options.connector_limit(1))
            await _broker_connector(base, tenant.api_key, tenant.gateway_id,
                                    tenant.connector_id, setup.kind, setup.target,
                                    options.connector_limit(1))
            say(f"{kind}_drain: ingesting a backlog of {n}")
            details["backlogIngest"] = await ingest_backlog(base, tenant.ingest_headers, options,
                                                            n)
        started = time.time()
        proc = ws.hookstream("worker", url, name=f"worker-{kind}")
        window = CpuWindow([proc])
        ready_task = asyncio.create_task(first_ready([proc]))
        try:
            end = await setup.counter.reach(n, 60 + n / 20, also=proc.check)
            details["cpu"] = window.finish()
            ready = await asyncio.wait_for(ready_task, 60)
        finally:
            ready_task.cancel()
            ws.stop(proc)
        rate = n / (end - ready)
        details.update(secondsToReady=round(ready - started, 3),
                       perSecondFromStart=round(n / (end - started), 1),
                       received=setup.counter.count)
        say(f"{kind}_drain: {rate:,.0f} deliveries/s from the worker's readiness, reference "
            f"{ref:,.0f} messages/s")
        return [Figure(f"{kind}_drain", f"drain to {kind.upper()}", dbs.label, rate,
                       "deliveries/s", ref, setup.reference_name, details=details,
                       reference_unit="messages/s")]


async def _broker_connector(base: str, api_key: str, gateway_id: str, http_connector: str,
                            kind: str, target: dict[str, Any], limit: int) -> None:
    import aiohttp

    headers = {"Authorization": f"Bearer {api_key}"}
    async with aiohttp.ClientSession(base_url=base, headers=headers) as http:
        async with http.patch(f"/api/v1/connectors/{http_connector}",
                              json={"active": False}) as resp:
            if resp.status != 200:
                raise RuntimeError(f"switching the HTTP connector off: {await resp.text()}")
        async with http.post("/api/v1/connectors", json={
            "name": f"bench {kind}", "type": kind, "target": target, "active": True,
            "limits": {"maxConcurrency": limit},
        }) as resp:
            text = await resp.text()
            if resp.status != 201:
                raise RuntimeError(f"creating the {kind} connector: {resp.status} {text}")
            connector = orjson.loads(text)
        async with http.post(f"/api/v1/connectors/{connector['id']}/triggers",
                             json={"kinds": ["values"], "gatewayIds": [gateway_id]}) as resp:
            if resp.status != 201:
                raise RuntimeError(f"its trigger: {await resp.text()}")
