"""The MQTT bridge against a real Mosquitto started with the shipped configuration and ACL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from hookstream.mqtt.bridge import Bridge
from hookstream.pipeline.message import FIELDS
from hookstream.settings import Settings
from tests.conftest import unavailable
from tests.mqtt_support import (
    MOSQUITTO,
    MOSQUITTO_PASSWD,
    MOSQUITTO_PUB,
    Amqtt,
    Broker,
    Mosquitto,
    amqtt_available,
    connected,
    running_mosquitto,
)
from tests.support import (
    Org,
    Receiver,
    Service,
    eventually,
    free_port,
    hookstream_cmd,
    running_receiver,
    running_service,
    settings_env,
    spawn,
    wait_ready,
)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    with running_mosquitto(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """Mosquitto; where it is not installed, amqtt (for the tests that need only MQTT 3.1.1).

    ``HOOKSTREAM_TEST_MQTT_BROKER=amqtt`` picks amqtt here too, to try that path.
    """
    forced = os.environ.get("HOOKSTREAM_TEST_MQTT_BROKER") == "amqtt"
    if MOSQUITTO is not None and MOSQUITTO_PASSWD is not None and not forced:
        chosen: Broker = Mosquitto(tmp_path / "mosquitto")
    elif amqtt_available():
        (tmp_path / "amqtt").mkdir()
        chosen = Amqtt(tmp_path / "amqtt")
    else:
        unavailable("an MQTT broker", "neither mosquitto nor the amqtt package is installed")
    chosen.start()
    try:
        yield chosen
    finally:
        chosen.kill()


def refused(reason: str) -> float:
    """hookstream_mqtt_refused_total{reason} as /metrics shows it."""
    return REGISTRY.get_sample_value("hookstream_mqtt_refused_total", {"reason": reason}) or 0.0


def value(i: int, device: str = "meter-1") -> dict[str, Any]:
    return {
        "deviceId": device,
        "property": "energy",
        "timestamp": 1_767_225_600_000 + i,
        "payload": i,
        "scaledPayload": i / 10,
        "unit": "kWh",
        "tags": {"n": str(i)},
    }


@contextlib.asynccontextmanager
async def running_bridge(
    service: Service, broker: Broker, client_id: str = "hookstream-bridge", **options: Any
) -> AsyncIterator[Bridge]:
    settings = service.settings.model_copy(
        update={"mqtt_url": broker.url(), "mqtt_client_id": client_id, **options}
    )
    bridge = Bridge(settings, service.runtime.intake, service.runtime.wakeup)
    task = asyncio.create_task(bridge.run())
    try:
        # Ready once the broker acknowledged the subscriptions (what the bridge's /readyz says).
        subscribed = asyncio.ensure_future(bridge.subscribed.wait())
        done, _ = await asyncio.wait([subscribed, task], timeout=60,
                                     return_when=asyncio.FIRST_COMPLETED)
        if subscribed not in done:
            subscribed.cancel()
            if task in done:
                task.result()
            raise AssertionError(f"the bridge was not subscribed to {broker.url()} after 60 s")
        yield bridge
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wired(org: Org, receiver: Receiver, kinds: list[str] | None = None) -> dict[str, Any]:
    """A gateway whose messages of ``kinds`` go to ``receiver``."""
    gw = await org.gateway()
    con = await org.connector(receiver.url)
    await org.trigger(con["id"], kinds or ["values", "events", "alarms"], [gw["id"]])
    gw["secret"] = con["secret"]
    return gw


async def test_mosquitto_pub_of_a_value_reaches_the_receiver_in_the_datastream_format(
    service: Service, org: Org, receiver: Receiver, mosquitto: Mosquitto
) -> None:
    if MOSQUITTO_PUB is None:
        unavailable("mosquitto_pub", "Debian's mosquitto-clients is not installed")
    gw = await wired(org, receiver)
    mosquitto.add_user(gw["id"], gw["ingestToken"])  # the gateway signs in with its token
    async with running_bridge(service, mosquitto):
        # The gateway itself, with its own credentials, as the shipped ACL allows.
        done = await asyncio.to_thread(
            subprocess.run,
            [
                MOSQUITTO_PUB,
                "-h",
                "127.0.0.1",
                "-p",
                str(mosquitto.port),
                "-V",
                "mqttv5",
                "-q",
                "1",
                "-i",
                "tower-1",
                "-u",
                gw["id"],
                "-P",
                gw["ingestToken"],
                "-t",
                f"hookstream/{gw['id']}/values",
                "-m",
                json.dumps(value(7)),
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert done.returncode == 0, done.stderr
        await receiver.wait_for(1)
    hook = receiver.received[0]
    assert hook.path == "/values"
    Webhook(gw["secret"]).verify(hook.body, hook.headers)
    body = json.loads(hook.body)
    assert list(body) == list(FIELDS)
    assert body["deviceId"] == "meter-1" and body["payload"] == 7 and body["unit"] == "kWh"
    assert isinstance(body["receivedAt"], int) and body["tags"] == {"n": "7"}
    messages = (await org.api.get("/api/v1/messages", params={"gatewayId": gw["id"]})).json()
    assert [m["id"] for m in messages["items"]] == [hook.headers["webhook-id"]]


async def test_refused_messages_go_to_the_errors_topic_and_are_not_delivered(
    service: Service, org: Org, receiver: Receiver, broker: Broker
) -> None:
    gw = await wired(org, receiver)
    before = {r: refused(r) for r in ("unknown_gateway", "malformed_json", "invalid_message")}
    async with running_bridge(service, broker):
        with connected(broker) as tester:
            tester.subscribe("hookstream/+/errors")
            # The privileged test account may publish anywhere; a gateway could not (the ACL).
            tester.publish("hookstream/gw_nobody/values", json.dumps(value(1)))
            tester.publish(f"hookstream/{gw['id']}/values", b"{not json")
            tester.publish(
                f"hookstream/{gw['id']}/alarms", json.dumps({**value(2), "colour": "red"})
            )
            tester.publish(f"hookstream/{gw['id']}/values", json.dumps(value(3)))  # a good one
            await receiver.wait_for(1)

            async def three_refusals() -> bool:
                return len(tester.messages("/errors")) >= 3

            await eventually(three_refusals, what="three refusals on the errors topics")
            errors = {t: json.loads(p) for t, p in tester.messages("/errors")}
    assert set(errors) == {"hookstream/gw_nobody/errors", f"hookstream/{gw['id']}/errors"}
    by_code = {json.loads(p)["error"]["code"]: json.loads(p) for _, p in tester.received}
    assert set(by_code) == {"unknown_gateway", "malformed_json", "invalid_message"}
    assert by_code["unknown_gateway"]["topic"] == "hookstream/gw_nobody/values"
    assert by_code["invalid_message"]["topic"] == f"hookstream/{gw['id']}/alarms"
    assert "colour" in json.dumps(by_code["invalid_message"]["error"])
    # Every publish was answered (three refusals, one delivery): nothing else can come.
    assert [json.loads(r.body)["payload"] for r in receiver.received] == [3]
    stored = (await org.api.get("/api/v1/messages", params={"gatewayId": gw["id"]})).json()
    assert len(stored["items"]) == 1
    for reason, count in before.items():
        assert refused(reason) == count + 1, reason


async def test_a_publish_that_comes_twice_is_stored_and_delivered_once(
    service: Service, org: Org, receiver: Receiver, broker: Broker
) -> None:
    """A broker's redelivery (or a gateway's retransmission) has the same bytes: one message."""
    gw = await wired(org, receiver)
    async with running_bridge(service, broker) as bridge:
        with connected(broker) as tester:
            for i in (1, 1, 2, 1):
                tester.publish(f"hookstream/{gw['id']}/values", json.dumps(value(i)))
            # The same bytes as another kind are another message.
            tester.publish(f"hookstream/{gw['id']}/events", json.dumps(value(1)))
        await receiver.wait_for(3)

        async def all_five_handled() -> bool:
            return bridge.stored + bridge.duplicates == 5

        await eventually(all_five_handled, what="the bridge to store or skip all five publishes")

        async def settled() -> bool:
            return not await org.deliveries(status="pending")

        await eventually(settled, what="every stored message delivered")
    assert sorted(json.loads(r.body)["payload"] for r in receiver.received) == [1, 1, 2]
    assert bridge.stored == 3 and bridge.duplicates == 2
    stored = (await org.api.get("/api/v1/messages", params={"gatewayId": gw["id"]})).json()
    assert len(stored["items"]) == 3


async def test_a_message_is_acknowledged_to_the_broker_only_once_it_is_stored(
    service: Service, org: Org, receiver: Receiver, mosquitto: Mosquitto,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the database refuses writes nothing is acked; a new bridge gets it from the broker."""
    gw = await wired(org, receiver)
    db = service.runtime.db
    async with running_bridge(service, mosquitto) as bridge:
        async with db.write() as conn:  # a broken database: the messages table is away
            await conn.execute(text("ALTER TABLE messages RENAME TO messages_away"))
        with connected(mosquitto) as tester:
            tester.publish(f"hookstream/{gw['id']}/values", json.dumps(value(1)))

        async def failed_twice() -> bool:  # the bridge has it and keeps failing to store it
            return sum("cannot store" in r.getMessage() for r in caplog.records) >= 2

        with caplog.at_level("WARNING", logger="hookstream.mqtt.bridge"):
            await eventually(failed_twice, what="the bridge to fail to store the message twice")
        assert bridge.stored == 0
    async with db.write() as conn:
        await conn.execute(text("ALTER TABLE messages_away RENAME TO messages"))
    assert receiver.received == []
    async with running_bridge(service, mosquitto) as again:  # the same session, a new process
        await receiver.wait_for(1)
    assert again.stored == 1
    assert json.loads(receiver.received[0].body)["payload"] == 1


