"""Limits: body sizes, message strings and tags, connectors and triggers per organization,
and rate limits per API key and per ingest token, each answered with a clear 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from hookstream.security.ratelimit import RateLimiter
from tests.api_checks import message
from tests.support import Org, Receiver, Service


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"max_connectors_per_org": 2, "max_triggers_per_org": 2, "message_max_tags": 3,
            "message_max_string_length": 16, "api_max_body_bytes": 4096}


async def test_a_body_over_the_limit_is_413_before_any_parsing(org: Org) -> None:
    big = {"name": "x" * 5000}
    resp = await org.api.post("/api/v1/gateways", json=big)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"
    assert "HOOKSTREAM_API_MAX_BODY_BYTES" in resp.json()["error"]["message"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"name": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    resp = await org.api.post("/api/v1/gateways", content=chunks(),
                              headers={"content-type": "application/json"})
    assert resp.status_code == 413
    resp = await org.service.client.post("/smarther/v2.0/plants/p/subscription",
                                         content=b"x" * 5000)
    assert resp.status_code == 413 and resp.json()["statusCode"] == 413
    # Under the limit all is as before.
    assert (await org.api.post("/api/v1/gateways", json={"name": "small"})).status_code == 201
    assert (await org.api.get("/api/v1/gateways")).json()["items"][0]["name"] == "small"


async def test_message_strings_and_tags_are_limited(org: Org) -> None:
    gateway = await org.gateway()
    token = gateway["ingestToken"]
    ok = message() | {"unit": "x" * 16, "tags": {"a": "1", "b": "2", "c": "3"}}
    assert (await org.ingest(token, "values", ok)).status_code == 202
    for field, bad in (("unit", {"unit": "x" * 17}), ("tags", {"tags": dict.fromkeys("abcd", "")}),
                       ("tags", {"tags": {"k": "v" * 17}}), ("slug", {"slug": "s" * 100})):
        resp = await org.ingest(token, "values", [message(), message() | bad])
        assert resp.status_code == 422, resp.text
        detail = resp.json()["error"]["details"][0]
        assert detail["field"] == field and detail["index"] == 1
    # Nothing of a refused batch was stored.
    assert len((await org.api.get("/api/v1/messages")).json()["items"]) == 1


async def test_connectors_and_triggers_per_organization(service: Service,
                                                        receiver: Receiver) -> None:
    org, other = await service.new_org("A"), await service.new_org("B")
    first = await org.connector(receiver.url)
    await org.connector(receiver.url)
    resp = await org.api.post("/api/v1/connectors", json={
        "name": "third", "baseUrl": receiver.url,
        "routes": {"values": "/v", "events": "/e", "alarms": "/a"}})
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "limit_reached"
    assert "HOOKSTREAM_MAX_CONNECTORS_PER_ORG" in resp.json()["error"]["message"]
    await other.connector(receiver.url)  # another organization counts its own
    await org.api.delete(f"/api/v1/connectors/{first['id']}")
    second = await org.connector(receiver.url)  # room again

    await org.trigger(second["id"], ["values"])
    await org.trigger(second["id"], ["events"])
    resp = await org.api.post(f"/api/v1/connectors/{second['id']}/triggers",
                              json={"kinds": ["alarms"], "allGateways": True})
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "limit_reached"
    await org.api.aclose()
    await other.api.aclose()


async def test_api_key_and_ingest_token_rate_limits_answer_429(service: Service) -> None:
    org, other = await service.new_org("A"), await service.new_org("B")
    gateway = await org.gateway()
    other_gateway = await org.gateway("second")
    service.runtime.api_key_limiter = RateLimiter(3, 60.0)
    service.runtime.ingest_token_limiter = RateLimiter(2, 60.0)

    answers = [(await org.api.get("/api/v1/gateways")).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    resp = await org.api.get("/api/v1/gateways")
    assert int(resp.headers["retry-after"]) >= 1
    assert resp.json()["error"]["code"] == "too_many_requests"
    assert (await other.api.get("/api/v1/gateways")).status_code == 200  # its own bucket

    answers = [(await org.ingest(gateway["ingestToken"], "values", message())).status_code
               for _ in range(3)]
    assert answers == [202, 202, 429]
    resp = await org.ingest(gateway["ingestToken"], "values", message())
    assert resp.status_code == 429 and int(resp.headers["retry-after"]) >= 1
    assert (await org.ingest(other_gateway["ingestToken"], "values", message())).status_code \
        == 202
    await org.api.aclose()
    await other.api.aclose()
