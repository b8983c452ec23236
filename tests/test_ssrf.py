"""The SSRF guard: no outgoing request reaches a loopback, private or reserved address.

Hostile targets point at a real receiver on 127.0.0.1 (and ::1): each is tried through the
running service (refused when created, or failed after exactly one attempt when delivered)
and through the sender itself; the receiver must get nothing. Names that resolve to
hostile addresses, redirects and DNS rebinding use an injected resolver; a server on
127.0.0.2, in an allow-listed network, plays the public host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from hookstream.errors import ConfigurationError, TargetRefused
from hookstream.pipeline.deliver.client import Sender
from hookstream.pipeline.deliver.retry import Answer, RetryPolicy, Verdict
from hookstream.settings import Settings, load_settings
from tests.support import (
    Org,
    Receiver,
    Responder,
    eventually,
    running_receiver,
    running_service,
)
from tests.test_thermostat_api import new_app, plant_with_module

ROUTES = {"values": "/values", "events": "/events", "alarms": "/alarms"}

# Every one of these means an address outgoing requests may not reach; {port} is the
# receiver's. The loopback ones would reach it without the guard (see
# test_without_the_guard_these_targets_do_reach_the_receiver).
HOSTILE_LITERALS = [
    "127.0.0.1",
    "127.1",  # short form
    "2130706433",  # decimal
    "0177.0.0.1",  # octal
    "0x7f.0.0.1",  # hex
    "0x7f000001",  # one hex number
    "017700000001",  # one octal number
    "0x7f.1",
    "127.0.0.1.",  # trailing dot
    "１２７.０.０.１",  # Unicode digits, which yarl (aiohttp's URL parser) reads as 127.0.0.1
    "%31%32%37.0.0.1",  # percent-encoded
    "0.0.0.0",  # Linux connects it to the local host
    "0",
    "[::1]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:7f00:1]",
    "[64:ff9b::7f00:1]",  # NAT64
    "[::127.0.0.1]",  # IPv4-compatible
    "[2002:7f00:1::1]",  # 6to4
    "[::ffff:169.254.169.254]",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # shared (CGNAT)
    "192.0.0.1",  # IETF protocol assignments
    "[fd00::1]",  # unique-local
    "[fe80::1]",  # link-local
    "224.0.0.1",  # multicast
    "[ff02::1]",
    "198.18.0.1",  # benchmarking
    "192.0.2.1",  # documentation
    "[2001:db8::1]",
    "255.255.255.255",
    "240.0.0.1",  # reserved
]
# Names the service resolves with the system's resolver (/etc/hosts).
HOSTILE_NAMES = ["localhost", "LOCALHOST"]
# Names only the injected resolver knows (the sender tests).
RESOLVED = {
    "loopback.example": ["127.0.0.1"],
    "metadata.example": ["169.254.169.254"],
    "six.example": ["::1"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "private.example": ["10.0.0.1", "192.168.1.1", "127.0.0.1"],
    "zero.example": ["0.0.0.0"],
}
# Without the guard these reach the receiver (measured with aiohttp on Linux).
REACHABLE_WITHOUT_GUARD = [
    "127.0.0.1", "0x7f.0.0.1", "0x7f000001", "１２７.０.０.１", "0.0.0.0", "[::1]",
    "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "localhost", "loopback.example", "mapped.example",
    "zero.example",
]
PUBLIC_HOST = "127.0.0.2"  # plays a public host: allow-listed where it is needed
ALLOW_PUBLIC_HOST = ("127.0.0.2/32",)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The test settings allow private targets (local receivers); these tests need the guard.
    return {"allow_private_targets": False}


def answer(host: str, address: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return {"hostname": host, "host": address, "port": port, "family": family, "proto": 0,
            "flags": socket.AI_NUMERICHOST}


class ScriptedResolver(AbstractResolver):
    """Answers names from a script (one answer per lookup, the last repeating) and counts
    lookups; other names go to the system's resolver."""

    def __init__(self, script: dict[str, list[list[str]]] | None = None) -> None:
        self.script = script or {name: [addrs] for name, addrs in RESOLVED.items()}
        self.lookups: list[str] = []
        self._system = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        answers = self.script.get(host)
        if answers is None:
            return await self._system.resolve(host, port, family)
        addresses = answers[min(self.lookups.count(host), len(answers)) - 1]
        return [answer(host, a, port) for a in addresses]

    async def close(self) -> None:
        await self._system.close()


