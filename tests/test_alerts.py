"""Operational alerts: connector.deactivated and delivery.failed reach the alerts URL, signed."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from tests.support import Org, Receiver, running_receiver


def value(i: int) -> dict[str, Any]:
    return {"deviceId": "d", "property": "p", "timestamp": 1_700_000_000_000 + i, "payload": i}


async def set_alerts(org: Org, url: str) -> dict[str, Any]:
    resp = await org.api.put("/api/v1/alerts", json={"url": url})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_connector_deactivated_alert_arrives_signed(org: Org, receiver: Receiver) -> None:
    alerts = await set_alerts(org, receiver.url + "/ops")
    assert alerts["secret"].startswith("whsec_")
    async with running_receiver(lambda _r, _n: web.Response(status=410)) as gone:
        gw = await org.gateway()
        con = await org.connector(gone.url)
        await org.trigger(con["id"], ["values"], [gw["id"]])
        await org.ingest(gw["ingestToken"], "values", value(1))
        await receiver.wait_for(1)
    got = receiver.received[0]
    assert got.path == "/ops"
    Webhook(alerts["secret"]).verify(got.body, got.headers)
    event = orjson.loads(got.body)
    assert event["type"] == "connector.deactivated"
    assert event["data"]["connectorId"] == con["id"]
    assert event["data"]["organizationId"] == org.id
    assert "410" in event["data"]["reason"]


async def test_delivery_failed_alert_names_the_delivery(org: Org, receiver: Receiver) -> None:
    alerts = await set_alerts(org, receiver.url)
    async with running_receiver(lambda _r, _n: web.Response(status=500)) as failing:
        gw = await org.gateway()
        con = await org.connector(failing.url, retry={"schedule": [], "maxAttempts": 1})
        await org.trigger(con["id"], ["values"], [gw["id"]])
        message_id = (await org.ingest(gw["ingestToken"], "values", value(1))).json()["ids"][0]
        await receiver.wait_for(1)
    event = orjson.loads(receiver.received[0].body)
    assert event["type"] == "delivery.failed"
    (delivery,) = await org.deliveries(connectorId=con["id"])
    assert event["data"]["deliveryId"] == delivery["id"]
    assert event["data"]["messageId"] == message_id
    assert event["data"]["attempts"] == 1
    Webhook(alerts["secret"]).verify(receiver.received[0].body, receiver.received[0].headers)


async def test_alerts_endpoint_is_managed_apart_from_connectors(org: Org) -> None:
    assert (await org.api.get("/api/v1/alerts")).status_code == 404
    first = await set_alerts(org, "https://ops.example.com/hook")
    again = (await org.api.put("/api/v1/alerts",
                               json={"url": "https://ops.example.com/v2"})).json()
    assert again["connectorId"] == first["connectorId"] and "secret" not in again
    got = (await org.api.get("/api/v1/alerts")).json()
    assert got["url"] == "https://ops.example.com/v2"
    listed = (await org.api.get("/api/v1/connectors")).json()["items"]
    assert all(c["id"] != first["connectorId"] for c in listed)
    hidden = await org.api.get(f"/api/v1/connectors/{first['connectorId']}")
    assert hidden.status_code == 404
    bad = await org.api.put("/api/v1/alerts", json={"url": "ftp://x"})
    assert bad.status_code == 422
    other = await org.service.new_org("B")
    try:
        assert (await other.api.get("/api/v1/alerts")).status_code == 404
    finally:
        await other.api.aclose()
    assert (await org.api.delete("/api/v1/alerts")).status_code == 204
    assert (await org.api.get("/api/v1/alerts")).status_code == 404


async def test_no_alerts_url_no_alert_and_the_message_log_stays_clean(org: Org) -> None:
    async with running_receiver(lambda _r, _n: web.Response(status=500)) as failing:
        gw = await org.gateway()
        con = await org.connector(failing.url, retry={"schedule": [], "maxAttempts": 1})
        await org.trigger(con["id"], ["values"], [gw["id"]])
        await org.ingest(gw["ingestToken"], "values", value(1))
        await failing.wait_for(1)
    messages = (await org.api.get("/api/v1/messages")).json()["items"]
    assert [m["kind"] for m in messages] == ["values"]
