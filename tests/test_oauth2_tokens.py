"""OAuth2 client-credentials tokens against a real local token endpoint (no database)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import pytest
from aiohttp import web

from hookstream.errors import DeliveryError
from hookstream.metrics import status_class
from hookstream.pipeline.deliver.attempt import attempt
from hookstream.pipeline.deliver.client import Sender
from hookstream.pipeline.deliver.oauth2 import TokenCache, TokenError
from hookstream.pipeline.deliver.retry import RetryPolicy
from hookstream.pipeline.deliver.webhook import Endpoint
from tests.support import free_port, free_socket


@dataclass
class TokenRequest:
    form: dict[str, str]
    authorization: str
    content_type: str


Answer = Callable[[int], Awaitable[web.Response]]


async def issue(n: int, expires_in: float | None = 3600) -> web.Response:
    body: dict[str, Any] = {"access_token": f"tok-{n}", "token_type": "Bearer"}
    if expires_in is not None:
        body["expires_in"] = expires_in
    return web.json_response(body)


@dataclass
class TokenEndpoint:
    """A token endpoint on a free port; ``answer(n)`` answers the n-th request (1-based)."""

    answer: Answer
    url: str = ""
    requests: list[TokenRequest] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append(TokenRequest(
            form, request.headers.get("Authorization", ""), request.content_type
        ))
        return await self.answer(len(self.requests))


@dataclass
class Harness:
    endpoint: TokenEndpoint
    sender: Sender

    @property
    def url(self) -> str:
        return self.endpoint.url

    def auth(self, **overrides: Any) -> dict[str, Any]:
        auth = {"type": "oauth2_client_credentials", "tokenUrl": self.url,
                "clientId": "client-1", "clientSecret": "s3cret", "scope": "ingest"}
        auth.update(overrides)
        return auth


def new_sender() -> Sender:
    return Sender(allow_private=True, connect_timeout=2.0, total_timeout=5.0, max_connections=50)


@contextlib.asynccontextmanager
async def token_endpoint(answer: Answer = issue) -> AsyncIterator[Harness]:
    endpoint = TokenEndpoint(answer)
    app = web.Application()
    app.router.add_post("/token", endpoint.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    sock = free_socket()
    await web.SockSite(runner, sock).start()
    endpoint.url = f"http://127.0.0.1:{sock.getsockname()[1]}/token"
    sender = new_sender()
    try:
        yield Harness(endpoint, sender)
    finally:
        await sender.close()
        await runner.cleanup()
        sock.close()


# --- caching ----------------------------------------------------------------------------

async def test_token_is_cached_while_it_is_valid() -> None:
    async with token_endpoint() as h:
        cache = TokenCache(h.sender, refresh_margin=30.0)
        values = [await cache.token("con_1", h.auth()) for _ in range(10)]
        assert values == ["tok-1"] * 10
        assert len(h.endpoint.requests) == 1
        assert cache.fetches == 1


async def test_token_is_fetched_again_margin_seconds_before_it_expires() -> None:
    # Valid for 2 s, refreshed 1.6 s early: usable for 0.4 s.
    async def answer(n: int) -> web.Response:
        return await issue(n, expires_in=2)

    async with token_endpoint(answer) as h:
        cache = TokenCache(h.sender, refresh_margin=1.6)
        assert await cache.token("con_1", h.auth()) == "tok-1"
        assert await cache.token("con_1", h.auth()) == "tok-1"
        assert len(h.endpoint.requests) == 1
        await asyncio.sleep(0.6)  # deliberate interval: the token's 0.4 s of use runs out
        assert await cache.token("con_1", h.auth()) == "tok-2"
        assert await cache.token("con_1", h.auth()) == "tok-2"
        assert len(h.endpoint.requests) == 2


async def test_a_margin_longer_than_the_lifetime_fetches_every_time() -> None:
    async def answer(n: int) -> web.Response:
        return await issue(n, expires_in=10)

    async with token_endpoint(answer) as h:
        cache = TokenCache(h.sender, refresh_margin=30.0)
        values = [await cache.token("con_1", h.auth()) for _ in range(3)]
        assert values == ["tok-1", "tok-2", "tok-3"]


async def test_without_expires_in_the_token_is_kept_for_an_hour() -> None:
    async def answer(n: int) -> web.Response:
        return await issue(n, expires_in=None)

    async with token_endpoint(answer) as h:
        cache = TokenCache(h.sender, refresh_margin=3500.0)  # 100 s left of the default hour
        assert [await cache.token("con_1", h.auth()) for _ in range(3)] == ["tok-1"] * 3


async def test_concurrent_requests_fetch_one_token() -> None:
    async def slow(n: int) -> web.Response:
        # The first fetch is still on its way while the other 19 ask.
        await asyncio.sleep(0.2)  # pacing: a slow token endpoint
        return await issue(n)

    async with token_endpoint(slow) as h:
        cache = TokenCache(h.sender)
        values = await asyncio.gather(*(cache.token("con_1", h.auth()) for _ in range(20)))
        assert values == ["tok-1"] * 20
        assert len(h.endpoint.requests) == 1
        assert cache.fetches == 1


async def test_each_endpoint_and_credential_has_its_own_token() -> None:
    async with token_endpoint() as h:
        cache = TokenCache(h.sender)
        assert await cache.token("con_1", h.auth()) == "tok-1"
        assert await cache.token("con_2", h.auth()) == "tok-2"
        # A changed secret (e.g. PATCHed authentication) is not served the old token.
        assert await cache.token("con_1", h.auth(clientSecret="n3w")) == "tok-3"
        assert await cache.token("con_1", h.auth()) == "tok-1"
        assert len(h.endpoint.requests) == 3


# --- invalidation after a 401 -----------------------------------------------------------

async def test_invalidating_the_current_token_fetches_one_new_token() -> None:
    async with token_endpoint() as h:
        cache = TokenCache(h.sender)
        first = await cache.token("con_1", h.auth())
        cache.invalidate("con_1", h.auth(), first)
        values = await asyncio.gather(*(cache.token("con_1", h.auth()) for _ in range(10)))
        assert values == ["tok-2"] * 10
        assert len(h.endpoint.requests) == 2


async def test_invalidating_a_stale_token_keeps_the_newer_one() -> None:
    async with token_endpoint() as h:
        cache = TokenCache(h.sender)
        auth = h.auth()
        stale = await cache.token("con_1", auth)
        cache.invalidate("con_1", auth, stale)
        fresh = await cache.token("con_1", auth)
        assert fresh == "tok-2"
        # Another delivery that got its 401 with the old token reports it late.
        cache.invalidate("con_1", auth, stale)
        cache.invalidate("con_1", auth, "never-issued")
        cache.invalidate("con_other", auth, fresh)
        assert await cache.token("con_1", auth) == fresh
        assert len(h.endpoint.requests) == 2


# --- token endpoint failures ------------------------------------------------------------

@pytest.mark.parametrize("status", [400, 401, 302, 500, 503])
async def test_a_non_2xx_answer_is_a_token_error(status: int) -> None:
    async def refuse(_: int) -> web.Response:
        return web.json_response({"error": "invalid_client"}, status=status,
                                 headers={"Location": "/elsewhere"})

    async with token_endpoint(refuse) as h:
        cache = TokenCache(h.sender)
        with pytest.raises(TokenError) as raised:
            await cache.token("con_1", h.auth())
        assert str(status) in str(raised.value)
        assert "invalid_client" in str(raised.value)


async def test_a_non_json_answer_is_a_token_error() -> None:
    async def html(_: int) -> web.Response:
        return web.Response(text="<html>sign in</html>", content_type="text/html")

    async with token_endpoint(html) as h:
        with pytest.raises(TokenError, match="access_token"):
            await TokenCache(h.sender).token("con_1", h.auth())


@pytest.mark.parametrize("body", [
    {"token_type": "Bearer", "expires_in": 3600},
    {"access_token": "", "expires_in": 3600},
    {"access_token": 12345},
    {"access_token": None},
    ["access_token"],
    "access_token",
])
async def test_an_answer_without_a_usable_access_token_is_a_token_error(body: Any) -> None:
    async def answer(_: int) -> web.Response:
        return web.json_response(body)

    async with token_endpoint(answer) as h:
        with pytest.raises(TokenError, match="access_token"):
            await TokenCache(h.sender).token("con_1", h.auth())


async def test_an_expires_in_that_is_not_a_number_is_a_token_error() -> None:
    async def answer(_: int) -> web.Response:
        return web.json_response({"access_token": "t", "expires_in": "soon"})

    async with token_endpoint(answer) as h:
        with pytest.raises(TokenError, match="expires_in"):
            await TokenCache(h.sender).token("con_1", h.auth())


async def test_a_failure_is_not_cached() -> None:
    async def flaky(n: int) -> web.Response:
        if n == 1:
            return web.json_response({"error": "temporarily_unavailable"}, status=503)
        return await issue(n)

    async with token_endpoint(flaky) as h:
        cache = TokenCache(h.sender)
        with pytest.raises(TokenError):
            await cache.token("con_1", h.auth())
        assert await cache.token("con_1", h.auth()) == "tok-2"


async def test_an_unreachable_token_endpoint_is_a_delivery_error() -> None:
    sender = new_sender()
    try:
        cache = TokenCache(sender)
        auth = {"type": "oauth2_client_credentials", "clientId": "c", "clientSecret": "s",
                "tokenUrl": f"http://127.0.0.1:{free_port()}/token"}
        with pytest.raises(DeliveryError, match="connect"):
            await cache.token("con_1", auth)
    finally:
        await sender.close()


async def test_a_token_request_that_times_out_is_a_timed_out_attempt() -> None:
    """The attempt's error names the token request, yet the attempt counts as a timeout (and
    a POST that times out is one too)."""
    async def hang(n: int) -> web.Response:
        await asyncio.sleep(5)
        return await issue(n)

    async with token_endpoint(hang) as h:
        sender = Sender(allow_private=True, connect_timeout=2.0, total_timeout=0.3,
                        max_connections=5)
        endpoint = Endpoint(id="con_1", base_url=h.url, routes={"values": ""},
                            signing_key=b"k" * 32, policy=RetryPolicy(()), auth=h.auth())
        try:
            result = await attempt(sender, endpoint, "values", "msg_1", b"{}")
            plain = await sender.post(h.url, {}, b"{}")  # the POST itself, no OAuth2
        finally:
            await sender.close()
    assert plain.error is not None and plain.error.startswith("TimeoutError: ")
    assert plain.timed_out and not plain.refused and plain.status_code is None
    assert result.error is not None and result.error.startswith("OAuth2 token request failed")
    assert result.timed_out and not result.refused and result.status_code is None
    assert status_class(result.status_code, timed_out=result.timed_out,
                        refused=result.refused) == "timeout"


# --- what the token request carries -----------------------------------------------------

def basic_credentials(header: str) -> tuple[str, str]:
    """Client id and secret from an Authorization header, decoded as RFC 6749 2.3.1 says."""
    scheme, _, encoded = header.partition(" ")
    assert scheme == "Basic"
    user, sep, password = base64.b64decode(encoded).decode().partition(":")
    assert sep == ":"
    return unquote_plus(user), unquote_plus(password)


async def test_credentials_go_as_http_basic_and_grant_in_the_form() -> None:
    async with token_endpoint() as h:
        await TokenCache(h.sender).token("con_1", h.auth(scope="read write"))
        (request,) = h.endpoint.requests
        assert request.content_type == "application/x-www-form-urlencoded"
        assert request.form == {"grant_type": "client_credentials", "scope": "read write"}
        assert basic_credentials(request.authorization) == ("client-1", "s3cret")


async def test_no_scope_sends_only_the_grant_type() -> None:
    async with token_endpoint() as h:
        auth = h.auth()
        del auth["scope"]
        await TokenCache(h.sender).token("con_1", auth)
        await TokenCache(h.sender).token("con_2", h.auth(scope=None))
        assert [r.form for r in h.endpoint.requests] == [{"grant_type": "client_credentials"}] * 2


@pytest.mark.parametrize(("client_id", "client_secret"), [
    ("urn:client:1", "s3cret"),
    ("my client", "pass word"),
    ("id+plus%pct", "sec:ret+/=&?"),
    ("clïent-é", "sécret-ü"),
])
async def test_credentials_are_form_encoded_before_basic(client_id: str,
                                                         client_secret: str) -> None:
    async with token_endpoint() as h:
        await TokenCache(h.sender).token("con_1", h.auth(clientId=client_id,
                                                         clientSecret=client_secret))
        (request,) = h.endpoint.requests
        raw = base64.b64decode(request.authorization.removeprefix("Basic ")).decode()
        # A ':' in the client id is escaped, so the first ':' separates id and secret.
        assert raw.count(":") == 1
        assert " " not in raw
        assert basic_credentials(request.authorization) == (client_id, client_secret)
        assert "client_id" not in request.form and "client_secret" not in request.form
