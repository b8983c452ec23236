"""MQTT ingest: messages/s stored through the bridge (``hookstream mqtt``).

Mosquitto runs from the installed binary with deploy/mosquitto's configuration (its paths
moved into the workspace, as tests/mqtt_support.py does). A gateway signs in with its own
credentials (its id and ingest token) and publishes 20,000 distinct values (100,000 with
--full), QoS 1, up to 1,000 unacknowledged, from its own process (bench/mqttclient.py). The
bridge runs alone (no worker: deliveries pile up, as in the HTTP ingest figures); one message
has gone through first. The clock runs from the first publish until the database holds every
message (polled every 50 ms).

The reference, measured just before on the same broker and before the bridge's first
connection (so that no session of the bridge queues them): the same publisher, and a plain
paho subscriber (QoS 1, its own process, the bridge's account) counting what it receives; the
rate from the first publish to the last message received. Skipped, with the reason printed,
where Mosquitto is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson

from bench.common import (
    CpuWindow,
    Databases,
    Figure,
    Options,
    Proc,
    Receiver,
    Workspace,
    create_tenant,
    hookstream_api,
    say,
    wait_log_line,
)
from bench.profile import profiled


def mosquitto_missing() -> str | None:
    """Why the MQTT benchmark cannot run here, or None."""
    from tests.mqtt_support import MOSQUITTO, MOSQUITTO_PASSWD

    if MOSQUITTO is None:
        return "mosquitto is not installed (apt-get install mosquitto)"
    if MOSQUITTO_PASSWD is None:
        return "mosquitto_passwd is not installed (apt-get install mosquitto)"
    return None


async def _finished(proc: Proc, timeout: float) -> dict[str, Any]:
    """The JSON line a bench.mqttclient process prints when it is done."""
    deadline = time.monotonic() + timeout
    while proc.popen.poll() is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} still running after {timeout:.0f} s:\n"
                               f"{proc.tail()}")
        await asyncio.sleep(0.05)
    if proc.popen.returncode != 0:
        raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
    lines = [line for line in proc.log.read_text().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{proc.name} printed no result:\n{proc.tail()}")
    return dict(orjson.loads(lines[-1]))


def _client(ws: Workspace, name: str, action: str, port: int, user: str, password: str,
            topic: str, count: int, **more: Any) -> Proc:
    args = ["--port", str(port), "--user", user, "--password", password, "--topic", topic,
            "--count", str(count), "--client-id", name]
    for key, value in more.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return ws.python(name, "bench.mqttclient", action, *args)


async def _wait_messages(dbs: Databases, url: str, count: int, timeout: float,
                         also: Proc) -> float:
    """Until the database holds ``count`` messages; when that was seen (time.time())."""
    deadline = time.monotonic() + timeout
    while True:
        n = await dbs.messages(url)
        if n >= count:
            return time.time()
        also.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the database holds {n} of {count} messages after "
                               f"{timeout:.0f} s:\n{also.tail()}")
        await asyncio.sleep(0.05)


async def _warm_up(ws: Workspace, dbs: Databases, url: str, port: int, user: str,
                   password: str, topic: str, bridge: Proc) -> int:
    """One message through the bridge (published again every 2 s until one is stored: the
    bridge may not have subscribed yet); how many messages the database then holds."""
    deadline = time.monotonic() + 60
    for k in range(1000):
        warm = _client(ws, f"mqtt-warm-{k}-{bridge.name}", "publish", port, user, password,
                       topic, 1, offset=60_000_000 + k)
        await _finished(warm, 30)
        with contextlib.suppress(RuntimeError):
            await _wait_messages(dbs, url, 1, 2, bridge)
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no message stored by the bridge in 60 s:\n{bridge.tail()}")
    await asyncio.sleep(0.5)  # a second warm-up message may still be on its way
    return await dbs.messages(url)


async def mqtt_ingest(ws: Workspace, dbs: Databases, receiver: Receiver, options: Options
                      ) -> list[Figure]:
    from tests.mqtt_support import BRIDGE_PASSWORD, BRIDGE_USER, Mosquitto

    n = options.mqtt_messages
    label = dbs.label.lower()
    url = await dbs.new()
    async with hookstream_api(ws, "api", url) as (_api, base):
        tenant = await create_tenant(base, ws.admin_key, receiver.url,
                                     options.connector_limit())
    broker = Mosquitto(directory=ws.dir / f"mosquitto-{label}")
    broker.add_user(tenant.gateway_id, tenant.token)
    broker.start()
    topic = f"hookstream/{tenant.gateway_id}/values"
    details: dict[str, Any] = {"messages": n, "qos": 1, "publisherInflight": options.mqtt_inflight}
    try:
        say(f"MQTT ({dbs.label}): reference, {n:,} publishes to a plain paho subscriber")
        sub = _client(ws, f"mqtt-ref-sub-{label}", "subscribe", broker.port, BRIDGE_USER,
                      BRIDGE_PASSWORD, "hookstream/+/values", n)
        await wait_log_line(sub, "subscribed")
        window = CpuWindow([sub])
        pub = _client(ws, f"mqtt-ref-pub-{label}", "publish", broker.port, tenant.gateway_id,
                      tenant.token, topic, n, offset=50_000_000, inflight=options.mqtt_inflight)
        timeout = 60 + n / 100
        published = await _finished(pub, timeout)
        received = await _finished(sub, timeout)
        ref_cpu = window.finish()
        ref = n / (received["last"] - published["start"])
        details["reference"] = {
            "publisher": published, "subscriber": received, "cpu": ref_cpu,
            "publisherAckedPerSecond": round(n / (published["acked"] - published["start"]), 1),
        }
        say(f"MQTT ({dbs.label}): reference {ref:,.0f} messages/s")

        bridge = ws.hookstream("mqtt", url, name=f"mqtt-bridge-{label}",
                               env={"HOOKSTREAM_MQTT_URL": broker.url()})
        try:
            before = await _warm_up(ws, dbs, url, broker.port, tenant.gateway_id, tenant.token,
                                    topic, bridge)
            say(f"MQTT ({dbs.label}): {n:,} publishes through the bridge")
            window = CpuWindow([bridge])
            with profiled(ws, [bridge], f"mqtt-{label}", options.profile, details):
                pub = _client(ws, f"mqtt-pub-{label}", "publish", broker.port,
                              tenant.gateway_id, tenant.token, topic, n,
                              inflight=options.mqtt_inflight)
                stored = await _wait_messages(dbs, url, before + n, timeout, bridge)
            cpu = window.finish()
            published = await _finished(pub, 60)
        finally:
            ws.stop(bridge)
    finally:
        broker.stop()
    held = await dbs.messages(url)
    rate = n / (stored - published["start"])
    details.update(
        publisher=published, cpu=cpu, messagesHeld=held, warmUpMessages=before,
        secondsPublishToStored=round(stored - published["start"], 3),
        publisherAckedPerSecond=round(n / (published["acked"] - published["start"]), 1),
    )
    say(f"MQTT ({dbs.label}): {rate:,.0f} messages/s stored, reference {ref:,.0f}")
    return [Figure("mqtt", "MQTT ingest, QoS 1, 1 gateway", dbs.label, rate, "messages/s",
                   ref, "Mosquitto → plain paho subscriber, messages/s", details=details)]
