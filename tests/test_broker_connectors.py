"""Broker connectors against real brokers, on both databases: a Mosquitto each test starts,
the machine's RabbitMQ and NATS (JetStream). Values reach a real subscriber with the
signature headers, verified; a broker away for 10 s loses nothing and keeps per-device order.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hookstream.pipeline.deliver.signing import verify
from tests.broker_support import (
    AMQP_URL,
    NATS_URL,
    Got,
    MqttSubscriber,
    Proxy,
    amqp_hostport,
    amqp_subscriber,
    amqp_url_at,
    nats_hostport,
    nats_subscriber,
)
from tests.mqtt_support import TESTER_PASSWORD, TESTER_USER, Mosquitto, running_mosquitto
from tests.support import Org, eventually

OUTAGE_SECONDS = 10.0
# Fast retries, enough of them to outlast the outage.
RETRY = {"schedule": [0.2, 0.5, 1.0], "maxAttempts": 60}


def value(device: str, n: int) -> dict[str, Any]:
    return {"deviceId": device, "property": "temperature", "timestamp": 1_700_000_000_000 + n,
            "payload": n}


async def broker_connector(org: Org, connector_type: str, target: dict[str, Any],
                           **fields: Any) -> dict[str, Any]:
    body = {"name": f"{connector_type} broker", "type": connector_type, "target": target,
            "active": True, **fields}
    resp = await org.api.post("/api/v1/connectors", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def all_delivered(org: Org) -> list[dict[str, Any]]:
    """The organization's deliveries once each is recorded delivered (the broker's
    acknowledgement reaches the worker, then its outcome is written: after the subscriber
    has the message)."""
    found: list[dict[str, Any]] = []

    async def recorded() -> bool:
        found[:] = await org.deliveries()
        return bool(found) and all(d["status"] == "delivered" for d in found)

    await eventually(recorded, what="every delivery recorded delivered")
    return found


def check_signed(got: Got, secret: str) -> str:
    """The message's signature verifies with the connector's secret; its webhook-id."""
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert name in got.headers, f"{name} missing from {got.headers}"
    return verify(secret, got.headers, got.body, now=int(time.time()))


def order_by_device(got: list[Got]) -> dict[str, list[int]]:
    """Per device, payloads in arrival order, a redelivery of the same message collapsed."""
    seen: dict[str, list[int]] = defaultdict(list)
    for g in got:
        message = orjson.loads(g.body)
        order = seen[message["deviceId"]]
        if not order or order[-1] != message["payload"]:
            order.append(message["payload"])
    return seen


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    with running_mosquitto(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
def mqtt_subscriber(mosquitto: Mosquitto) -> Iterator[MqttSubscriber]:
    sub = MqttSubscriber(mosquitto, "hookstream/#").start()
    try:
        yield sub
    finally:
        sub.close()


@pytest.fixture
async def tag() -> AsyncIterator[str]:
    yield f"hs{os.getpid()}x{time.monotonic_ns() % 10**9}"


def mqtt_target(mosquitto: Mosquitto, port: int | None = None) -> dict[str, Any]:
    return {"url": f"mqtt://127.0.0.1:{port or mosquitto.port}", "username": TESTER_USER,
            "password": TESTER_PASSWORD, "topic": "hookstream/{gatewayId}/{kind}/{deviceId}",
            "qos": 1}


# --- values reach a real subscriber, signed ---------------------------------------------------

async def test_mqtt_values_reach_a_subscriber_with_signed_user_properties(
    org: Org, mosquitto: Mosquitto, mqtt_subscriber: MqttSubscriber,
) -> None:
    gw = await org.gateway()
    con = await broker_connector(org, "mqtt", mqtt_target(mosquitto))
    assert con["type"] == "mqtt" and "password" not in con["target"]
    assert con["target"]["credentials"] is True and con["baseUrl"].startswith("mqtt://")
    await org.trigger(con["id"], ["values"], [gw["id"]])
    # A device id holding MQTT's separator and wildcards stays one level of the topic.
    resp = await org.ingest(gw["ingestToken"], "values", [value("a/b+c#", 1), value("d", 2)])
    assert resp.status_code == 202, resp.text

    async def arrived() -> bool:
        return len(mqtt_subscriber.messages()) == 2

    await eventually(arrived, what="two MQTT messages")
    got = {orjson.loads(g.body)["deviceId"]: g for g in mqtt_subscriber.messages()}
    assert got["a/b+c#"].topic == f"hookstream/{gw['id']}/values/a%2Fb%2Bc%23"
    assert got["d"].topic == f"hookstream/{gw['id']}/values/d"
    ids = {check_signed(g, con["secret"]) for g in got.values()}
    deliveries = await all_delivered(org)
    assert {d["messageId"] for d in deliveries} == ids
    detail = (await org.api.get(f"/api/v1/deliveries/{deliveries[0]['id']}")).json()
    assert "PUBACK" in detail["attempts"][0]["responseBody"]


async def test_amqp_values_reach_a_queue_persistent_with_message_id_and_signed_headers(
    org: Org, tag: str,
) -> None:
    async with amqp_subscriber(tag, "values.#") as sub:
        gw = await org.gateway()
        con = await broker_connector(org, "amqp", {
            "url": AMQP_URL, "exchange": tag, "routingKey": "{kind}.{deviceId}"})
        assert "@" not in con["target"]["url"], "the URL's credentials are never shown"
        await org.trigger(con["id"], ["values"], [gw["id"]])
        await org.ingest(gw["ingestToken"], "values", [value("x.y*z#", 1), value("plain", 2)])

        async def arrived() -> bool:
            return len(sub.got) == 2

        await eventually(arrived, what="two AMQP messages")
        got = {orjson.loads(g.body)["deviceId"]: g for g in sub.got}
        assert got["x.y*z#"].topic == "values.x%2Ey%2Az%23"
        assert got["plain"].topic == "values.plain"
        for g in got.values():
            assert g.message_id == check_signed(g, con["secret"])
            assert g.persistent
        assert len(await all_delivered(org)) == 2


async def test_nats_jetstream_values_reach_a_subscriber_with_msg_id_and_signed_headers(
    org: Org, tag: str,
) -> None:
    async with nats_subscriber(tag) as sub:
        gw = await org.gateway()
        con = await broker_connector(org, "nats", {
            "url": NATS_URL, "subject": tag + ".{kind}.{deviceId}", "jetstream": True})
        await org.trigger(con["id"], ["values"], [gw["id"]])
        await org.ingest(gw["ingestToken"], "values", [value("d 1.>*", 1), value("e", 2)])

        async def arrived() -> bool:
            return len(sub.got) == 2

        await eventually(arrived, what="two NATS messages")
        got = {orjson.loads(g.body)["deviceId"]: g for g in sub.got}
        assert got["d 1.>*"].topic == f"{tag}.values.d%201%2E%3E%2A"
        for g in got.values():
            assert g.headers["Nats-Msg-Id"] == check_signed(g, con["secret"])
        deliveries = await all_delivered(org)
        detail = (await org.api.get(f"/api/v1/deliveries/{deliveries[0]['id']}")).json()
        assert "PubAck " + sub.stream in detail["attempts"][0]["responseBody"]


async def test_a_batch_is_one_publish_holding_the_array(org: Org, tag: str) -> None:
    async with nats_subscriber(tag) as sub:
        gw = await org.gateway()
        con = await broker_connector(org, "nats", {
            "url": NATS_URL, "subject": tag + ".{kind}.{deviceId}", "jetstream": True},
            batch={"maxMessages": 3, "maxWaitMs": 200})
        await org.trigger(con["id"], ["values"], [gw["id"]])
        await org.ingest(gw["ingestToken"], "values", [value("same", n) for n in range(3)])

        async def arrived() -> bool:
            return len(sub.got) >= 1

        await eventually(arrived, what="a NATS batch")
        assert len(sub.got) == 1
        batch = orjson.loads(sub.got[0].body)
        assert [m["payload"] for m in batch] == [0, 1, 2]
        assert sub.got[0].topic == f"{tag}.values.same"
        check_signed(sub.got[0], con["secret"])


async def test_no_stream_is_a_failed_attempt_then_the_test_button_says_so(
    org: Org, tag: str,
) -> None:
    con = await broker_connector(org, "nats", {
        "url": NATS_URL, "subject": tag + ".nostream.{kind}", "jetstream": True})
    resp = await org.api.post(f"/api/v1/connectors/{con['id']}/test", json={"kind": "values"})
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["succeeded"] is False
    assert "no JetStream stream takes subject" in answer["error"]


async def test_the_test_button_publishes_a_signed_sample(
    org: Org, mosquitto: Mosquitto, mqtt_subscriber: MqttSubscriber,
) -> None:
    con = await broker_connector(org, "mqtt", mqtt_target(mosquitto))
    resp = await org.api.post(f"/api/v1/connectors/{con['id']}/test", json={"kind": "alarms"})
    assert resp.status_code == 200 and resp.json()["succeeded"], resp.text

    async def arrived() -> bool:
        return len(mqtt_subscriber.messages()) == 1

    await eventually(arrived, what="the sample")
    got = mqtt_subscriber.messages()[0]
    assert got.topic == "hookstream/_/alarms/hookstream-test"
    assert check_signed(got, con["secret"]) == resp.json()["webhookId"]


# --- a broker away for 10 s loses nothing and keeps per-device order --------------------------

DEVICES = ["dev-a", "dev-b", "dev-c"]
PER_DEVICE = 8


async def ride_out_outage(org: Org, gw: dict[str, Any], down: Any, up: Any) -> None:
    """Ingest while the broker is away; keep it away 10 s and until every device's first
    delivery failed twice; bring it back; wait until everything is delivered."""
    await down()
    started = time.monotonic()
    for n in range(PER_DEVICE):
        resp = await org.ingest(gw["ingestToken"], "values", [value(d, n) for d in DEVICES])
        assert resp.status_code == 202

    async def failing() -> bool:
        deliveries = await org.deliveries()
        retried = [d for d in deliveries if d["attemptCount"] >= 2 and d["status"] == "pending"]
        return (time.monotonic() - started >= OUTAGE_SECONDS
                and len({d["deviceId"] for d in retried}) == len(DEVICES))

    await eventually(failing, timeout=60, interval=0.5, what="the outage")
    failed = [d for d in await org.deliveries() if d["lastError"]]
    assert failed, "attempts failed while the broker was away"
    await up()

    async def delivered() -> bool:
        deliveries = await org.deliveries()
        return (len(deliveries) == len(DEVICES) * PER_DEVICE
                and all(d["status"] == "delivered" for d in deliveries))

    await eventually(delivered, timeout=90, interval=0.5, what="every delivery delivered")


def assert_all_in_order(got: list[Got]) -> None:
    by_device = order_by_device(got)
    for d in DEVICES:
        assert by_device[d] == list(range(PER_DEVICE)), f"{d} arrived as {by_device[d]}"


async def test_mqtt_broker_stopped_for_10_s_loses_nothing_and_keeps_order(
    org: Org, tmp_path: Path, mosquitto: Mosquitto,
) -> None:
    # A subscriber whose session the broker keeps across its restart (persistence).
    sub = MqttSubscriber(mosquitto, "hookstream/#", persistent=True).start()
    try:
        gw = await org.gateway()
        con = await broker_connector(org, "mqtt", mqtt_target(mosquitto),
                                     ordering="per_device", retry=RETRY)
        await org.trigger(con["id"], ["values"], [gw["id"]])

        async def down() -> None:
            await asyncio.to_thread(mosquitto.stop)

        async def up() -> None:
            await asyncio.to_thread(mosquitto.start)

        await ride_out_outage(org, gw, down, up)

        async def arrived() -> bool:
            return len({(orjson.loads(g.body)["deviceId"], orjson.loads(g.body)["payload"])
                        for g in sub.messages()}) == len(DEVICES) * PER_DEVICE

        await eventually(arrived, timeout=60, what="every message at the subscriber")
        assert_all_in_order(sub.messages())
    finally:
        sub.close()


async def test_rabbitmq_away_for_10_s_loses_nothing_and_keeps_order(org: Org, tag: str) -> None:
    proxy = Proxy(amqp_hostport())
    async with amqp_subscriber(tag, "values.#") as sub:
        gw = await org.gateway()
        con = await broker_connector(org, "amqp", {
            "url": amqp_url_at(proxy.port), "exchange": tag, "routingKey": "{kind}.{deviceId}"},
            ordering="per_device", retry=RETRY)
        await org.trigger(con["id"], ["values"], [gw["id"]])
        await ride_out_outage(org, gw, proxy.down, proxy.up)

        async def arrived() -> bool:
            return len(sub.got) >= len(DEVICES) * PER_DEVICE

        await eventually(arrived, timeout=30, what="every message in the queue")
        assert_all_in_order(sub.got)
    await proxy.down()


async def test_nats_away_for_10_s_loses_nothing_and_keeps_order(org: Org, tag: str) -> None:
    proxy = Proxy(nats_hostport())
    async with nats_subscriber(tag) as sub:
        gw = await org.gateway()
        con = await broker_connector(org, "nats", {
            "url": f"nats://127.0.0.1:{proxy.port}", "subject": tag + ".{kind}.{deviceId}",
            "jetstream": True}, ordering="per_device", retry=RETRY)
        await org.trigger(con["id"], ["values"], [gw["id"]])
        await ride_out_outage(org, gw, proxy.down, proxy.up)

        async def arrived() -> bool:
            return len(sub.got) >= len(DEVICES) * PER_DEVICE

        await eventually(arrived, timeout=30, what="every message on the subject")
        assert_all_in_order(sub.got)
    await proxy.down()


# --- the API: 422s naming the field, secrets never shown, kept by a PATCH ---------------------

@pytest.mark.parametrize(("body", "field"), [
    ({"type": "mqtt", "target": {"url": "tcp://h:1883", "topic": "t"}}, "target.url"),
    ({"type": "mqtt", "target": {"url": "mqtt://h", "topic": "t/{nope}"}}, "target.topic"),
    ({"type": "mqtt", "target": {"url": "mqtt://h", "topic": "t", "qos": 3}}, "target.qos"),
    ({"type": "amqp", "target": {"url": "amqp://h", "routingKey": "{kind}", "exchange": "a b"}},
     "target.exchange"),
    ({"type": "nats", "target": {"url": "nats://h", "subject": "a.>"}}, "target.subject"),
    ({"type": "nats"}, "target"),
    ({"type": "mqtt", "baseUrl": "https://example.com", "target": {
        "url": "mqtt://h", "topic": "t"}}, "baseUrl"),
    ({"type": "http"}, "baseUrl"),
    ({"type": "kafka", "target": {}}, "type"),
])
async def test_bad_broker_connectors_are_422_naming_the_field(
    org: Org, body: dict[str, Any], field: str
) -> None:
    resp = await org.api.post("/api/v1/connectors", json={"name": "x", **body})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["details"][0]["field"] == field


@pytest.mark.parametrize("settings_overrides", [{"allow_private_targets": False}])
async def test_a_private_broker_address_is_refused_by_the_ssrf_guard(org: Org) -> None:
    resp = await org.api.post("/api/v1/connectors", json={
        "name": "x", "type": "mqtt", "target": {"url": "mqtt://10.0.0.1", "topic": "t"}})
    assert resp.status_code == 422 and resp.json()["error"]["details"][0]["field"] == "target.url"
    # A name that resolves to a private address is refused when delivering.
    con = await broker_connector(org, "nats", {"url": "nats://localhost:4222", "subject": "a"})
    answer = (await org.api.post(f"/api/v1/connectors/{con['id']}/test",
                                 json={"kind": "values"})).json()
    assert answer["succeeded"] is False and "refused" in answer["error"].lower()


async def test_a_patch_changes_the_topic_and_keeps_the_password(
    org: Org, mosquitto: Mosquitto, mqtt_subscriber: MqttSubscriber,
) -> None:
    con = await broker_connector(org, "mqtt", mqtt_target(mosquitto))
    shown = (await org.api.get(f"/api/v1/connectors/{con['id']}")).json()
    assert TESTER_PASSWORD not in str(shown) and shown["target"]["credentials"] is True
    target = {"url": f"mqtt://127.0.0.1:{mosquitto.port}", "topic": "hookstream/patched/{kind}"}
    resp = await org.api.patch(f"/api/v1/connectors/{con['id']}", json={"target": target})
    assert resp.status_code == 200, resp.text
    assert resp.json()["target"]["topic"] == "hookstream/patched/{kind}"
    # The broker requires the password: the test button still getting through shows it kept.
    answer = (await org.api.post(f"/api/v1/connectors/{con['id']}/test",
                                 json={"kind": "events"})).json()
    assert answer["succeeded"], answer

    async def arrived() -> bool:
        return any(g.topic == "hookstream/patched/events" for g in mqtt_subscriber.messages())

    await eventually(arrived, what="the sample on the new topic")
