"""Connector transforms end to end: real service, real receivers, on SQLite and PostgreSQL.

A transform reshapes what the receiver gets (signed as received), a bad expression is refused
naming transform.expression, a failing or runaway one fails its delivery once with the error
in its attempt and is replayable once fixed, and the preview shows the result or the error."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from tests.api_checks import error_of
from tests.support import Org, Receiver, eventually, running_receiver

RESHAPE = '{"ts": timestamp, "values": {slug: scaledPayload}, "device": deviceId}'
FAILING = '$number(unit)'  # "°C" is not a number: fails at run time, parses fine
FIXED = '{"device": deviceId, "unit": unit}'
# A range of ten million items mapped over another: the engine checks its clock between
# steps, not inside one, so only killing its process stops it near the limit.
RUNAWAY = '$count([1..9999999].([1..9999999]))'


def value(i: int = 0, device: str = "boiler-1") -> dict[str, Any]:
    return {"deviceId": device, "property": "temperature", "timestamp": 1_767_225_600_000 + i,
            "payload": 640 + i, "scaledPayload": 64.0 + i, "unit": "°C", "slug": "temperature"}


async def wired(org: Org, receiver: Receiver, **connector: Any
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    gw = await org.gateway()
    con = await org.connector(receiver.url, **connector)
    await org.trigger(con["id"], ["values"], [gw["id"]])
    return gw, con


async def ingest(org: Org, gw: dict[str, Any], body: Any) -> None:
    resp = await org.ingest(gw["ingestToken"], "values", body)
    assert resp.status_code == 202, resp.text


async def finished(org: Org, count: int) -> list[dict[str, Any]]:
    """The deliveries, once ``count`` of them have left pending."""
    got: list[dict[str, Any]] = []

    async def done() -> bool:
        got[:] = await org.deliveries()
        return len(got) >= count and all(d["status"] not in ("pending", "held") for d in got)

    await eventually(done, what=f"{count} deliveries finished")
    return got


async def detail(org: Org, delivery_id: str) -> dict[str, Any]:
    resp = await org.api.get(f"/api/v1/deliveries/{delivery_id}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_a_transform_reshapes_the_body_and_the_signature_covers_it(
    org: Org, receiver: Receiver
) -> None:
    gw, con = await wired(org, receiver, transform={"language": "jsonata", "expression": RESHAPE})
    assert con["transform"] == {"language": "jsonata", "expression": RESHAPE}
    got = (await org.api.get(f"/api/v1/connectors/{con['id']}")).json()
    assert got["transform"] == {"language": "jsonata", "expression": RESHAPE}

    await ingest(org, gw, value(1))
    await receiver.wait_for(1)
    (sent,) = receiver.received
    assert orjson.loads(sent.body) == {"ts": 1_767_225_600_001, "values": {"temperature": 65.0},
                                       "device": "boiler-1"}
    assert sent.headers["Content-Type"] == "application/json"
    Webhook(con["secret"]).verify(sent.body, sent.headers)  # the transformed bytes, signed
    (delivery,) = await finished(org, 1)
    assert delivery["status"] == "delivered"
    # The message log keeps the message as received; only the webhook's body is reshaped.
    messages = (await org.api.get("/api/v1/messages")).json()["items"]
    assert messages[0]["message"]["deviceId"] == "boiler-1"
    assert messages[0]["message"]["property"] == "temperature"


async def test_a_batch_is_transformed_as_one_array(org: Org, receiver: Receiver) -> None:
    gw, con = await wired(
        org, receiver, batch={"maxMessages": 3, "maxWaitMs": 60_000},
        transform={"language": "jsonata",
                   "expression": '{"count": $count($), "max": $max($.scaledPayload)}'},
    )
    await ingest(org, gw, [value(i, f"d{i}") for i in range(3)])
    await receiver.wait_for(1)
    (sent,) = receiver.received
    assert orjson.loads(sent.body) == {"count": 3, "max": 66.0}
    Webhook(con["secret"]).verify(sent.body, sent.headers)


async def test_patch_sets_changes_and_removes_the_transform(org: Org, receiver: Receiver) -> None:
    con = await org.connector(receiver.url)
    assert con["transform"] is None
    path = f"/api/v1/connectors/{con['id']}"
    resp = await org.api.patch(path, json={"transform": {"expression": FIXED}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["transform"] == {"language": "jsonata", "expression": FIXED}
    # Another change leaves it as it is.
    resp = await org.api.patch(path, json={"name": "renamed"})
    assert resp.json()["transform"] == {"language": "jsonata", "expression": FIXED}
    resp = await org.api.patch(path, json={"transform": None})
    assert resp.status_code == 200 and resp.json()["transform"] is None
    assert (await org.api.get(path)).json()["transform"] is None


@pytest.mark.parametrize(("transform", "field"), [
    ({"language": "jsonata", "expression": '{"a": '}, "transform.expression"),
    ({"language": "jsonata", "expression": "  "}, "transform.expression"),
    ({"language": "jsonata", "expression": "$sum(("}, "transform.expression"),
    ({"language": "xslt", "expression": "a"}, "transform.language"),
    ({"expression": "a", "extra": 1}, "transform.extra"),
])
async def test_a_bad_transform_is_a_422_naming_its_field(
    org: Org, transform: dict[str, Any], field: str
) -> None:
    create = await org.api.post("/api/v1/connectors", json={
        "name": "x", "baseUrl": "https://example.com",
        "routes": {"values": "", "events": "", "alarms": ""}, "transform": transform,
    })
    err = error_of(create, 422, "validation_error", names=(field,))
    assert [d["field"] for d in err["details"]] == [field]
    con = await org.connector("https://example.com")
    patch = await org.api.patch(f"/api/v1/connectors/{con['id']}", json={"transform": transform})
    err = error_of(patch, 422, "validation_error", names=(field,))
    assert [d["field"] for d in err["details"]] == [field]
    if field == "transform.expression" and transform["expression"].strip():
        assert "does not parse" in err["message"] and "position" in err["message"]
    assert (await org.api.get(f"/api/v1/connectors/{con['id']}")).json()["transform"] is None


async def test_a_failing_transform_fails_the_delivery_once_and_a_replay_delivers_once_fixed(
    org: Org, receiver: Receiver
) -> None:
    gw, con = await wired(org, receiver, transform={"expression": FAILING},
                          retry={"schedule": [0, 0, 0]})
    await ingest(org, gw, value())
    (failed,) = await finished(org, 1)
    assert failed["status"] == "failed" and failed["attemptCount"] == 1, failed
    assert "transform failed" in failed["lastError"] and "not retried" in failed["lastError"]
    (attempt,) = (await detail(org, failed["id"]))["attempts"]
    assert attempt["statusCode"] is None
    assert attempt["error"].startswith("transform failed: Unable to cast value to a number")
    assert receiver.received == []  # nothing was sent

    resp = await org.api.patch(f"/api/v1/connectors/{con['id']}",
                               json={"transform": {"expression": FIXED}})
    assert resp.status_code == 200, resp.text
    # Workers keep a copy of a connector for up to 2 s: replay once this one has the fix.
    worker = org.service.worker
    assert worker is not None

    async def worker_has_the_fix() -> bool:
        endpoint = (await worker.endpoints.get_many({con["id"]}))[con["id"]]
        return endpoint is not None and endpoint.transform == FIXED

    await eventually(worker_has_the_fix, what="the worker reads the fixed expression")
    replay = await org.api.post(f"/api/v1/deliveries/{failed['id']}/replay")
    assert replay.status_code in (200, 201, 202), replay.text
    await receiver.wait_for(1)
    assert orjson.loads(receiver.received[0].body) == {"device": "boiler-1", "unit": "°C"}
    Webhook(con["secret"]).verify(receiver.received[0].body, receiver.received[0].headers)
    got = await finished(org, 2)
    assert sorted(d["status"] for d in got) == ["delivered", "failed"]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"transform_timeout_ms": 50}


async def test_a_runaway_transform_fails_within_the_limit_and_others_go_on(org: Org) -> None:
    async with running_receiver() as slow_rec, running_receiver() as fine_rec:
        gw = await org.gateway()
        runaway = await org.connector(slow_rec.url, transform={"expression": RUNAWAY})
        fine = await org.connector(fine_rec.url, transform={"expression": FIXED})
        for con in (runaway, fine):
            await org.trigger(con["id"], ["values"], [gw["id"]])
        started = time.monotonic()
        await ingest(org, gw, value())
        await fine_rec.wait_for(1)
        got = await finished(org, 2)
        took = time.monotonic() - started
        by_connector = {d["connectorId"]: d for d in got}
        failed = by_connector[runaway["id"]]
        assert failed["status"] == "failed" and failed["attemptCount"] == 1
        (attempt,) = (await detail(org, failed["id"]))["attempts"]
        assert attempt["error"] == "transform failed: the transform ran past its time limit " \
                                   "of 50 ms", attempt
        # Left alone, the expression runs for about a minute; killed, it costs the limit plus
        # a grace period (and, here, the start of the transforms' processes).
        assert attempt["durationMs"] < 3000, attempt
        assert took < 15, took
        assert by_connector[fine["id"]]["status"] == "delivered"
        assert slow_rec.received == []


async def test_preview_shows_the_result_or_the_error(org: Org) -> None:
    async def preview(body: dict[str, Any]) -> Any:
        return await org.api.post("/api/v1/transforms/preview", json=body)

    resp = await preview({"expression": RESHAPE, "message": value(2)})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"result": {"ts": 1_767_225_600_002, "values": {"temperature": 66.0},
                                      "device": "boiler-1"}}
    resp = await preview({"expression": "$count($)", "message": [value(0), value(1)]})
    assert resp.json() == {"result": 2}

    # Does not parse: the field is named, with the position.
    err = error_of(await preview({"expression": '{"a": ', "message": value()}), 422,
                   "validation_error", names=("expression", "does not parse"))
    assert err["details"][0]["field"] == "expression"
    # Fails on this message, as a delivery's attempt would say.
    err = error_of(await preview({"expression": FAILING, "message": value()}), 422,
                   "transform_failed", names=("Unable to cast value to a number",))
    assert err["details"] == [{"field": "expression", "message": err["details"][0]["message"]}]
    error_of(await preview({"expression": "nothing.here", "message": value()}), 422,
             "transform_failed", names=("undefined",))
    error_of(await preview({"expression": RUNAWAY, "message": value()}), 422,
             "transform_failed", names=("ran past its time limit of 50 ms",))
    error_of(await preview({"expression": "a", "message": {}, "language": "xslt"}), 422,
             "validation_error", names=("language",))
    error_of(await preview({"message": {}}), 422, "validation_error", names=("expression",))
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    error_of(await preview({"expression": "$", "message": deep}), 422)
    # Organization routes need the organization's key.
    anonymous = await org.service.client.post("/api/v1/transforms/preview",
                                              json={"expression": "a", "message": {}})
    error_of(anonymous, 401)


async def test_the_test_button_sends_the_transformed_sample(org: Org, receiver: Receiver) -> None:
    con = await org.connector(receiver.url, transform={"expression": FIXED})
    resp = await org.api.post(f"/api/v1/connectors/{con['id']}/test", json={"kind": "values"})
    assert resp.status_code == 200 and resp.json()["succeeded"] is True, resp.text
    (sent,) = receiver.received
    assert orjson.loads(sent.body) == {"device": "hookstream-test", "unit": "°C"}
    Webhook(con["secret"]).verify(sent.body, sent.headers)

    bad = await org.connector(receiver.url, transform={"expression": FAILING})
    resp = await org.api.post(f"/api/v1/connectors/{bad['id']}/test", json={"kind": "values"})
    body = resp.json()
    assert body["succeeded"] is False and body["statusCode"] is None
    assert body["error"].startswith("transform failed:"), body
    assert len(receiver.received) == 1