def sender(resolver: AbstractResolver | None = None, **policy: Any) -> Sender:
    values: dict[str, Any] = {"allow_private": False, **policy}
    return Sender(connect_timeout=1.0, total_timeout=3.0, max_connections=10,
                  resolver=resolver, **values)


@contextlib.asynccontextmanager
async def server_at(
    host: str, respond: Responder | None = None, port: int = 0
) -> AsyncIterator[Receiver]:
    """A recording server on ``host`` (e.g. 127.0.0.2, or ::1)."""
    receiver = Receiver(respond=respond)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
            port = sock.getsockname()[1]
            receiver.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
            yield receiver
        finally:
            await runner.cleanup()


@contextlib.asynccontextmanager
async def receivers() -> AsyncIterator[tuple[Receiver, list[Receiver]]]:
    """The receiver on 127.0.0.1 and, where IPv6 works, one on ::1 at the same port."""
    async with running_receiver() as v4, contextlib.AsyncExitStack() as stack:
        every = [v4]
        with contextlib.suppress(OSError):
            every.append(await stack.enter_async_context(server_at("::1", port=port_of(v4))))
        yield v4, every


def port_of(receiver: Receiver) -> int:
    return int(receiver.url.rsplit(":", 1)[1])


def nothing_received(all_receivers: list[Receiver]) -> None:
    got = [(r.url, x.path) for r in all_receivers for x in r.received]
    assert got == [], f"hostile targets were reached: {got}"


# --- the sender: every outgoing request goes through it ------------------------------------

@pytest.mark.parametrize("host", HOSTILE_LITERALS + HOSTILE_NAMES + sorted(RESOLVED))
async def test_the_sender_reaches_no_hostile_target(host: str) -> None:
    async with receivers() as (receiver, every):
        resolver = ScriptedResolver()
        client = sender(resolver)
        url = f"http://{host}:{port_of(receiver)}/hook"
        try:
            result = await client.post(url, {"content-type": "application/json"}, b"{}")
            assert result.refused, result
            assert result.status_code is None
            assert result.error is not None and result.error.startswith("TargetRefused: ")
            assert "private" in result.error and "HOOKSTREAM_ALLOW_PRIVATE_TARGETS" in result.error
            # The OAuth2 token request goes the same way.
            with pytest.raises(TargetRefused):
                await client.post_form(url, {"grant_type": "client_credentials"}, ("id", "pw"))
        finally:
            await client.close()
        nothing_received(every)
        # A refused target fails at once: retrying cannot make it reachable.
        decision = RetryPolicy((0.2, 0.2)).decide(
            1, result.succeeded, time.time(), answer=Answer(None, refused=result.refused)
        )
        assert decision.verdict is Verdict.FAILED and "refused" in (decision.reason or "")


async def test_without_the_guard_these_targets_do_reach_the_receiver() -> None:
    # The control: HOOKSTREAM_ALLOW_PRIVATE_TARGETS=true lifts the guard, and these requests
    # arrive, so the refusals above are what kept them out.
    async with receivers() as (receiver, every):
        client = sender(ScriptedResolver(), allow_private=True)
        try:
            for host in REACHABLE_WITHOUT_GUARD:
                if host == "[::1]" and len(every) == 1:
                    continue  # no IPv6 loopback here
                result = await client.post(f"http://{host}:{port_of(receiver)}/", {}, b"{}")
                assert result.status_code == 204, (host, result)
        finally:
            await client.close()
        assert sum(len(r.received) for r in every) >= len(REACHABLE_WITHOUT_GUARD) - 1


