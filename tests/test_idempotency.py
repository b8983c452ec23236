"""``Idempotency-Key`` on ``POST /ingest/v1/{kind}``: a repeat gets the first answer and
stores nothing (real service, real receiver, SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest

from tests.api_checks import error_of, message
from tests.support import Org, Receiver, eventually

REPLAYED = "Idempotent-Replayed"


async def post(org: Org, token: str, kind: str, body: Any, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await org.service.client.post(
        f"/ingest/v1/{kind}", content=orjson.dumps(body), headers=headers
    )


async def stored_ids(org: Org, gateway_id: str | None = None) -> list[str]:
    params = {"limit": 1000, **({"gatewayId": gateway_id} if gateway_id else {})}
    resp = await org.api.get("/api/v1/messages", params=params)
    assert resp.status_code == 200, resp.text
    return sorted(m["id"] for m in resp.json()["items"])


async def sent_once(org: Org, count: int) -> None:
    """Until ``count`` deliveries are delivered, failing unless each took one attempt."""
    async def delivered() -> bool:
        return [d["status"] for d in await org.deliveries()] == ["delivered"] * count

    await eventually(delivered, what=f"{count} deliveries delivered")
    assert [d["attemptCount"] for d in await org.deliveries()] == [1] * count


async def wired(org: Org, receiver: Receiver) -> dict[str, Any]:
    gw = await org.gateway()
    con = await org.connector(receiver.url)
    await org.trigger(con["id"], ["values", "events"], [gw["id"]])
    return gw


@pytest.mark.parametrize("batch", [False, True], ids=["one message", "a batch"])
async def test_a_repeat_gets_the_first_answer_and_nothing_is_stored_or_sent_twice(
    org: Org, receiver: Receiver, batch: bool
) -> None:
    gw = await wired(org, receiver)
    token = gw["ingestToken"]
    body: Any = [message(f"d{i}", ts=1_700_000_000_000 + i) for i in range(3)] if batch \
        else message("d1")
    first = await post(org, token, "values", body, "req-0001")
    assert first.status_code == 202, first.text
    assert REPLAYED not in first.headers
    ids = first.json()["ids"]
    assert len(ids) == (3 if batch else 1)

    for _ in range(2):
        again = await post(org, token, "values", body, "req-0001")
        assert again.status_code == 202, again.text
        assert again.json() == first.json()  # the same ids, in the same order
        assert again.content == first.content
        assert again.headers[REPLAYED] == "true"

    # One set of messages, one delivery each, one webhook each.
    assert await stored_ids(org) == sorted(ids)
    deliveries = await org.deliveries()
    assert sorted(d["messageId"] for d in deliveries) == sorted(ids)
    await receiver.wait_for(len(ids))
    await sent_once(org, len(ids))  # the worker is done with every delivery there is
    assert sorted(receiver.ids()) == sorted(ids)

    # Without a key, the same body is a new request each time.
    plain = [await post(org, token, "values", body, None) for _ in range(2)]
    assert all(r.status_code == 202 and REPLAYED not in r.headers for r in plain)
    assert len(await stored_ids(org)) == 3 * len(ids)


async def test_the_same_key_with_another_request_is_refused_and_stores_nothing(
    org: Org,
) -> None:
    gw = await org.gateway()
    token = gw["ingestToken"]
    first = await post(org, token, "values", message("d1", payload=1), "k-1")
    assert first.status_code == 202, first.text
    for label, kind, body in [
        ("another body", "values", message("d1", payload=2)),
        ("another kind", "events", message("d1", payload=1)),
        ("the same message in an array", "values", [message("d1", payload=1)]),
    ]:
        resp = await post(org, token, kind, body, "k-1")
        err = error_of(resp, 422, "idempotency_key_reused", names=("Idempotency-Key",))
        assert "different" in err["message"], label
    assert await stored_ids(org) == first.json()["ids"]
    # The first request still gets its answer.
    again = await post(org, token, "values", message("d1", payload=1), "k-1")
    assert again.status_code == 202 and again.json() == first.json()


async def test_concurrent_requests_with_one_key_store_one_set(
    org: Org, receiver: Receiver
) -> None:
    gw = await wired(org, receiver)
    body = [message(f"d{i}", ts=1_700_000_000_000 + i) for i in range(20)]
    answers = await asyncio.gather(
        *(post(org, gw["ingestToken"], "values", body, "burst-1") for _ in range(5))
    )
    assert [r.status_code for r in answers] == [202] * 5, [r.text for r in answers]
    bodies = {r.content for r in answers}
    assert len(bodies) == 1, "every request got the same answer"
    ids = answers[0].json()["ids"]
    assert len(ids) == 20
    # Exactly one of them stored; the others are marked as repeats.
    assert sorted(REPLAYED in r.headers for r in answers) == [False, True, True, True, True]
    assert await stored_ids(org) == sorted(ids)
    assert sorted(d["messageId"] for d in await org.deliveries()) == sorted(ids)
    await receiver.wait_for(20)
    await sent_once(org, 20)
    assert sorted(receiver.ids()) == sorted(ids)


async def test_keys_belong_to_one_gateway(org: Org) -> None:
    gw1, gw2 = await org.gateway("one"), await org.gateway("two")
    other = await org.service.new_org("Other")
    try:
        gw3 = await other.gateway("three")
        body = message("d1")
        answers = [
            await post(org, gw1["ingestToken"], "values", body, "shared-key"),
            await post(org, gw2["ingestToken"], "values", body, "shared-key"),
            await post(other, gw3["ingestToken"], "values", body, "shared-key"),
        ]
        assert all(r.status_code == 202 and REPLAYED not in r.headers for r in answers)
        ids = [r.json()["ids"][0] for r in answers]
        assert len(set(ids)) == 3
        assert await stored_ids(org, gw1["id"]) == [ids[0]]
        assert await stored_ids(org, gw2["id"]) == [ids[1]]
        assert await stored_ids(other, gw3["id"]) == [ids[2]]
        # Another body under the key at another gateway is that gateway's business.
        resp = await post(org, gw2["ingestToken"], "values", message("d2"), "shared-key")
        error_of(resp, 422, "idempotency_key_reused")
        resp = await post(org, gw1["ingestToken"], "values", body, "shared-key")
        assert resp.json()["ids"] == [ids[0]] and resp.headers[REPLAYED] == "true"
    finally:
        await other.api.aclose()


WINDOW = 1.5  # s; the requests that must fall inside it take milliseconds


async def past_the_window(answered_at: float) -> None:
    """Until the window of a key stored before ``answered_at`` (epoch s) is over."""
    # The key's time is when its first request was stored, before that request's answer.
    left = answered_at + WINDOW + 0.2 - time.time()
    await asyncio.sleep(max(0.0, left))  # deliberate interval: the key's window runs out


@pytest.mark.parametrize("settings_overrides", [{"idempotency_window_seconds": WINDOW}])
async def test_after_the_window_a_key_is_new(org: Org) -> None:
    gw = await org.gateway()
    token = gw["ingestToken"]
    first = await post(org, token, "values", message("d1"), "daily")
    first_answered = time.time()
    repeat = await post(org, token, "values", message("d1"), "daily")
    assert repeat.headers.get(REPLAYED) == "true" and repeat.json() == first.json()
    await past_the_window(first_answered)
    # The same request again is new now: stored again, with new ids.
    later = await post(org, token, "values", message("d1"), "daily")
    later_answered = time.time()
    assert later.status_code == 202 and REPLAYED not in later.headers
    assert later.json()["ids"] != first.json()["ids"]
    # And the key now answers with the new request's answer, refusing other bodies.
    again = await post(org, token, "values", message("d1"), "daily")
    assert again.json() == later.json() and again.headers[REPLAYED] == "true"
    error_of(await post(org, token, "values", message("d2"), "daily"), 422,
             "idempotency_key_reused")
    await past_the_window(later_answered)
    # After the window another body is fine too.
    other = await post(org, token, "values", message("d2"), "daily")
    assert other.status_code == 202 and REPLAYED not in other.headers
    assert len(await stored_ids(org)) == 3


async def test_a_malformed_key_is_refused_and_a_refused_request_uses_no_key(org: Org) -> None:
    gw = await org.gateway()
    token = gw["ingestToken"]
    for label, key in [("empty", ""), ("256 characters", "k" * 256)]:
        resp = await post(org, token, "values", message(), key)
        err = error_of(resp, 422, "validation_error", names=("Idempotency-Key",))
        assert err["details"][0]["field"] == "Idempotency-Key", label
    # The token is checked first.
    error_of(await post(org, "hsi_made_up", "values", message(), ""), 401, "unauthorized")
    assert await stored_ids(org) == []

    # A body refused for its content stores nothing and leaves the key unused.
    longest = "k" * 255
    error_of(await post(org, token, "values", message(colour="red"), longest), 422,
             "validation_error", names=("colour",))
    ok = await post(org, token, "values", message(), longest)
    assert ok.status_code == 202 and REPLAYED not in ok.headers, ok.text
    # Any header spelling is the same header.
    resp = await org.service.client.post(
        "/ingest/v1/values", content=orjson.dumps(message()),
        headers={"Authorization": f"Bearer {token}", "idempotency-key": longest},
    )
    assert resp.json() == ok.json() and resp.headers[REPLAYED] == "true"
    assert await stored_ids(org) == ok.json()["ids"]


async def test_the_header_is_documented_in_the_openapi(org: Org) -> None:
    schema = (await org.service.client.get("/openapi.json")).json()
    operation = schema["paths"]["/ingest/v1/{kind}"]["post"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert params["Idempotency-Key"]["in"] == "header"
    assert params["Idempotency-Key"]["schema"]["maxLength"] == 255
    assert "kind" in params
    assert REPLAYED in operation["responses"]["202"]["headers"]
    assert "idempotency_key_reused" in operation["description"]