async def test_with_the_shipped_acl_a_gateway_cannot_publish_under_another_gateways_id(
    service: Service, org: Org, receiver: Receiver, mosquitto: Mosquitto
) -> None:
    mine = await wired(org, receiver)
    other = await wired(org, receiver)
    mosquitto.add_user(mine["id"], mine["ingestToken"])
    async with running_bridge(service, mosquitto):
        with connected(
            mosquitto, user=mine["id"], password=mine["ingestToken"], client_id="tower-mine"
        ) as gateway:
            forged = gateway.publish(f"hookstream/{other['id']}/values", json.dumps(value(1)))
            own = gateway.publish(f"hookstream/{mine['id']}/values", json.dumps(value(2)))
            await receiver.wait_for(1)
    # The broker refused the forged publish (acked 0x87 before the own one was sent): it
    # never reached the bridge, so no wait can make it arrive.
    # MQTT 5 tells the publisher: 0x87 Not authorized.
    forged_ack = gateway.acks[forged]
    assert forged_ack is not None and forged_ack.value == 0x87
    assert gateway.acks[own] is not None and not gateway.acks[own].is_failure
    assert [json.loads(r.body)["payload"] for r in receiver.received] == [2]
    stored = (await org.api.get("/api/v1/messages", params={"gatewayId": other["id"]})).json()
    assert stored["items"] == []