async def test_a_redirect_to_a_private_address_is_not_followed() -> None:
    async with receivers() as (receiver, every):
        targets = [receiver.url + "/", "http://localhost:" + str(port_of(receiver)),
                   "http://169.254.169.254/latest/meta-data/"]
        for status in (301, 302, 303, 307, 308):
            for target in targets:
                async with server_at(PUBLIC_HOST, lambda *_, s=status, t=target: web.Response(
                        status=s, headers={"Location": t})) as public:
                    resolver = ScriptedResolver({"public.example": [[PUBLIC_HOST]]})
                    client = sender(resolver, allowed_networks=ALLOW_PUBLIC_HOST)
                    url = public.url.replace(PUBLIC_HOST, "public.example") + "/hook"
                    try:
                        result = await client.post(url, {}, b"{}")
                    finally:
                        await client.close()
                    assert result.status_code == status and not result.succeeded
                    assert len(public.received) == 1
        nothing_received(every)


async def test_dns_rebinding_fails_the_connection_goes_to_the_checked_address() -> None:
    # The first lookup answers the allowed "public" host, every later one 127.0.0.1: a
    # second lookup between check and connect would reach the receiver.
    close = {"Connection": "close"}  # no pooled connection: each request connects anew
    async with receivers() as (receiver, every), server_at(
        PUBLIC_HOST, lambda *_: web.Response(status=204, headers=close)
    ) as public:
        port = port_of(public)
        resolver = ScriptedResolver({"rebind.example": [[PUBLIC_HOST], ["127.0.0.1"]]})
        client = sender(resolver, allowed_networks=ALLOW_PUBLIC_HOST)
        url = f"http://rebind.example:{port}/hook"
        try:
            first = await client.post(url, {}, b"{}")
            assert first.status_code == 204
            assert resolver.lookups == ["rebind.example"]  # one lookup for one connection
            assert len(public.received) == 1
            # The answer is cached for a few seconds; once it expires the next lookup is
            # checked again, and its answer now is refused.
            client.clear_dns_cache()
            second = await client.post(url, {}, b"{}")
            assert second.refused and second.error and "127.0.0.1" in second.error
            assert resolver.lookups == ["rebind.example"] * 2
        finally:
            await client.close()
        assert len(public.received) == 1
        nothing_received(every)


async def test_a_public_first_answer_is_the_only_lookup_of_the_connection() -> None:
    # A public address at check time, 127.0.0.1 after it: the connection is attempted to
    # the public address (unreachable here or not) and never looked up again.
    async with receivers() as (receiver, every):
        resolver = ScriptedResolver({"rebind.example": [["93.184.216.34"], ["127.0.0.1"]]})
        client = Sender(allow_private=False, connect_timeout=0.5, total_timeout=1.0,
                        max_connections=2, resolver=resolver)
        try:
            result = await client.post(f"http://rebind.example:{port_of(receiver)}/", {}, b"{}")
        finally:
            await client.close()
        assert not result.refused
        assert resolver.lookups == ["rebind.example"]
        nothing_received(every)


async def test_a_mixed_answer_connects_only_to_allowed_addresses() -> None:
    async with receivers() as (receiver, every), server_at(PUBLIC_HOST) as public:
        port = port_of(public)
        resolver = ScriptedResolver({"mixed.example": [["127.0.0.1", "::1", PUBLIC_HOST]]})
        client = sender(resolver, allowed_networks=ALLOW_PUBLIC_HOST)
        try:
            result = await client.post(f"http://mixed.example:{port}/", {}, b"{}")
        finally:
            await client.close()
        assert result.status_code == 204
        assert len(public.received) == 1
        nothing_received(every)


