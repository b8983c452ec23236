"""Drill 4: graceful Mosquitto restarts under MQTT load.

A Mosquitto of the drill's own (``deploy/mosquitto``'s configuration and ACL, on a free port),
``hookstream serve`` on SQLite with the bridge (``HOOKSTREAM_MQTT_URL``), and gateways that
publish one message per PUBLISH at QoS 1 with paho-mqtt. A message is accepted when the broker
PUBACKs it. The broker is stopped with SIGTERM (it writes its persistence file) and started
again; nothing PUBACKed may be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from drills.common import (
    KIND,
    Context,
    DrillResult,
    Ledger,
    Options,
    Processes,
    drill_frame,
    finish,
    message,
    own_mosquitto,
    provision,
    running_receiver,
    start_serve,
)

NAME = "mosquitto-restart"


class Gateway:
    """One gateway's paho client: publishes at QoS 1, counts a message accepted at its PUBACK."""

    def __init__(self, gateway_id: str, token: str, port: int, ledger: Ledger) -> None:
        self.gateway_id = gateway_id
        self.port = port
        self.ledger = ledger
        self.topic = f"hookstream/{gateway_id}/{KIND}"
        self._lock = threading.Lock()
        self._pending: dict[int, int] = {}  # mid -> seq, published, no PUBACK yet
        self._early: dict[int, ReasonCode | None] = {}  # PUBACKs that beat publish()'s return
        self.connected = threading.Event()
        self.connects = 0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=gateway_id,
                                  protocol=paho.MQTTv5)
        self.client.username_pw_set(gateway_id, token)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)  # keep everything while disconnected
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if not reason.is_failure:
            self.connects += 1
            self.connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
        self.connected.clear()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode | None,
                    _p: Any) -> None:
        with self._lock:
            seq = self._pending.pop(mid, None)
            if seq is None:
                self._early[mid] = reason
                return
        self._settle(seq, reason)

    def _settle(self, seq: int, reason: ReasonCode | None) -> None:
        if reason is not None and reason.is_failure:
            self.ledger.refuse(f"PUBACK {reason}", 1)
        else:
            self.ledger.accept([seq])

    def start(self) -> None:
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()

    def publish(self, seq: int, drill: str) -> None:
        # Never call paho while holding our lock: paho calls on_publish holding its own.
        info = self.client.publish(self.topic, orjson.dumps(message(seq, drill)), qos=1)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self.ledger.refuse(f"publish {info.rc.name}", 1)
            return
        with self._lock:
            acked = info.mid in self._early
            reason = self._early.pop(info.mid, None)
            if not acked:
                self._pending[info.mid] = seq
        if acked:
            self._settle(seq, reason)

    @property
    def unacknowledged(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()
        with self._lock:
            left, self._pending = len(self._pending), {}
        if left:
            self.ledger.refuse("no PUBACK by the end", left)


async def bridge_connected(session: aiohttp.ClientSession, base: str) -> bool:
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
        async with session.get(f"{base}/metrics") as resp:
            text = await resp.text()
        found = re.search(r"^hookstream_mqtt_connected(?:\{[^}]*\})? (\S+)$", text, re.M)
        return found is not None and float(found.group(1)) == 1.0
    return False


async def wait_for(check: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"{what} not within {timeout:.0f} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def mosquitto_drill(options: Options, workdir: Path) -> DrillResult:
    """Mosquitto stopped (SIGTERM) and started again under MQTT load, ``broker_restarts``
    times."""

    async def body(ctx: Context, result: DrillResult) -> None:
        await _restarts(ctx, result)

    return await drill_frame(NAME, options, workdir, body)


async def _publish(gateways: list[Gateway], ledger: Ledger, rate: float,
                   stop: asyncio.Event) -> int:
    """``rate`` messages a second, round-robin over the gateways, until ``stop``."""
    sent = 0
    start = time.monotonic()
    while not stop.is_set():
        due = int((time.monotonic() - start) * rate) - sent
        for _ in range(max(0, due)):
            (seq,) = ledger.take(1)
            gateways[seq % len(gateways)].publish(seq, NAME)
            sent += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.01)
    return sent


async def _burst(gateways: list[Gateway], ledger: Ledger, count: int) -> None:
    """``count`` messages at once; returns when half of them are PUBACKed."""
    target = len(ledger.accepted) + count // 2
    for seq in ledger.take(count):
        gateways[seq % len(gateways)].publish(seq, NAME)
    deadline = time.monotonic() + 10
    while len(ledger.accepted) < target and time.monotonic() < deadline:
        await asyncio.sleep(0.002)


async def _restarts(ctx: Context, result: DrillResult) -> None:
    o, say = ctx.options, ctx.say
    broker = own_mosquitto(ctx.workdir / "mosquitto")
    broker.start()
    ledger = Ledger()
    procs = Processes()
    gateways: list[Gateway] = []
    try:
        say(f"Mosquitto of our own on 127.0.0.1:{broker.port} (shipped configuration)")
        async with running_receiver(ledger, o.receiver_delay) as receiver, \
                aiohttp.ClientSession() as session:
            try:
                _, base = await start_serve(ctx, procs, session,
                                            HOOKSTREAM_MQTT_URL=broker.url())
                took = await wait_for(lambda: bridge_connected(session, base), 30,
                                      "the bridge connected")
                say(f"bridge connected ({took:.1f} s)")
                tenant = await provision(session, base, ctx.keys.admin, receiver.url,
                                         gateways=o.gateways)
                receiver.secret = tenant.secret
                for gateway_id, token in tenant.gateways:
                    broker.add_user(gateway_id, token)  # and reloads the running broker
                await asyncio.sleep(0.3)
                gateways = [Gateway(g, t, broker.port, ledger) for g, t in tenant.gateways]
                for gw in gateways:
                    gw.start()
                for gw in gateways:
                    if not await asyncio.to_thread(gw.connected.wait, 10):
                        raise RuntimeError(f"gateway {gw.gateway_id} could not connect")
                say(f"{len(gateways)} gateways connected; publishing {o.mqtt_rate:.0f} msg/s "
                    "at QoS 1")
                stop = asyncio.Event()
                publisher = asyncio.create_task(_publish(gateways, ledger, o.mqtt_rate, stop))
                try:
                    for n in range(1, o.broker_restarts + 1):
                        await asyncio.sleep(ctx.rng.uniform(2.0, 4.0))
                        await _burst(gateways, ledger, o.broker_burst)
                        accepted = len(ledger.accepted)
                        in_transit = len(ledger.missing())
                        stopped = time.monotonic()
                        code = await asyncio.to_thread(broker.stop)
                        say(f"restart {n}/{o.broker_restarts}: a burst of {o.broker_burst}, then "
                            f"Mosquitto stopped (SIGTERM, exit {code}) in "
                            f"{time.monotonic() - stopped:.1f} s; {accepted} PUBACKed so far, "
                            f"{in_transit} of them not delivered yet")
                        if code != 0:
                            result.notes.append(f"Mosquitto exited {code} on SIGTERM")
                        await asyncio.sleep(o.broker_down)
                        await asyncio.to_thread(broker.start)
                        back = time.monotonic()
                        bridge = await wait_for(lambda: bridge_connected(session, base), 60,
                                                "the bridge reconnected")
                        line = (f"restart {n}: broker down {back - stopped:.1f} s; bridge "
                                f"back {bridge:.1f} s after it")
                        say("  " + line)
                        result.notes.append(line)
                    await asyncio.sleep(ctx.rng.uniform(2.0, 4.0))
                finally:
                    stop.set()
                    sent = await publisher
                deadline = time.monotonic() + 30
                while sum(g.unacknowledged for g in gateways) and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                for gw in gateways:
                    gw.close()
                say(f"publishing stopped: {ledger.handed_out} published ({sent} steady, "
                    f"{ledger.handed_out - sent} in bursts), {len(ledger.accepted)} PUBACKed; "
                    f"gateway reconnections {sum(g.connects - 1 for g in gateways)}")
                await finish(ctx, session, base, tenant, ledger, result)
            finally:
                for gw in gateways:
                    gw.close()
                procs.stop_all()
    finally:
        broker.stop()
    procs.report(say, result)