async def test_a_wrong_password_is_refused_by_the_broker(
    service: Service, org: Org, receiver: Receiver, mosquitto: Mosquitto
) -> None:
    gw = await wired(org, receiver)
    mosquitto.add_user(gw["id"], gw["ingestToken"])
    with pytest.raises(AssertionError, match="could not connect"):
        with connected(mosquitto, user=gw["id"], password="not-the-token", client_id="x"):
            pass


async def test_what_gateways_publish_while_the_bridge_is_away_arrives_when_it_returns(
    service: Service, org: Org, receiver: Receiver, mosquitto: Mosquitto
) -> None:
    """The bridge's session is persistent; a graceful broker restart keeps it too."""
    gw = await wired(org, receiver)
    mosquitto.add_user(gw["id"], gw["ingestToken"])
    async with running_bridge(service, mosquitto):
        pass  # the session (and its subscriptions) now exists at the broker
    with connected(
        mosquitto, user=gw["id"], password=gw["ingestToken"], client_id="tower"
    ) as gateway:
        for i in range(500):
            gateway.publish(f"hookstream/{gw['id']}/values", json.dumps(value(i)), wait=False)
        gateway.publish(f"hookstream/{gw['id']}/values", json.dumps(value(500)))
    mosquitto.stop()  # SIGTERM: Mosquitto writes its queues to disk
    mosquitto.start()
    async with running_bridge(service, mosquitto):
        await receiver.wait_for(501)
        # The broker restarts again under the running bridge: it reconnects with backoff.
        mosquitto.stop()
        mosquitto.start()
        with connected(
            mosquitto, user=gw["id"], password=gw["ingestToken"], client_id="tower"
        ) as gateway:
            gateway.publish(f"hookstream/{gw['id']}/values", json.dumps(value(501)))
        await receiver.wait_for(502)
    payloads = [json.loads(r.body)["payload"] for r in receiver.received]
    assert sorted(set(payloads)) == list(range(502))