async def test_an_allowed_network_lifts_exactly_itself() -> None:
    async with receivers() as (receiver, every), server_at(PUBLIC_HOST) as public:
        client = sender(allowed_networks=ALLOW_PUBLIC_HOST)
        try:
            assert (await client.post(public.url, {}, b"{}")).status_code == 204
            for host in ("127.0.0.1", "127.0.0.3", "[::ffff:127.0.0.1]", "localhost"):
                result = await client.post(f"http://{host}:{port_of(receiver)}/", {}, b"{}")
                assert result.refused, host
        finally:
            await client.close()
        nothing_received(every)


async def test_https_only_refuses_plain_http() -> None:
    async with server_at(PUBLIC_HOST) as public:
        client = sender(allow_private=True, https_only=True)
        try:
            result = await client.post(public.url, {}, b"{}")
            with pytest.raises(TargetRefused, match="HOOKSTREAM_HTTPS_ONLY"):
                await client.post_form(public.url, {}, ("id", "pw"))
        finally:
            await client.close()
        assert result.refused and result.error and "HOOKSTREAM_HTTPS_ONLY" in result.error
        assert public.received == []


# --- the service: refused when created, or failed at delivery after one attempt -----------

async def test_ip_literal_targets_are_refused_when_created(org: Org) -> None:
    async with receivers() as (receiver, every):
        port = port_of(receiver)
        for host in HOSTILE_LITERALS:
            url = f"http://{host}:{port}"
            resp = await org.api.post("/api/v1/connectors", json={
                "name": "x", "baseUrl": url, "routes": ROUTES})
            assert resp.status_code == 422, (host, resp.text)
            error = resp.json()["error"]
            assert error["code"] == "validation_error"
            assert error["details"][0]["field"] == "baseUrl"
            assert "private" in error["details"][0]["message"], host
        # Names are judged when resolved, at delivery.
        for host in HOSTILE_NAMES:
            resp = await org.api.post("/api/v1/connectors", json={
                "name": "x", "baseUrl": f"http://{host}:{port}", "routes": ROUTES})
            assert resp.status_code == 201, resp.text
        con = await org.connector("https://hooks.example.com")
        patched = await org.api.patch(f"/api/v1/connectors/{con['id']}",
                                      json={"baseUrl": "http://169.254.169.254/"})
        assert patched.status_code == 422
        assert patched.json()["error"]["details"][0]["field"] == "baseUrl"
        oauth2 = {"type": "oauth2_client_credentials", "tokenUrl": f"http://[::1]:{port}/token",
                  "clientId": "id", "clientSecret": "secret"}
        for resp in (
            await org.api.post("/api/v1/connectors", json={
                "name": "x", "baseUrl": "https://hooks.example.com", "routes": ROUTES,
                "authentication": oauth2}),
            await org.api.patch(f"/api/v1/connectors/{con['id']}",
                                json={"authentication": oauth2}),
            await org.api.put("/api/v1/alerts", json={
                "url": "https://alerts.example.com", "authentication": oauth2}),
        ):
            assert resp.status_code == 422, resp.text
            assert resp.json()["error"]["details"][0]["field"] == "authentication.tokenUrl"
        resp = await org.api.put("/api/v1/alerts", json={"url": f"http://0x7f.1:{port}/"})
        assert resp.status_code == 422
        assert resp.json()["error"]["details"] == [{"field": "url", "message": (
            "0x7f.1 (127.0.0.1) is a loopback address; outgoing requests may not reach private "
            "or reserved addresses (set HOOKSTREAM_ALLOW_PRIVATE_TARGETS=true, or list the "
            "network in HOOKSTREAM_ALLOWED_TARGET_NETWORKS, to allow it)")}]
        nothing_received(every)


