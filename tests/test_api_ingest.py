"""``POST /ingest/v1/{kind}``: what a gateway sends and what it gets back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.api_checks import error_of, message
from tests.support import Org

ONE_MIB = 1024 * 1024


async def post_raw(org: Org, token: str | None, kind: str, content: Any,
                   content_type: str = "application/json") -> Any:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await org.service.client.post(f"/ingest/v1/{kind}", content=content, headers=headers)


async def logged(org: Org, message_id: str) -> dict[str, Any]:
    resp = await org.api.get(f"/api/v1/messages/{message_id}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_one_message_and_an_array_are_accepted_and_stored(org: Org) -> None:
    gw = await org.gateway()
    resp = await org.ingest(gw["ingestToken"], "values", message("d1"))
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert set(body) == {"accepted", "ids"} and body["accepted"] == 1 and len(body["ids"]) == 1

    batch = [message(f"dev-{i}", ts=1_700_000_000_000 + i) for i in range(3)]
    resp = await org.ingest(gw["ingestToken"], "events", batch)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["accepted"] == 3 and len(body["ids"]) == 3 and len(set(body["ids"])) == 3
    # 202 means stored: each id is in the message log right away, in the order sent.
    for i, mid in enumerate(body["ids"]):
        got = await logged(org, mid)
        assert got["kind"] == "events" and got["gatewayId"] == gw["id"]
        assert got["message"]["deviceId"] == f"dev-{i}"
    # An array of one is an array: still a list of ids.
    resp = await org.ingest(gw["ingestToken"], "alarms", [message("d9")])
    assert resp.status_code == 202 and resp.json()["accepted"] == 1


async def test_the_gateway_must_present_its_ingest_token(org: Org) -> None:
    gw = await org.gateway()
    body = orjson.dumps(message())
    error_of(await post_raw(org, None, "values", body), 401, "unauthorized")
    error_of(await post_raw(org, "hsi_made_up", "values", body), 401, "unauthorized")
    for header in ("Bearer", "Basic " + gw["ingestToken"], gw["ingestToken"]):
        headers = {"Authorization": header, "Content-Type": "application/json"}
        resp = await org.service.client.post("/ingest/v1/values", content=body, headers=headers)
        error_of(resp, 401, "unauthorized")
    assert (await org.api.get("/api/v1/messages")).json()["items"] == []


async def test_a_bad_body_is_refused_naming_what_is_wrong(
    org: Org, subtests: pytest.Subtests
) -> None:
    gw = await org.gateway()
    token = gw["ingestToken"]
    required = ("deviceId", "property", "timestamp", "payload")
    cases: list[tuple[str, Any, int, tuple[str, ...]]] = [
        ("malformed JSON", b'{"deviceId": "d1", ', 400, ()),
        ("not JSON at all", b"deviceId=d1", 400, ()),
        ("a field outside the format", message(colour="red"), 422, ("colour",)),
        ("a snake_case field", message(device_id="d1"), 422, ("device_id",)),
        ("timestamp as text", {**message(), "timestamp": "x"}, 422, ("timestamp",)),
        ("timestamp as a float", {**message(), "timestamp": 1.5}, 422, ("timestamp",)),
        ("timestamp as a boolean", {**message(), "timestamp": True}, 422, ("timestamp",)),
        ("negative timestamp", message(ts=-1), 422, ("timestamp",)),
        ("tags with a number", message(tags={"a": 1}), 422, ("tags",)),
        ("tags as a list", message(tags=["a"]), 422, ("tags",)),
        ("deviceId as a number", {**message(), "deviceId": 7}, 422, ("deviceId",)),
        ("isOutOfService as text", message(isOutOfService="yes"), 422, ("isOutOfService",)),
        ("receivedAt as text", message(receivedAt="now"), 422, ("receivedAt",)),
        ("scaledPayload as text", message(scaledPayload="1.5"), 422, ("scaledPayload",)),
        ("null payload", {**message(), "payload": None}, 422, ("payload",)),
        ("a string body", "hello", 422, ()),
        ("a number body", 42, 422, ()),
        ("an array of numbers", [1, 2], 422, ()),
        ("an empty array", [], 422, ()),
        ("1001 messages", [message(ts=i) for i in range(1001)], 422, ("1000",)),
        ("one bad message in an array", [message(), message(colour="red")], 422, ("colour",)),
        ("an empty object", {}, 422, ("deviceId",)),
    ]
    for name in required:
        incomplete = message()
        del incomplete[name]
        cases.append((f"{name} missing", incomplete, 422, (name,)))
    for label, body, status, named in cases:
        with subtests.test(label):
            content = body if isinstance(body, bytes) else orjson.dumps(body)
            resp = await post_raw(org, token, "values", content)
            error_of(resp, status, "malformed_json" if status == 400 else None, names=named)
    for kind in ("foo", "VALUES", "value"):
        with subtests.test(f"kind {kind!r}"):
            error_of(await org.ingest(token, kind, message()), 422, names=("kind",))
    # Nothing of a refused request is stored, not even the good half of an array.
    assert (await org.api.get("/api/v1/messages")).json()["items"] == []


async def test_a_body_over_one_mebibyte_is_413(org: Org) -> None:
    gw = await org.gateway()
    token = gw["ingestToken"]
    big = orjson.dumps(message(payload="x" * ONE_MIB))
    assert len(big) > ONE_MIB
    error_of(await post_raw(org, token, "values", big), 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        # Sent chunked, without Content-Length: the limit holds while reading.
        for _ in range(ONE_MIB // 4096 + 2):
            yield b" " * 4096

    error_of(await post_raw(org, token, "values", chunks()), 413, "payload_too_large")
    # Just under the limit is fine.
    near = orjson.dumps(message(payload="x" * (ONE_MIB - 200)))
    assert len(near) <= ONE_MIB
    assert (await post_raw(org, token, "values", near)).status_code == 202


async def test_every_message_is_logged_even_when_no_trigger_matches(org: Org) -> None:
    gw = await org.gateway()
    before = int(time.time() * 1000)
    resp = await org.ingest(gw["ingestToken"], "values", message("lonely"))
    after = int(time.time() * 1000)
    assert resp.status_code == 202, resp.text
    (mid,) = resp.json()["ids"]
    got = await logged(org, mid)
    assert got["deliveries"] == []
    assert got["message"]["deviceId"] == "lonely"
    # receivedAt is set on arrival when the gateway did not send it.
    assert before <= got["message"]["receivedAt"] <= after
    listed = (await org.api.get("/api/v1/messages")).json()["items"]
    assert [(m["id"], m["deliveries"]) for m in listed] == [(mid, [])]


async def test_the_logged_message_has_exactly_the_fifteen_fields(org: Org) -> None:
    gw = await org.gateway()
    full = {
        "deviceId": "boiler-1", "property": "temperature", "timestamp": 1_700_000_000_123,
        "payload": {"v": 21.5, "ok": True}, "receivedAt": 1_700_000_000_456,
        "scaledPayload": 2.15, "name": "Boiler", "unit": "°C", "externalId": "ext-1",
        "propertyId": "p-1", "equipmentId": "e-1", "gatewayInterfaceId": "gi-1",
        "slug": "boiler-temperature", "isOutOfService": False, "tags": {"site": "north"},
    }
    resp = await org.ingest(gw["ingestToken"], "values", [full, message("bare")])
    assert resp.status_code == 202, resp.text
    first, second = resp.json()["ids"]
    kept = (await logged(org, first))["message"]
    assert kept == full  # every value as sent, receivedAt included
    assert list(kept) == list(full)  # in the document's order
    bare = (await logged(org, second))["message"]
    assert list(bare) == list(full)  # all fifteen, nulls present
    assert bare["tags"] == {}
    assert all(bare[k] is None for k in ("scaledPayload", "name", "unit", "externalId",
                                         "propertyId", "equipmentId", "gatewayInterfaceId",
                                         "slug", "isOutOfService"))
    assert isinstance(bare["receivedAt"], int)
    # The envelope around it, and ids that are not there.
    got = await logged(org, first)
    assert (got["id"], got["kind"], got["gatewayId"]) == (first, "values", gw["id"])
    assert got["deliveries"] == []
    error_of(await org.api.get("/api/v1/messages/msg_01HZZZZZZZZZZZZZZZZZZZZZZZ"), 404,
             "not_found", names=("msg_01HZZZZZZZZZZZZZZZZZZZZZZZ",))
    error_of(await org.api.get("/api/v1/deliveries/dlv_01HZZZZZZZZZZZZZZZZZZZZZZZ"), 404,
             "not_found", names=("dlv_01HZZZZZZZZZZZZZZZZZZZZZZZ",))


async def test_a_routed_message_lists_its_deliveries(org: Org) -> None:
    gw = await org.gateway()
    # An inactive connector never receives anything, so its delivery list stays put.
    con = (await org.api.post("/api/v1/connectors", json={
        "name": "later", "baseUrl": "https://erp.example.com",
        "routes": {"values": "/v", "events": "/e", "alarms": "/a"}})).json()
    await org.trigger(con["id"], ["values"], [gw["id"]])
    (off,) = (await org.ingest(gw["ingestToken"], "values", message())).json()["ids"]
    assert (await logged(org, off))["deliveries"] == []  # it was off on arrival
    resp = await org.api.patch(f"/api/v1/connectors/{con['id']}", json={"active": True})
    assert resp.status_code == 200, resp.text
    (on,) = (await org.ingest(gw["ingestToken"], "values", message())).json()["ids"]
    (events,) = (await org.ingest(gw["ingestToken"], "events", message())).json()["ids"]
    dels = (await logged(org, on))["deliveries"]
    assert [(d["connectorId"], d["messageId"]) for d in dels] == [(con["id"], on)]
    assert dels[0]["status"] in ("pending", "delivered", "failed")
    assert (await logged(org, events))["deliveries"] == []  # the trigger takes values only
