"""The OAuth2 authorization server, driven as a third-party app and a browser drive it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy.engine import make_url

from hookstream.ids import hash_key, now_ms
from hookstream.storage.repository import Repository
from hookstream.thermostat.oauth.bearer import AccessToken, access_token
from tests.console_support import (
    REDIRECT,
    Client,
    browser,
    csrf_of,
    form_action,
    location_params,
    make_client,
    make_user,
    origin,
    pkce_pair,
    sign_in,
)
from tests.support import Org, Service

BOTH = "comfort.read comfort.write"


def authorize_path(client: Client, *, scope: str | None = BOTH, state: str = "st-123",
                   challenge: str | None = None, **extra: str) -> str:
    params: dict[str, str] = {"response_type": "code", "client_id": client.id,
                              "redirect_uri": client.redirect_uris[0], "state": state}
    if scope is not None:
        params["scope"] = scope
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    params.update(extra)
    return "/oauth2/authorize?" + urlencode(params)


async def consent_page(web: httpx.AsyncClient, path: str) -> httpx.Response:
    page = await web.get(path)
    assert page.status_code == 200, page.text
    return page


async def decide(service: Service, web: httpx.AsyncClient, page: httpx.Response,
                 decision: str = "allow") -> httpx.Response:
    """Press Allow or Deny on the consent page."""
    return await web.post(
        form_action(page.text), data={"csrf_token": csrf_of(page.text), "decision": decision},
        headers={"Origin": origin(service)},
    )


async def get_code(service: Service, web: httpx.AsyncClient, client: Client, **kw: Any) -> str:
    """Authorize ``client`` (the browser is signed in) and return the code."""
    page = await consent_page(web, authorize_path(client, **kw))
    answer = await decide(service, web, page)
    assert answer.status_code in (302, 303), answer.text
    assert answer.headers["location"].startswith(client.redirect_uris[0] + "?")
    params = location_params(answer)
    assert params["state"] == kw.get("state", "st-123")
    return params["code"]


async def exchange(service: Service, client: Client, code: str, *,
                   verifier: str | None = None, basic: bool = True,
                   **extra: str) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": client.redirect_uris[0]}
    if verifier is not None:
        form["code_verifier"] = verifier
    return await _token_request(service, client, form, basic=basic, **extra)


async def refresh(service: Service, client: Client, refresh_token: str,
                  scope: str | None = None) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if scope is not None:
        form["scope"] = scope
    return await _token_request(service, client, form)


async def _token_request(service: Service, client: Client, form: dict[str, str], *,
                         basic: bool = True, **extra: str) -> httpx.Response:
    form = {**form, **extra}
    auth = None
    if client.secret is None:
        form["client_id"] = client.id
    elif basic:
        auth = httpx.BasicAuth(client.id, client.secret)
    else:
        form.update(client_id=client.id, client_secret=client.secret)
    return await service.client.post("/oauth2/token", data=form, auth=auth)


async def live(service: Service, raw: str, at: int | None = None) -> AccessToken | None:
    return await access_token(service.runtime.db, raw, now_ms() if at is None else at)


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error, body
    assert set(body) <= {"error", "error_description", "error_uri"}


@pytest.fixture
async def signed_in(service: Service, org: Org) -> Any:
    await make_user(service, org.id, "owner@acme.example")
    async with browser(service) as web:
        assert (await sign_in(web, "owner@acme.example")).status_code == 303
        yield web


# --- the code grant -----------------------------------------------------------------------

async def test_a_public_client_gets_tokens_with_pkce(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=True, name="Cosy Home")
    verifier, challenge = pkce_pair()
    page = await consent_page(signed_in, authorize_path(client, challenge=challenge))
    assert "Cosy Home" in page.text and "Acme" in page.text
    assert "read your thermostats&#39; state" in page.text
    assert "change your thermostats&#39; settings" in page.text
    assert "Signed in as owner@acme.example" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    # Chrome checks form-action against the redirect that follows the post as well.
    assert page.headers["content-security-policy"].endswith(
        "form-action 'self' https://app.example"
    )

    answer = await decide(service, signed_in, page)
    assert answer.status_code == 303
    params = location_params(answer)
    assert set(params) == {"code", "state"} and params["state"] == "st-123"

    done = await exchange(service, client, params["code"], verifier=verifier)
    assert done.status_code == 200, done.text
    assert done.headers["cache-control"] == "no-store"
    body = done.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == service.settings.oauth_access_token_seconds
    assert body["scope"] == BOTH
    assert body["access_token"].startswith("hsat_")
    assert body["refresh_token"].startswith("hsrt_")

    token = await live(service, body["access_token"])
    assert token is not None
    assert token.org_id == org.id and token.client_id == client.id
    assert token.scopes == frozenset({"comfort.read", "comfort.write"})
    async with service.runtime.db.read() as conn:
        user = await Repository(conn).user_by_email("owner@acme.example")
    assert user is not None and token.user_id == user.id


async def test_tokens_and_codes_are_stored_only_as_hashes(
    service: Service, org: Org, signed_in: httpx.AsyncClient, backend: str
) -> None:
    client = await make_client(service, org.id, public=False)
    code = await get_code(service, signed_in, client)
    body = (await exchange(service, client, code)).json()
    async with service.runtime.db.read() as conn:
        repo = Repository(conn)
        assert await repo.oauth_code_by_hash(hash_key(code)) is not None
        assert await repo.oauth_code_by_hash(code) is None
        assert await repo.oauth_token_by_access_hash(body["access_token"]) is None
        assert await repo.oauth_token_by_refresh_hash(hash_key(body["refresh_token"]))
    if backend == "sqlite":
        path = Path(str(make_url(service.settings.database_url).database))
        stored = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        for secret in (code, body["access_token"], body["refresh_token"], client.secret):
            assert secret is not None and secret.encode() not in stored


async def test_no_scope_means_comfort_read(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=False)
    page = await consent_page(signed_in, authorize_path(client, scope=None))
    assert "read your thermostats" in page.text and "change your" not in page.text
    code = await get_code(service, signed_in, client, scope=None)
    body = (await exchange(service, client, code)).json()
    assert body["scope"] == "comfort.read"


async def test_a_wrong_verifier_is_refused_and_a_code_works_once(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=True)
    verifier, challenge = pkce_pair()
    code = await get_code(service, signed_in, client, challenge=challenge)

    wrong = await exchange(service, client, code, verifier=pkce_pair()[0])
    assert_oauth_error(wrong, 400, "invalid_grant")
    missing = await exchange(service, client, code)
    assert_oauth_error(missing, 400, "invalid_request")

    first = await exchange(service, client, code, verifier=verifier)
    assert first.status_code == 200, first.text
    tokens = first.json()
    assert await live(service, tokens["access_token"]) is not None

    again = await exchange(service, client, code, verifier=verifier)
    assert_oauth_error(again, 400, "invalid_grant")
    # A code presented again revokes what it gave (RFC 6749 4.1.2).
    assert await live(service, tokens["access_token"]) is None
    assert_oauth_error(await refresh(service, client, tokens["refresh_token"]), 400,
                       "invalid_grant")


async def test_public_clients_must_use_s256(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=True)
    _, challenge = pkce_pair()
    for path in (
        authorize_path(client),
        authorize_path(client, code_challenge=challenge),  # no method: plain
        authorize_path(client, code_challenge=challenge, code_challenge_method="plain"),
    ):
        answer = await signed_in.get(path)
        assert answer.status_code == 302, answer.text
        assert answer.headers["location"].startswith(REDIRECT + "?")
        params = location_params(answer)
        assert params["error"] == "invalid_request" and params["state"] == "st-123"
        assert "code" not in params


async def test_a_confidential_client_authenticates_with_basic_or_post(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=False)
    basic = await exchange(service, client, await get_code(service, signed_in, client))
    assert basic.status_code == 200, basic.text
    post = await exchange(service, client, await get_code(service, signed_in, client),
                          basic=False)
    assert post.status_code == 200, post.text

    code = await get_code(service, signed_in, client)
    wrong = Client(client.id, "hscs_wrong", client.redirect_uris)
    assert_oauth_error(await exchange(service, wrong, code), 401, "invalid_client")
    assert_oauth_error(await exchange(service, wrong, code, basic=False), 401,
                       "invalid_client")
    no_secret = await service.client.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "client_id": client.id,
    })
    assert_oauth_error(no_secret, 401, "invalid_client")
    # The failures did not spend the code.
    assert (await exchange(service, client, code)).status_code == 200


async def test_a_confidential_client_that_sent_a_challenge_must_verify_it(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=False)
    verifier, challenge = pkce_pair()
    code = await get_code(service, signed_in, client, challenge=challenge)
    assert_oauth_error(await exchange(service, client, code), 400, "invalid_request")
    assert_oauth_error(await exchange(service, client, code, verifier=pkce_pair()[0]), 400,
                       "invalid_grant")
    assert (await exchange(service, client, code, verifier=verifier)).status_code == 200


async def test_a_code_is_bound_to_its_client_and_redirect_uri(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=False,
                               redirect_uris=[REDIRECT, "https://app.example/other"])
    other = await make_client(service, org.id, public=False)
    code = await get_code(service, signed_in, client)
    assert_oauth_error(await exchange(service, other, code), 400, "invalid_grant")
    assert_oauth_error(
        await exchange(service, client, code, redirect_uri="https://app.example/other"),
        400, "invalid_grant",
    )
    assert (await exchange(service, client, code)).status_code == 200


async def test_deny_sends_access_denied(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=False)
    page = await consent_page(signed_in, authorize_path(client))
    answer = await decide(service, signed_in, page, "deny")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(REDIRECT + "?")
    params = location_params(answer)
    assert params["error"] == "access_denied" and params["state"] == "st-123"
    assert "code" not in params


# --- the authorization endpoint's checks -------------------------------------------------

async def test_signing_in_first_then_coming_back(service: Service, org: Org) -> None:
    await make_user(service, org.id, "later@acme.example")
    client = await make_client(service, org.id, public=False)
    path = authorize_path(client)
    async with browser(service) as web:
        first = await web.get(path)
        assert first.status_code == 303
        location = first.headers["location"]
        assert location.startswith("/console/sign-in?next=")
        signed = await sign_in(web, "later@acme.example",
                               next_path=httpx.URL(location).params["next"])
        assert signed.status_code == 303 and signed.headers["location"] == path
        page = await consent_page(web, signed.headers["location"])
        assert "Comfort App" in page.text


async def test_bad_client_or_redirect_uri_shows_a_page_and_never_redirects(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=False)
    unknown = Client("cli_nosuchclient", None, [REDIRECT])
    evil = Client(client.id, None, ["https://evil.example/cb"])
    for web in (signed_in, service.client):
        for path in (
            authorize_path(unknown),
            authorize_path(evil),
            "/oauth2/authorize?response_type=code&state=x",
            "/oauth2/authorize?response_type=code&client_id=%00",
            authorize_path(client) + "&client_id=" + client.id,  # repeated
            # Characters Authlib will not put in an error description.
            authorize_path(Client(client.id, None, ['https://app.example/cb"\\'])),
            authorize_path(client, response_type='code"\\'),
        ):
            page = await web.get(path)
            assert page.status_code == 400, (path, page.text)
            assert "location" not in page.headers
            assert page.headers["content-type"].startswith("text/html")
            assert "evil.example" not in page.headers.get("content-security-policy", "")


async def test_other_errors_go_back_to_the_client(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=False)
    for path, error in (
        (authorize_path(client, scope="comfort.read admin"), "invalid_scope"),
        (authorize_path(client, response_type="token"), "unsupported_response_type"),
    ):
        answer = await signed_in.get(path)
        assert answer.status_code == 302, answer.text
        params = location_params(answer)
        assert params["error"] == error and params["state"] == "st-123"


async def test_another_organizations_user_sees_an_unknown_client(
    service: Service, org: Org
) -> None:
    client = await make_client(service, org.id, public=False, name="Acme Only App")
    other = await service.new_org("Other Co")
    await make_user(service, other.id, "eve@other.example")
    async with browser(service) as web:
        await sign_in(web, "eve@other.example")
        theirs = await web.get(authorize_path(client))
        nobody = await web.get(authorize_path(Client("cli_0000000000000000000000000", None,
                                                     [REDIRECT])))
        assert theirs.status_code == nobody.status_code == 400
        assert theirs.text == nobody.text
        assert "Unknown app" in theirs.text and "Acme Only App" not in theirs.text
        # Posting the consent form anyway does not help.
        token = csrf_of((await web.get("/console")).text)
        forced = await web.post(authorize_path(client),
                                data={"csrf_token": token, "decision": "allow"},
                                headers={"Origin": origin(service)})
        assert forced.status_code == 400 and "location" not in forced.headers
    await other.api.aclose()


async def test_the_consent_post_needs_csrf_and_our_origin(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=False)
    page = await consent_page(signed_in, authorize_path(client))
    action, token = form_action(page.text), csrf_of(page.text)
    for data, headers in (
        ({"decision": "allow"}, {}),
        ({"decision": "allow", "csrf_token": "forged"}, {}),
        ({"decision": "allow", "csrf_token": token}, {"Origin": "https://evil.example"}),
    ):
        refused = await signed_in.post(action, data=data, headers=headers)
        assert refused.status_code == 403, refused.text
        assert "location" not in refused.headers
        assert refused.headers["content-type"].startswith("text/html")
    # Signed out, the post leads to the sign-in page, not to a code.
    async with browser(service) as stranger:
        answer = await stranger.post(action, data={"csrf_token": token, "decision": "allow"})
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/sign-in?next=")


# --- refresh, expiry, revocation ---------------------------------------------------------

async def tokens_for(service: Service, client: Client, web: httpx.AsyncClient,
                     scope: str = BOTH) -> dict[str, Any]:
    response = await exchange(service, client, await get_code(service, web, client,
                                                               scope=scope))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_refresh_rotates_and_reuse_revokes_the_family(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=False)
    first = await tokens_for(service, client, signed_in)

    second_response = await refresh(service, client, first["refresh_token"])
    assert second_response.status_code == 200, second_response.text
    assert second_response.headers["cache-control"] == "no-store"
    second = second_response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["scope"] == BOTH
    assert await live(service, second["access_token"]) is not None

    third = (await refresh(service, client, second["refresh_token"])).json()
    assert await live(service, third["access_token"]) is not None

    # The first refresh token again: a thief or a replay. Refused, and the grant is gone.
    reused = await refresh(service, client, first["refresh_token"])
    assert_oauth_error(reused, 400, "invalid_grant")
    for token in (first, second, third):
        assert await live(service, token["access_token"]) is None
    assert_oauth_error(await refresh(service, client, third["refresh_token"]), 400,
                       "invalid_grant")


async def test_a_refresh_token_belongs_to_its_client(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=False)
    other = await make_client(service, org.id, public=True)
    tokens = await tokens_for(service, client, signed_in)
    assert_oauth_error(await refresh(service, other, tokens["refresh_token"]), 400,
                       "invalid_grant")
    assert (await refresh(service, client, tokens["refresh_token"])).status_code == 200


async def test_a_refresh_may_narrow_the_scope_never_widen_it(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=False)
    tokens = await tokens_for(service, client, signed_in)
    narrowed = await refresh(service, client, tokens["refresh_token"], "comfort.read")
    assert narrowed.status_code == 200, narrowed.text
    body = narrowed.json()
    assert body["scope"] == "comfort.read"
    token = await live(service, body["access_token"])
    assert token is not None and token.scopes == frozenset({"comfort.read"})

    widened = await refresh(service, client, body["refresh_token"], BOTH)
    assert_oauth_error(widened, 400, "invalid_scope")
    unknown = await refresh(service, client, body["refresh_token"], "comfort.read admin")
    assert_oauth_error(unknown, 400, "invalid_scope")
    # Refusals do not spend the refresh token.
    assert (await refresh(service, client, body["refresh_token"])).json()["scope"] == \
        "comfort.read"

    read_only = await tokens_for(service, client, signed_in, scope="comfort.read")
    assert_oauth_error(await refresh(service, client, read_only["refresh_token"],
                                     "comfort.write"), 400, "invalid_scope")


async def test_an_expired_access_token_is_not_accepted(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=False)
    tokens = await tokens_for(service, client, signed_in)
    lifetime_ms = service.settings.oauth_access_token_seconds * 1000
    assert await live(service, tokens["access_token"], now_ms() + lifetime_ms - 5000)
    assert await live(service, tokens["access_token"], now_ms() + lifetime_ms + 1) is None
    assert await live(service, "hsat_unknown") is None
    assert await live(service, "") is None
    assert await live(service, tokens["refresh_token"]) is None


@pytest.mark.parametrize("settings_overrides",
                         [{"oauth_access_token_seconds": 1, "oauth_code_seconds": 1}])
async def test_short_lifetimes_from_the_settings(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=False)
    tokens = await tokens_for(service, client, signed_in)
    assert tokens["expires_in"] == 1
    late_code = await get_code(service, signed_in, client)
    await asyncio.sleep(1.1)  # deliberate interval: the 1 s token and code lifetimes run out
    assert await live(service, tokens["access_token"]) is None
    assert_oauth_error(await exchange(service, client, late_code), 400, "invalid_grant")
    # The refresh token lives on and gives a fresh access token.
    fresh = await refresh(service, client, tokens["refresh_token"])
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["expires_in"] == 1


async def test_revocation(service: Service, org: Org, signed_in: httpx.AsyncClient) -> None:
    client = await make_client(service, org.id, public=False)
    auth = httpx.BasicAuth(client.id, client.secret or "")

    tokens = await tokens_for(service, client, signed_in)
    done = await service.client.post("/oauth2/revoke", auth=auth, data={
        "token": tokens["refresh_token"], "token_type_hint": "refresh_token"})
    assert done.status_code == 200, done.text
    assert await live(service, tokens["access_token"]) is None
    assert_oauth_error(await refresh(service, client, tokens["refresh_token"]), 400,
                       "invalid_grant")

    tokens = await tokens_for(service, client, signed_in)
    by_access = await service.client.post("/oauth2/revoke", auth=auth,
                                          data={"token": tokens["access_token"]})
    assert by_access.status_code == 200
    assert await live(service, tokens["access_token"]) is None
    assert_oauth_error(await refresh(service, client, tokens["refresh_token"]), 400,
                       "invalid_grant")

    # RFC 7009 2.2: an unknown (or already revoked) token is answered 200 all the same.
    for token in ("hsat_unknown", tokens["access_token"]):
        again = await service.client.post("/oauth2/revoke", auth=auth, data={"token": token})
        assert again.status_code == 200

    assert_oauth_error(await service.client.post("/oauth2/revoke", data={"token": "x"}),
                       401, "invalid_client")
    assert_oauth_error(await service.client.post("/oauth2/revoke", auth=auth, data={}), 400,
                       "invalid_request")
    assert_oauth_error(
        await service.client.post("/oauth2/revoke", auth=auth,
                                  data={"token": "x", "token_type_hint": "id_token"}),
        400, "unsupported_token_type",
    )


async def test_a_public_client_revokes_with_its_client_id(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=True)
    verifier, challenge = pkce_pair()
    code = await get_code(service, signed_in, client, challenge=challenge)
    tokens = (await exchange(service, client, code, verifier=verifier)).json()
    done = await service.client.post("/oauth2/revoke", data={
        "token": tokens["access_token"], "client_id": client.id})
    assert done.status_code == 200
    assert await live(service, tokens["access_token"]) is None


# --- bad input never gets a 500 ----------------------------------------------------------

@pytest.mark.parametrize(("content", "content_type", "status", "error"), [
    (b"", "application/x-www-form-urlencoded", 400, "unsupported_grant_type"),
    (b"grant_type=password&username=a&password=b", None, 400, "unsupported_grant_type"),
    (b'{"grant_type": "authorization_code"}', "application/json", 400, "invalid_request"),
    (b"grant_type=authorization_code", "text/plain", 400, "invalid_request"),
    (b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n--x--",
     "multipart/form-data; boundary=x", 400, "invalid_request"),
    (b"grant_type=authorization_code&code=%00&client_id=cli_x", None, 400, "invalid_request"),
    (b"grant_type=authorization_code&code=%ff%fe", None, 400, "invalid_request"),
    (b"grant_type=authorization_code\xff", None, 400, "invalid_request"),
    (b"grant_type=authorization_code&grant_type=refresh_token", None, 400, "invalid_request"),
    (b"grant_type=%22%5C", None, 400, "unsupported_grant_type"),
    (b"grant_type=authorization_code&client_id=%00", None, 400, "invalid_request"),
    (b"grant_type=authorization_code&client_id=nosuch", None, 400, "invalid_client"),
    (b"grant_type=refresh_token&client_id=nosuch&refresh_token=x", None, 400,
     "invalid_client"),
    (b"&&&===&", None, 400, "unsupported_grant_type"),
    (b"a=" + b"x" * 70_000, None, 400, "invalid_request"),
])
async def test_token_endpoint_garbage_gets_rfc_errors(
    service: Service, content: bytes, content_type: str | None, status: int, error: str
) -> None:
    headers = {"Content-Type": content_type or "application/x-www-form-urlencoded"}
    response = await service.client.post("/oauth2/token", content=content, headers=headers)
    assert_oauth_error(response, status, error)
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("authorization", [
    "Basic !!!not-base64!!!",
    "Basic " + "//79/w==",  # bytes that are not UTF-8
    "Basic ÿÿÿÿ",
    "Basic " + "YQ==",  # "a": no colon, no secret
    "Basic " + "Y2xpX25vc3VjaDpzZWNyZXQ=",  # unknown client
    "Basic " + "JTAwOnNlY3JldA==",  # "%00:secret"
])
async def test_token_endpoint_bad_basic_credentials(
    service: Service, org: Org, authorization: str
) -> None:
    response = await service.client.post(
        "/oauth2/token", data={"grant_type": "authorization_code", "code": "x"},
        headers={"Authorization": authorization.encode("latin-1")},
    )
    assert response.status_code in (400, 401), response.text
    assert response.json()["error"] == "invalid_client"


async def test_token_endpoint_missing_fields(
    service: Service, org: Org, signed_in: httpx.AsyncClient
) -> None:
    client = await make_client(service, org.id, public=False)
    auth = httpx.BasicAuth(client.id, client.secret or "")
    for form, error in (
        ({"grant_type": "authorization_code"}, "invalid_request"),
        ({"grant_type": "authorization_code", "code": "nope"}, "invalid_grant"),
        ({"grant_type": "authorization_code", "code": "\x00"}, "invalid_request"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "nope"}, "invalid_grant"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
    ):
        response = await service.client.post("/oauth2/token", data=form, auth=auth)
        assert_oauth_error(response, 400, error)
    wrong_method = await service.client.get("/oauth2/token")
    assert_oauth_error(wrong_method, 405, "invalid_request")


async def test_oauth2_endpoints_are_in_the_openapi_schema(service: Service) -> None:
    paths = (await service.client.get("/openapi.json")).json()["paths"]
    assert paths["/oauth2/token"]["post"]["tags"] == ["oauth2"]
    assert "application/x-www-form-urlencoded" in \
        paths["/oauth2/token"]["post"]["requestBody"]["content"]
    assert paths["/oauth2/revoke"]["post"]["tags"] == ["oauth2"]
    assert paths["/oauth2/authorize"]["get"]["tags"] == ["oauth2"]