async def test_hostile_targets_fail_at_delivery_after_one_attempt(
    org: Org, settings: Settings
) -> None:
    # Connectors made while the deployment allowed private targets, delivered after it
    # stopped: every one of them fails at once, none is retried, nothing arrives.
    async with receivers() as (receiver, every):
        port = port_of(receiver)
        permissive = settings.model_copy(update={"allow_private_targets": True})
        expected: dict[str, str] = {}
        async with running_service(permissive, worker=False) as before:
            api = before.org_client(org.api_key)
            try:
                for host in HOSTILE_LITERALS + HOSTILE_NAMES:
                    resp = await api.post("/api/v1/connectors", json={
                        "name": host, "baseUrl": f"http://{host}:{port}", "routes": ROUTES,
                        "active": True})
                    assert resp.status_code == 201, resp.text
                    expected[resp.json()["id"]] = host
                # A hostile token URL stops the webhook before it is sent.
                resp = await api.post("/api/v1/connectors", json={
                    "name": "oauth2", "baseUrl": receiver.url, "routes": ROUTES, "active": True,
                    "authentication": {"type": "oauth2_client_credentials",
                                       "tokenUrl": f"http://localhost:{port}/token",
                                       "clientId": "id", "clientSecret": "secret"}})
                assert resp.status_code == 201, resp.text
                expected[resp.json()["id"]] = "tokenUrl localhost"
            finally:
                await api.aclose()
        for connector_id in expected:
            await org.trigger(connector_id, ["values"])
        gw = await org.gateway()
        resp = await org.ingest(gw["ingestToken"], "values", {
            "deviceId": "d1", "property": "t", "timestamp": 1_700_000_000_000, "payload": 1})
        assert resp.status_code == 202, resp.text

        async def all_failed() -> bool:
            dels = await org.deliveries()
            return len(dels) == len(expected) and all(d["status"] == "failed" for d in dels)

        await eventually(all_failed)
        await asyncio.sleep(0.8)  # several retry delays (0.2 s): nothing is attempted again
        for d in await org.deliveries():
            host = expected[d["connectorId"]]
            assert d["status"] == "failed" and d["attemptCount"] == 1, (host, d)
            assert "resolves only to refused addresses" in d["lastError"] or (
                "TargetRefused" in d["lastError"]), host
            assert "private" in d["lastError"] and "not retried" in d["lastError"], host
            full = (await org.api.get(f"/api/v1/deliveries/{d['id']}")).json()
            assert len(full["attempts"]) == 1, host
            assert full["attempts"][0]["statusCode"] is None
        nothing_received(every)


@pytest.mark.parametrize("settings_overrides", [
    {"allow_private_targets": False, "allowed_target_networks": ALLOW_PUBLIC_HOST}
])
async def test_the_service_does_not_follow_redirects_and_allows_only_the_listed_network(
    org: Org,
) -> None:
    async with receivers() as (receiver, every), server_at(
        PUBLIC_HOST, lambda *_: web.Response(status=302, headers={"Location": receiver.url})
    ) as public:
        refused = await org.api.post("/api/v1/connectors", json={
            "name": "x", "baseUrl": receiver.url, "routes": ROUTES})
        assert refused.status_code == 422
        con = await org.connector(public.url)
        await org.trigger(con["id"], ["values"])
        gw = await org.gateway()
        await org.ingest(gw["ingestToken"], "values", {
            "deviceId": "d1", "property": "t", "timestamp": 1_700_000_000_000, "payload": 1})

        async def gave_up() -> bool:
            return [d["status"] for d in await org.deliveries()] == ["failed"]

        await eventually(gave_up)
        (d,) = await org.deliveries()
        assert d["lastStatusCode"] == 302 and d["attemptCount"] == 4  # 1 + 3 retries
        assert len(public.received) == 4
        nothing_received(every)


