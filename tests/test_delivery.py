"""Delivery end to end: real service, real receivers, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import orjson
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from hookstream.pipeline.message import FIELDS
from tests.support import Org, Received, Receiver, eventually, running_receiver


def value(i: int, device: str = "dev-1") -> dict[str, Any]:
    return {"deviceId": device, "property": "temperature", "timestamp": 1_700_000_000_000 + i,
            "payload": 20 + i % 10, "unit": "°C", "tags": {"room": "lab"}}


async def wired(org: Org, receiver: Receiver, kinds: list[str] | None = None,
                **connector: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    gw = await org.gateway()
    con = await org.connector(receiver.url, **connector)
    await org.trigger(con["id"], kinds or ["values"], [gw["id"]])
    return gw, con


async def test_batch_of_1000_fans_out_to_3_connectors_once_each(org: Org) -> None:
    async with running_receiver() as r1, running_receiver() as r2, running_receiver() as r3:
        gw = await org.gateway()
        for r in (r1, r2, r3):
            con = await org.connector(r.url)
            await org.trigger(con["id"], ["values"], [gw["id"]])
        resp = await org.ingest(gw["ingestToken"], "values", [value(i) for i in range(1000)])
        assert resp.status_code == 202, resp.text
        ids = resp.json()["ids"]
        assert resp.json()["accepted"] == 1000 and len(set(ids)) == 1000
        for r in (r1, r2, r3):
            await r.wait_for(1000, timeout=60)

        async def all_delivered() -> bool:
            dels = await org.deliveries()
            return len(dels) == 3000 and {d["status"] for d in dels} == {"delivered"}

        await eventually(all_delivered, timeout=60)
        assert {d["attemptCount"] for d in await org.deliveries()} == {1}
        # A copy already on its way (a delivery sent twice) would land in this.
        await asyncio.sleep(0.3)  # deliberate interval: in-flight duplicates arrive
        for r in (r1, r2, r3):
            assert sorted(r.ids()) == sorted(ids), "each message arrives once at each connector"
            assert {x.path for x in r.received} == {"/values"}


async def test_delivered_body_is_the_15_field_message_and_signature_verifies(
    org: Org, receiver: Receiver
) -> None:
    gw, con = await wired(org, receiver, kinds=["alarms"])
    msg = {"deviceId": "boiler", "property": "overheat", "timestamp": 1_700_000_000_000,
           "payload": True, "isOutOfService": False, "tags": {"site": "north"}}
    resp = await org.ingest(gw["ingestToken"], "alarms", msg)
    assert resp.status_code == 202
    await receiver.wait_for(1)
    got = receiver.received[0]
    assert got.path == "/alarms"
    assert got.headers["Content-Type"] == "application/json"
    body = orjson.loads(got.body)
    assert list(body) == list(FIELDS)
    assert body["deviceId"] == "boiler" and body["payload"] is True and body["name"] is None
    assert body["tags"] == {"site": "north"} and isinstance(body["receivedAt"], int)
    assert got.headers["webhook-id"] == resp.json()["ids"][0]
    Webhook(con["secret"]).verify(got.body, got.headers)  # raises when it does not verify
    with pytest.raises(Exception, match="(?i)signature"):
        other = "whsec_" + base64.b64encode(b"x" * 32).decode()
        Webhook(other).verify(got.body, got.headers)


async def test_500_then_200_keeps_the_webhook_id_and_ends_delivered_after_2_attempts(
    org: Org,
) -> None:
    def respond(_: Received, n: int) -> web.Response:
        return web.Response(status=500, text="boom") if n == 1 else web.Response(status=200)

    async with running_receiver(respond) as receiver:
        gw, _ = await wired(org, receiver)
        resp = await org.ingest(gw["ingestToken"], "values", value(1))
        message_id = resp.json()["ids"][0]
        await receiver.wait_for(2)
        assert receiver.ids() == [message_id, message_id]

        async def delivered() -> bool:
            dels = await org.deliveries()
            return dels[0]["status"] == "delivered"

        await eventually(delivered)
        (delivery,) = await org.deliveries()
        assert delivery["attemptCount"] == 2 and delivery["webhookId"] == message_id
        detail = (await org.api.get(f"/api/v1/deliveries/{delivery['id']}")).json()
        assert [a["statusCode"] for a in detail["attempts"]] == [500, 200]
        assert detail["attempts"][0]["responseBody"] == "boom"


@pytest.mark.parametrize(
    ("auth", "header", "expected"),
    [
        ({"type": "basic", "username": "u", "password": "p w"}, "Authorization",
         "Basic " + base64.b64encode(b"u:p w").decode()),
        ({"type": "bearer", "token": "tok-123"}, "Authorization", "Bearer tok-123"),
        ({"type": "api_key", "header": "X-Api-Key", "value": "k-9"}, "X-Api-Key", "k-9"),
    ],
)
async def test_connector_authentication_header_is_sent(
    org: Org, receiver: Receiver, auth: dict[str, Any], header: str, expected: str
) -> None:
    gw, _ = await wired(org, receiver, authentication=auth)
    await org.ingest(gw["ingestToken"], "values", value(1))
    await receiver.wait_for(1)
    assert receiver.received[0].headers[header] == expected


async def test_gives_up_after_the_schedule_then_replay_delivers_with_the_same_id(
    org: Org,
) -> None:
    healthy = False

    def respond(_: Received, __: int) -> web.Response:
        return web.Response(status=204 if healthy else 503)

    async with running_receiver(respond) as receiver:
        gw, _ = await wired(org, receiver)
        message_id = (await org.ingest(gw["ingestToken"], "values", value(1))).json()["ids"][0]

        async def failed() -> bool:
            return (await org.deliveries())[0]["status"] == "failed"

        await eventually(failed)
        # 1 + len(retry_schedule) attempts (the tests' schedule has 3 retries)
        assert len(receiver.received) == 4
        (delivery,) = await org.deliveries(status="failed")
        healthy = True
        resp = await org.api.post(f"/api/v1/deliveries/{delivery['id']}/replay")
        assert resp.status_code == 202, resp.text
        assert resp.json()["replayOf"] == delivery["id"]
        await receiver.wait_for(5)
        assert set(receiver.ids()) == {message_id}

        async def replay_delivered() -> bool:
            got = (await org.api.get(f"/api/v1/deliveries/{resp.json()['id']}")).json()
            return bool(got["status"] == "delivered")

        await eventually(replay_delivered)


# The first retry is due 2 s after the first attempt: time enough to switch off first.
@pytest.mark.parametrize("settings_overrides", [{"retry_schedule": (2.0,) * 20}])
async def test_switching_a_connector_off_holds_its_queue_and_on_resumes_it(org: Org) -> None:
    healthy = False

    def respond(_: Received, __: int) -> web.Response:
        return web.Response(status=204 if healthy else 500)

    async with running_receiver(respond) as receiver:
        gw, con = await wired(org, receiver)
        first = (await org.ingest(gw["ingestToken"], "values", value(1))).json()["ids"][0]
        await receiver.wait_for(1)
        off = await org.api.patch(f"/api/v1/connectors/{con['id']}", json={"active": False})
        assert off.status_code == 200 and off.json()["active"] is False
        retry_due = receiver.received[0].at + 2.0
        assert time.time() < retry_due, "switched off only after the retry was due"

        async def held() -> bool:
            return [d["status"] for d in await org.deliveries()] == ["held"]

        await eventually(held)
        # While off, new messages are not routed to it, and nothing is sent.
        second = (await org.ingest(gw["ingestToken"], "values", value(2))).json()["ids"][0]
        log = (await org.api.get(f"/api/v1/messages/{second}")).json()
        assert log["deliveries"] == []
        # The retry's due time passes, and a few of the worker's 0.2 s polls.
        await asyncio.sleep(retry_due + 1.0 - time.time())  # deliberate interval: retry delay
        assert len(receiver.received) == 1

        healthy = True
        on = await org.api.patch(f"/api/v1/connectors/{con['id']}", json={"active": True})
        assert on.json()["active"] is True

        async def delivered() -> bool:
            return [d["status"] for d in await org.deliveries()] == ["delivered"]

        await eventually(delivered)
        assert set(receiver.ids()) == {first}


async def test_a_message_no_trigger_matches_is_logged_without_deliveries(
    org: Org, receiver: Receiver
) -> None:
    gw, _ = await wired(org, receiver, kinds=["alarms"])
    other = await org.gateway("not in scope")
    ids = [
        (await org.ingest(gw["ingestToken"], "values", value(1))).json()["ids"][0],
        (await org.ingest(other["ingestToken"], "alarms", value(2))).json()["ids"][0],
    ]
    for message_id in ids:
        got = (await org.api.get(f"/api/v1/messages/{message_id}")).json()
        assert got["deliveries"] == []
    # A message that matches, sent after them, arrives alone.
    matching = (await org.ingest(gw["ingestToken"], "alarms", value(3))).json()["ids"]
    await receiver.wait_for(1)
    assert receiver.ids() == matching


async def test_all_gateways_trigger_covers_gateways_created_later(
    org: Org, receiver: Receiver
) -> None:
    con = await org.connector(receiver.url)
    await org.trigger(con["id"], ["events"])
    gw = await org.gateway("born later")
    resp = await org.ingest(gw["ingestToken"], "events", value(1))
    await receiver.wait_for(1)
    assert receiver.received[0].path == "/events"
    assert receiver.ids() == resp.json()["ids"]


@pytest.mark.parametrize("settings_overrides", [{"allow_private_targets": False}])
async def test_private_addresses_are_refused_unless_allowed(org: Org, receiver: Receiver) -> None:
    # An IP literal is refused when the connector is created; a name when it is resolved.
    literal = await org.api.post("/api/v1/connectors", json={
        "name": "r", "baseUrl": receiver.url, "routes": {"values": "", "events": "",
                                                         "alarms": ""}})
    assert literal.status_code == 422 and "private" in literal.text
    gw = await org.gateway()
    localhost = await org.connector(receiver.url.replace("127.0.0.1", "localhost"))
    await org.trigger(localhost["id"], ["values"], [gw["id"]])
    await org.ingest(gw["ingestToken"], "values", value(1))

    async def attempted() -> bool:
        return all(d["attemptCount"] >= 1 for d in await org.deliveries())

    await eventually(attempted)
    dels = await org.deliveries()
    assert len(dels) == 1
    for d in dels:
        # Not retried: a refused target fails at once.
        assert d["status"] == "failed" and d["attemptCount"] == 1
        assert "private" in d["lastError"]
    assert receiver.received == []
