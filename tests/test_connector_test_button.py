"""The connector test button: a signed sample message sent at once, the receiver's answer
reported, nothing stored. Real service, real receivers, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from hookstream.pipeline.message import FIELDS
from tests.api_checks import error_of
from tests.support import Org, Receiver, free_port, running_receiver


async def press(org: Org, connector_id: str, kind: str = "values") -> dict[str, Any]:
    resp = await org.api.post(f"/api/v1/connectors/{connector_id}/test", json={"kind": kind})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert set(body) == {"webhookId", "statusCode", "durationMs", "responseBody", "error",
                         "succeeded"}
    return body


async def nothing_stored(org: Org) -> None:
    assert await org.deliveries() == []
    assert (await org.api.get("/api/v1/messages")).json()["items"] == []


async def test_reports_the_receivers_answer_and_the_signature_verifies(org: Org) -> None:
    async with running_receiver(lambda _, __: web.Response(status=418, text="teapot")) as rec:
        con = await org.connector(rec.url)
        before = int(time.time() * 1000)
        got = await press(org, con["id"])
        assert got["statusCode"] == 418 and got["responseBody"] == "teapot"
        assert got["succeeded"] is False and got["error"] is None
        assert got["webhookId"].startswith("msg_") and got["durationMs"] >= 0

        (sent,) = rec.received
        assert sent.path == "/values"
        assert sent.headers["webhook-id"] == got["webhookId"]
        Webhook(con["secret"]).verify(sent.body, sent.headers)  # raises when it does not
        body = orjson.loads(sent.body)
        assert list(body) == list(FIELDS)
        assert body["deviceId"] == "hookstream-test" and body["tags"] == {"test": "true"}
        assert body["property"] == "temperature" and body["scaledPayload"] == 21.5
        assert before <= body["timestamp"] <= int(time.time() * 1000)
        await nothing_stored(org)

        # Each press is a new webhook-id.
        again = await press(org, con["id"])
        assert again["webhookId"] != got["webhookId"]


async def test_each_kind_goes_to_its_route_with_authentication_even_when_off(
    org: Org, receiver: Receiver
) -> None:
    con = await org.connector(receiver.url, active=False,
                              authentication={"type": "bearer", "token": "tok-1"})
    properties = {}
    for kind in ("values", "events", "alarms"):
        got = await press(org, con["id"], kind)
        assert got["succeeded"] is True and got["statusCode"] == 204, got
        assert got["responseBody"] is None and got["error"] is None
        sent = receiver.received[-1]
        assert sent.path == f"/{kind}" and sent.headers["Authorization"] == "Bearer tok-1"
        assert sent.headers["webhook-id"] == got["webhookId"]
        Webhook(con["secret"]).verify(sent.body, sent.headers)
        properties[kind] = orjson.loads(sent.body)["property"]
    assert len(set(properties.values())) == 3, properties
    assert (await org.api.get(f"/api/v1/connectors/{con['id']}")).json()["active"] is False
    await nothing_stored(org)


async def test_nothing_listening_is_an_error_not_a_500(org: Org) -> None:
    con = await org.connector(f"http://127.0.0.1:{free_port()}")
    got = await press(org, con["id"], "alarms")
    assert got["succeeded"] is False and got["statusCode"] is None
    assert got["error"] and "connect" in got["error"].lower()
    await nothing_stored(org)


@pytest.mark.parametrize("settings_overrides", [{"allow_private_targets": False}])
async def test_private_targets_are_refused_like_the_worker_does(
    org: Org, receiver: Receiver
) -> None:
    # An IP literal is refused when the connector is created; a name when it is resolved.
    resp = await org.api.post("/api/v1/connectors", json={
        "name": "r", "baseUrl": receiver.url, "routes": {"values": "", "events": "",
                                                         "alarms": ""}})
    assert resp.status_code == 422 and "HOOKSTREAM_ALLOW_PRIVATE_TARGETS" in resp.text
    con = await org.connector(receiver.url.replace("127.0.0.1", "localhost"))
    got = await press(org, con["id"])
    assert got["succeeded"] is False and got["statusCode"] is None
    assert "private" in got["error"] and "HOOKSTREAM_ALLOW_PRIVATE_TARGETS" in got["error"]
    assert receiver.received == []


async def test_bad_test_requests(org: Org, receiver: Receiver) -> None:
    con = await org.connector(receiver.url)
    path = f"/api/v1/connectors/{con['id']}/test"
    for body in ({}, {"kind": "logs"}, {"kind": 1}, {"kind": "values", "x": 1}):
        error_of(await org.api.post(path, json=body), 422, "validation_error")
    error_of(await org.api.post("/api/v1/connectors/con_nope/test", json={"kind": "values"}),
             404, "not_found")
    other = await org.service.new_org("Other")
    try:
        error_of(await other.api.post(path, json={"kind": "values"}), 404, "not_found")
    finally:
        await other.api.aclose()
    deleted = await org.api.delete(f"/api/v1/connectors/{con['id']}")
    assert deleted.status_code == 204
    error_of(await org.api.post(path, json={"kind": "values"}), 404, "not_found")
    assert receiver.received == []