@pytest.mark.parametrize("settings_overrides", [
    {"allow_private_targets": True, "https_only": True}
])
async def test_https_only_refuses_http_targets_when_created(org: Org) -> None:
    for path, body, field in (
        ("/api/v1/connectors", {"name": "x", "baseUrl": "http://hooks.example.com",
                                "routes": ROUTES}, "baseUrl"),
        ("/api/v1/alerts", {"url": "http://alerts.example.com"}, "url"),
        ("/api/v1/connectors", {"name": "x", "baseUrl": "https://hooks.example.com",
                                "routes": ROUTES,
                                "authentication": {"type": "oauth2_client_credentials",
                                                   "tokenUrl": "http://auth.example.com/t",
                                                   "clientId": "i", "clientSecret": "s"}},
         "authentication.tokenUrl"),
    ):
        send = org.api.put if path == "/api/v1/alerts" else org.api.post
        resp = await send(path, json=body)
        assert resp.status_code == 422, resp.text
        detail = resp.json()["error"]["details"][0]
        assert detail["field"] == field and "HOOKSTREAM_HTTPS_ONLY" in detail["message"]
    await org.connector("https://hooks.example.com")
    app = await new_app(org)
    plant_id, _ = await plant_with_module(org)
    resp = await app.post(f"/smarther/v2.0/plants/{plant_id}/subscription",
                          {"EndPointUrl": "http://hooks.example.com/x"})
    assert resp.status_code == 400
    assert "HOOKSTREAM_HTTPS_ONLY" in resp.json()["message"]


async def test_subscription_endpoints_are_guarded(org: Org) -> None:
    app = await new_app(org)
    plant_id, _ = await plant_with_module(org)
    async with receivers() as (receiver, every):
        port = port_of(receiver)
        for host in ("127.0.0.1", "[::ffff:127.0.0.1]", "2130706433", "169.254.169.254"):
            resp = await app.post(f"/smarther/v2.0/plants/{plant_id}/subscription",
                                  {"EndPointUrl": f"http://{host}:{port}/hook"})
            assert resp.status_code == 400, resp.text
            body = resp.json()
            assert set(body) == {"statusCode", "message"} and body["statusCode"] == 400
            assert body["message"].startswith("EndPointUrl: ") and "private" in body["message"]
        # A name is refused by the validation request, which goes through the guard.
        resp = await app.post(f"/smarther/v2.0/plants/{plant_id}/subscription",
                              {"EndPointUrl": f"http://localhost:{port}/hook"})
        assert resp.status_code == 400
        assert "TargetRefused" in resp.json()["message"]
        nothing_received(every)
    assert (await app.get("/smarther/v2.0/subscription")).status_code == 204


# --- settings -------------------------------------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in list(os.environ):
        if name.upper().startswith("HOOKSTREAM_"):
            monkeypatch.delenv(name)
    yield monkeypatch


async def test_allowed_networks_and_https_only_from_the_environment(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("HOOKSTREAM_ALLOWED_TARGET_NETWORKS", "10.1.0.0/16, fd00:1::/64,192.0.2.7")
    clean_env.setenv("HOOKSTREAM_HTTPS_ONLY", "true")
    s = load_settings(_env_file=None)
    assert [str(n) for n in s.allowed_target_networks] == [
        "10.1.0.0/16", "fd00:1::/64", "192.0.2.7/32"]
    assert s.https_only is True
    client = Sender.from_settings(s, max_connections=1)
    await client.close()
    assert client.policy.allowed_networks == s.allowed_target_networks
    assert client.policy.https_only and not client.policy.allow_private


def test_defaults_allow_no_network_and_plain_http(clean_env: pytest.MonkeyPatch) -> None:
    s = load_settings(_env_file=None)
    assert s.allowed_target_networks == () and s.https_only is False


@pytest.mark.parametrize("raw", ["10.0.0.1/8", "nope", "10.0.0.0/33", "10.0.0.0/8;fd00::/8"])
def test_a_bad_network_is_a_clear_settings_error(
    clean_env: pytest.MonkeyPatch, raw: str
) -> None:
    clean_env.setenv("HOOKSTREAM_ALLOWED_TARGET_NETWORKS", raw)
    with pytest.raises(ConfigurationError, match="HOOKSTREAM_ALLOWED_TARGET_NETWORKS.*CIDR"):
        load_settings(_env_file=None)

