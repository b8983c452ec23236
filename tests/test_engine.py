"""The delivery engine's policies, end to end on both backends with real receivers."""

from __future__ import annotations

import asyncio
import base64
import functools
import time
from datetime import datetime
from typing import Any

import orjson
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from tests.support import Org, Received, Receiver, eventually, running_receiver


def value(i: int, device: str = "dev-1") -> dict[str, Any]:
    return {"deviceId": device, "property": "temperature", "timestamp": 1_700_000_000_000 + i,
            "payload": i}


async def wired(org: Org, url: str, **connector: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    gw = await org.gateway()
    con = await org.connector(url, **connector)
    await org.trigger(con["id"], ["values"], [gw["id"]])
    return gw, con


async def statuses(org: Org) -> list[str]:
    return [d["status"] for d in await org.deliveries()]


async def test_static_headers_are_sent_and_never_shown_again(org: Org, receiver: Receiver) -> None:
    secret_value = "hdr-value-7c1e9a"
    gw, con = await wired(org, receiver.url,
                          headers={"X-Tenant": "acme-tenant-x", "X-Secret": secret_value})
    assert con["headerNames"] == ["X-Secret", "X-Tenant"]
    got = (await org.api.get(f"/api/v1/connectors/{con['id']}")).text
    assert secret_value not in got and "acme-tenant-x" not in got
    await org.ingest(gw["ingestToken"], "values", value(1))
    await receiver.wait_for(1)
    assert receiver.received[0].headers["X-Tenant"] == "acme-tenant-x"
    assert receiver.received[0].headers["X-Secret"] == secret_value


@pytest.mark.parametrize("name", ["webhook-signature", "Content-Type", "Authorization", "bad name"])
async def test_static_headers_cannot_replace_hookstream_headers(org: Org, name: str) -> None:
    resp = await org.api.post("/api/v1/connectors", json={
        "name": "x", "baseUrl": "https://example.com",
        "routes": {"values": "/v", "events": "/e", "alarms": "/a"}, "headers": {name: "v"}})
    assert resp.status_code == 422 and "headers" in resp.json()["error"]["message"]


async def test_per_connector_retry_schedule_and_max_attempts(org: Org) -> None:
    async with running_receiver(lambda _r, _n: web.Response(status=500)) as rec:
        gw, con = await wired(org, rec.url, retry={"schedule": [0.1], "maxAttempts": 3})
        assert con["retry"] == {"schedule": [0.1], "maxAttempts": 3}
        await org.ingest(gw["ingestToken"], "values", value(1))

        async def failed() -> bool:
            return await statuses(org) == ["failed"]

        await eventually(failed)
        assert len(rec.received) == 3
        (delivery,) = await org.deliveries()
        assert "gave up after 3 attempts" in delivery["lastError"]


async def test_retry_after_on_429_is_honoured(org: Org) -> None:
    def respond(_: Received, n: int) -> web.Response:
        if n == 1:
            return web.Response(status=429, headers={"Retry-After": "2"})
        return web.Response(status=204)

    async with running_receiver(respond) as rec:
        gw, _ = await wired(org, rec.url, retry={"schedule": [0.1, 0.1]})
        await org.ingest(gw["ingestToken"], "values", value(1))
        await rec.wait_for(2, timeout=30)
        gap = rec.received[1].at - rec.received[0].at
        assert gap >= 2.0, f"retried {gap:.2f} s after a 429 with Retry-After: 2"


async def test_503_with_an_http_date_retry_after(org: Org) -> None:
    from email.utils import formatdate

    def respond(_: Received, n: int) -> web.Response:
        if n == 1:
            return web.Response(status=503,
                                headers={"Retry-After": formatdate(time.time() + 2, usegmt=True)})
        return web.Response(status=204)

    async with running_receiver(respond) as rec:
        gw, _ = await wired(org, rec.url, retry={"schedule": [0.1, 0.1]})
        await org.ingest(gw["ingestToken"], "values", value(1))
        await rec.wait_for(2, timeout=30)
        assert rec.received[1].at - rec.received[0].at >= 1.0  # date has 1 s resolution


async def test_410_gone_switches_the_connector_off_and_holds_its_queue(org: Org) -> None:
    async with running_receiver(lambda _r, _n: web.Response(status=410)) as rec:
        gw, con = await wired(org, rec.url)
        await org.ingest(gw["ingestToken"], "values", value(1))

        async def held() -> bool:
            return await statuses(org) == ["held"]

        await eventually(held)
        got = (await org.api.get(f"/api/v1/connectors/{con['id']}")).json()
        assert got["active"] is False and "410" in got["deactivatedReason"]
        # Nothing more is routed to it or sent while it is off. A second connector on the
        # gateway receiving the next message shows the worker has claimed since.
        async with running_receiver() as other:
            con2 = await org.connector(other.url)
            await org.trigger(con2["id"], ["values"], [gw["id"]])
            await org.ingest(gw["ingestToken"], "values", value(2))
            await other.wait_for(1)
            # Over twice the 0.2 s retry delay after the 410: a delivery not held is resent.
            await asyncio.sleep(0.5)  # deliberate interval: a retry would be due by now
        assert len(rec.received) == 1
        assert [d["status"] for d in await org.deliveries(connectorId=con["id"])] == ["held"]


async def test_abort_message_header_stops_the_retries(org: Org) -> None:
    def respond(_: Received, __: int) -> web.Response:
        return web.Response(status=500, headers={"webhook-delivery": "abort-message"})

    async with running_receiver(respond) as rec:
        gw, _ = await wired(org, rec.url, retry={"schedule": [0.1] * 5})
        await org.ingest(gw["ingestToken"], "values", value(1))

        async def failed() -> bool:
            return await statuses(org) == ["failed"]

        await eventually(failed)
        await asyncio.sleep(0.4)  # deliberate interval: four 0.1 s retry delays pass
        assert len(rec.received) == 1
        (delivery,) = await org.deliveries()
        assert "abort-message" in delivery["lastError"] and delivery["attemptCount"] == 1


@pytest.mark.parametrize("settings_overrides", [{"deactivate_after_failing_seconds": 1.0}])
async def test_a_connector_failing_for_the_whole_period_is_switched_off(org: Org) -> None:
    async with running_receiver(lambda _r, _n: web.Response(status=502)) as rec:
        gw, con = await wired(org, rec.url, retry={"schedule": [0.3] * 30})
        await org.ingest(gw["ingestToken"], "values", value(1))

        async def off() -> bool:
            got = (await org.api.get(f"/api/v1/connectors/{con['id']}")).json()
            return got["active"] is False

        await eventually(off, timeout=30)
        got = (await org.api.get(f"/api/v1/connectors/{con['id']}")).json()
        assert "every attempt failed" in got["deactivatedReason"]
        await eventually(lambda: _eq(statuses(org), ["held"]))


async def _eq(coro: Any, expected: Any) -> bool:
    return bool(await coro == expected)


async def _message_delivered(org: Org, message_id: str) -> bool:
    got = (await org.api.get(f"/api/v1/messages/{message_id}")).json()
    return [d["status"] for d in got["deliveries"]] == ["delivered"]


@pytest.mark.parametrize("settings_overrides", [{"deactivate_after_failing_seconds": 1.0}])
async def test_a_success_resets_the_failing_period(org: Org) -> None:
    def respond(_: Received, n: int) -> web.Response:
        return web.Response(status=500 if n == 1 else 204)

    async with running_receiver(respond) as rec:
        gw, con = await wired(org, rec.url, retry={"schedule": [0.3]})
        # One message at a time, each failing once and then delivered, until the failures
        # span well over the 1 s failing period. Each success starts the period over, so the
        # connector stays on however slowly the sequence runs.
        for i in range(30):
            (mid,) = (await org.ingest(gw["ingestToken"], "values", value(i))).json()["ids"]
            await rec.wait_for(2 * (i + 1))
            # The success is recorded before the next failure.
            await eventually(functools.partial(_message_delivered, org, mid),
                             what=f"message {i} delivered")
            got = (await org.api.get(f"/api/v1/connectors/{con['id']}")).json()
            assert got["active"] is True, got["deactivatedReason"]
            failures = rec.received[::2]  # each message's first request: the 500
            if failures[-1].at - failures[0].at > 2.0:
                break
        else:
            raise AssertionError("30 messages did not span 2 s of failures")
        assert [r.headers["webhook-id"] for r in rec.received[::2]] == \
            [r.headers["webhook-id"] for r in rec.received[1::2]]


@pytest.mark.parametrize("settings_overrides", [{"secret_grace_seconds": 5.0}])
async def test_rotation_signs_with_both_secrets_during_the_grace_period(
    org: Org, receiver: Receiver
) -> None:
    gw, con = await wired(org, receiver.url)
    old = con["secret"]
    rotated = await org.api.post(f"/api/v1/connectors/{con['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old and new.startswith("whsec_")
    expires = datetime.fromisoformat(rotated.json()["previousSecretExpiresAt"]).timestamp()
    assert "secret" not in (await org.api.get(f"/api/v1/connectors/{con['id']}")).json()

    first = (await org.ingest(gw["ingestToken"], "values", value(1))).json()["ids"][0]
    await receiver.wait_for(1)
    during = next(r for r in receiver.received if r.headers["webhook-id"] == first)
    assert int(during.headers["webhook-timestamp"]) < expires, "sent after the grace period"
    assert len(during.headers["webhook-signature"].split()) == 2
    Webhook(new).verify(during.body, during.headers)
    Webhook(old).verify(during.body, during.headers)

    # After the grace period, only the new one. webhook-timestamp has whole seconds, and the
    # grace period ends by that clock (hence a second more).
    await asyncio.sleep(max(0.0, expires + 1.5 - time.time()))  # deliberate interval: grace
    second = (await org.ingest(gw["ingestToken"], "values", value(2))).json()["ids"][0]

    async def arrived() -> bool:
        return second in receiver.ids()

    await eventually(arrived)
    after = next(r for r in receiver.received if r.headers["webhook-id"] == second)
    assert len(after.headers["webhook-signature"].split()) == 1
    Webhook(new).verify(after.body, after.headers)
    with pytest.raises(Exception, match="(?i)signature"):
        Webhook(old).verify(after.body, after.headers)


async def test_rotation_keeps_the_old_secret_valid(org: Org, receiver: Receiver) -> None:
    gw, con = await wired(org, receiver.url)
    old = con["secret"]
    rotated = (await org.api.post(f"/api/v1/connectors/{con['id']}/rotate-secret")).json()
    assert rotated["previousSecretExpiresAt"]
    # A while after the rotation (longer than a worker keeps its copy of a connector, 2 s),
    # the old secret still signs: the default grace period is far longer.
    await asyncio.sleep(2.1)  # deliberate interval: past the worker's 2 s connector copy
    await org.ingest(gw["ingestToken"], "values", value(1))
    await receiver.wait_for(1)
    got = receiver.received[0]
    Webhook(old).verify(got.body, got.headers)
    Webhook(rotated["secret"]).verify(got.body, got.headers)


async def test_rotate_secret_refuses_a_malformed_secret_and_other_orgs(org: Org) -> None:
    con = await org.connector("https://example.com")
    bad = await org.api.post(f"/api/v1/connectors/{con['id']}/rotate-secret",
                             json={"secret": "nope"})
    assert bad.status_code == 422
    other = await org.service.new_org("B")
    try:
        resp = await other.api.post(f"/api/v1/connectors/{con['id']}/rotate-secret")
        assert resp.status_code == 404
    finally:
        await other.api.aclose()


# --- OAuth2 client credentials against a real local token endpoint ----------------------

class TokenServer:
    def __init__(self) -> None:
        self.issued: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.fail = False

    async def handle(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append({"form": form, "auth": request.headers.get("Authorization", "")})
        if self.fail:
            return web.json_response({"error": "server_error"}, status=500)
        expected = "Basic " + base64.b64encode(b"client-1:s3cret").decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"error": "invalid_client"}, status=401)
        token = f"tok-{len(self.issued) + 1}"
        self.issued.append(token)
        return web.json_response({"access_token": token, "token_type": "Bearer",
                                  "expires_in": 3600})


async def oauth2_setup(org: Org, receiver: Receiver, tokens: TokenServer
                       ) -> tuple[dict[str, Any], Any]:
    app = web.Application()
    app.router.add_post("/token", tokens.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    from tests.support import free_socket

    sock = free_socket()
    await web.SockSite(runner, sock).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/token"
    gw, _ = await wired(org, receiver.url, authentication={
        "type": "oauth2_client_credentials", "tokenUrl": url, "clientId": "client-1",
        "clientSecret": "s3cret", "scope": "ingest"})
    return gw, (runner, sock)


async def test_oauth2_token_is_fetched_once_for_many_deliveries_and_again_after_401(
    org: Org,
) -> None:
    tokens = TokenServer()
    revoked: set[str] = set()

    def respond(r: Received, _: int) -> web.Response:
        token = r.headers.get("Authorization", "").removeprefix("Bearer ")
        if not token.startswith("tok-") or token in revoked:
            return web.Response(status=401)
        return web.Response(status=204)

    async with running_receiver(respond) as rec:
        gw, (runner, sock) = await oauth2_setup(org, rec, tokens)
        try:
            await org.ingest(gw["ingestToken"], "values", [value(i) for i in range(50)])
            await rec.wait_for(50)
            assert tokens.issued == ["tok-1"], "one token for 50 deliveries"
            assert tokens.requests[0]["form"] == {"grant_type": "client_credentials",
                                                  "scope": "ingest"}
            revoked.add("tok-1")
            await org.ingest(gw["ingestToken"], "values", value(99))

            async def all_delivered() -> bool:
                s = await statuses(org)
                return len(s) == 51 and set(s) == {"delivered"}

            await eventually(all_delivered)
            assert tokens.issued == ["tok-1", "tok-2"]
            last = rec.received[-1]
            assert last.headers["Authorization"] == "Bearer tok-2"
        finally:
            await runner.cleanup()
            sock.close()


async def test_oauth2_token_endpoint_failure_is_the_attempt_error(org: Org) -> None:
    tokens = TokenServer()
    tokens.fail = True
    async with running_receiver() as rec:
        gw, (runner, sock) = await oauth2_setup(org, rec, tokens)
        try:
            await org.ingest(gw["ingestToken"], "values", value(1))

            async def attempted() -> bool:
                return (await org.deliveries())[0]["attemptCount"] >= 1

            await eventually(attempted)
            (delivery,) = await org.deliveries()
            assert "OAuth2 token request failed" in delivery["lastError"]
            assert "500" in delivery["lastError"]
            assert rec.received == []
        finally:
            await runner.cleanup()
            sock.close()


async def test_per_connector_timeout(org: Org) -> None:
    async def slow(_: Received, __: int) -> web.Response:
        # Later than both the connector's 0.5 s and the default 5 s request timeout.
        await asyncio.sleep(10)  # pacing: a receiver that answers after 10 s
        return web.Response(status=204)

    async with running_receiver(slow) as rec:
        gw, con = await wired(org, rec.url, timeouts={"total": 0.5},
                              retry={"schedule": [], "maxAttempts": 1})
        assert con["timeouts"]["total"] == 0.5
        await org.ingest(gw["ingestToken"], "values", value(1))

        async def failed() -> bool:
            return await statuses(org) == ["failed"]

        await eventually(failed, timeout=30)
        detail = (await org.api.get(
            f"/api/v1/deliveries/{(await org.deliveries())[0]['id']}")).json()
        # The connector's 0.5 s, not the default 5 s (with room for a slow machine).
        assert detail["attempts"][0]["durationMs"] < 3000
        assert "Timeout" in detail["attempts"][0]["error"]
        assert orjson.loads(rec.received[0].body)["deviceId"] == "dev-1"