async def test_two_bridges_in_a_shared_group_split_the_load_and_lose_nothing(
    service: Service, org: Org, receiver: Receiver, mosquitto: Mosquitto
) -> None:
    gw = await wired(org, receiver)
    mosquitto.add_user(gw["id"], gw["ingestToken"])
    shared = {"mqtt_shared_group": "hookstream"}
    async with (
        running_bridge(service, mosquitto, "bridge-a", **shared) as a,
        running_bridge(service, mosquitto, "bridge-b", **shared) as b,
    ):
        with connected(
            mosquitto, user=gw["id"], password=gw["ingestToken"], client_id="tower"
        ) as gateway:
            for i in range(1000):
                gateway.publish(f"hookstream/{gw['id']}/values", json.dumps(value(i)), wait=False)
            gateway.publish(f"hookstream/{gw['id']}/values", json.dumps(value(1000)))
        await receiver.wait_for(1001)
    payloads = Counter(json.loads(r.body)["payload"] for r in receiver.received)
    assert sorted(payloads) == list(range(1001)) and max(payloads.values()) == 1
    assert a.stored > 100 and b.stored > 100 and a.stored + b.stored == 1001


def _publish_paced(
    broker: Broker, gw: dict[str, Any], count: int, rate: float, done: threading.Event
) -> float:
    """Publish ``count`` values as the gateway at ``rate``/s; returns the seconds it took."""
    start = time.monotonic()
    with connected(
        broker, user=gw["id"], password=gw["ingestToken"], client_id="tower-load"
    ) as gateway:
        mids = []
        for i in range(count):
            mids.append(
                gateway.publish(
                    f"hookstream/{gw['id']}/values",
                    json.dumps(value(i, f"dev-{i % 10}")),
                    wait=False,
                )
            )
            pause = start + (i + 1) / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing: 2,500 publishes a second
        deadline = time.monotonic() + 60
        while len(gateway.acks) < count and time.monotonic() < deadline:
            time.sleep(0.05)  # poll interval: the PUBACKs
        assert len(gateway.acks) == count, f"the broker acknowledged {len(gateway.acks)}"
    done.set()
    return time.monotonic() - start


@pytest.mark.slow
async def test_ten_thousand_messages_published_while_the_bridge_restarts_twice_all_arrive(
    settings: Settings, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with running_service(settings) as svc, running_receiver() as rec:
        org = await svc.new_org()
        gw = await wired(org, rec, ["values"])
        mosquitto.add_user(gw["id"], gw["ingestToken"])
        health = free_port()
        env = settings_env(
            settings,
            HOOKSTREAM_MQTT_URL=mosquitto.url(),
            HOOKSTREAM_MQTT_CLIENT_ID="bridge-under-test",
            HOOKSTREAM_METRICS_LISTEN=f"127.0.0.1:{health}",
        )
        log = tmp_path / "bridge.log"

        async def bridge() -> subprocess.Popen[bytes]:
            """A bridge process, once it is ready: subscribed, its signal handlers installed."""
            proc = spawn(hookstream_cmd("mqtt"), env, log)
            await wait_ready(proc, log, url=f"http://127.0.0.1:{health}/readyz",
                             what="hookstream mqtt")
            return proc

        async def delivered(count: int) -> None:
            """Until ``count`` webhooks arrived: the restarts land while messages flow."""
            await rec.wait_for(count, timeout=120)

        # Its session exists before the gateway publishes: nothing published is lost.
        proc = await bridge()
        assert "created a new session" in log.read_text()
        done = threading.Event()
        publishing = asyncio.create_task(
            asyncio.to_thread(_publish_paced, mosquitto, gw, 10_000, 2500.0, done)
        )
        await delivered(1000)
        proc.send_signal(signal.SIGTERM)  # a graceful restart
        assert await asyncio.to_thread(proc.wait, 30) == 0, log.read_text()[-3000:]
        proc = await bridge()
        await delivered(len(rec.received) + 1000)
        proc.send_signal(signal.SIGKILL)  # and a crash
        await asyncio.to_thread(proc.wait, 30)
        proc = await bridge()
        seconds = await publishing
        try:
            await rec.wait_for(10_000, timeout=180)

            async def none_missing() -> bool:
                return {json.loads(r.body)["payload"] for r in rec.received} >= set(range(10_000))

            with contextlib.suppress(AssertionError):  # the assertion below names what is missing
                await eventually(none_missing, timeout=60)
            payloads = Counter(json.loads(r.body)["payload"] for r in rec.received)
            missing = set(range(10_000)) - set(payloads)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 30)

        async def settled() -> bool:
            return not await org.deliveries(status="pending")

        await eventually(settled)  # duplicates stored at the kill are delivered too
        await org.api.aclose()
        payloads = Counter(json.loads(r.body)["payload"] for r in rec.received)
        duplicates = sum(payloads.values()) - len(payloads)
        print(
            f"\n10000 messages published over MQTT in {seconds:.1f} s while the bridge was "
            f"stopped (SIGTERM) and killed (SIGKILL): {len(payloads)} distinct delivered, "
            f"{duplicates} duplicates, {len(missing)} missing"
        )
        assert not missing, f"{len(missing)} messages never arrived, e.g. {sorted(missing)[:5]}"
        # What a killed bridge stored but never acknowledged came again, and was recognised.
        assert duplicates == 0
        assert len(rec.received) == sum(payloads.values())


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_without_mosquitto_an_amqtt_broker_serves_mqtt_3_1_1(
    service: Service, org: Org, receiver: Receiver, tmp_path: Path
) -> None:
    """Where Mosquitto is not installed, the MQTT 3.1.1 tests use amqtt; shown here on it."""
    if not amqtt_available():
        unavailable("amqtt", "the amqtt package is not installed (pip install -e '.[dev]')")
    gw = await wired(org, receiver)
    (tmp_path / "amqtt").mkdir()
    broker = Amqtt(tmp_path / "amqtt")
    broker.start()
    try:
        async with running_bridge(service, broker):
            with connected(broker) as gateway:
                gateway.subscribe("hookstream/+/errors")
                gateway.publish(f"hookstream/{gw['id']}/values", json.dumps(value(1)))
                gateway.publish("hookstream/gw_nobody/values", json.dumps(value(2)))
                await receiver.wait_for(1)

                async def refusal() -> bool:
                    return bool(gateway.messages("/errors"))

                await eventually(refusal, what="the refusal on the errors topic")
                errors = gateway.messages("/errors")
    finally:
        broker.kill()
    assert json.loads(receiver.received[0].body)["payload"] == 1
    assert [t for t, _ in errors] == ["hookstream/gw_nobody/errors"]
