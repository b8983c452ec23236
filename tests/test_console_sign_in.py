"""Console sign-in as a browser does it: the form, CSRF, cookies, sessions, throttling."""

from __future__ import annotations

from typing import Any

import pytest

from hookstream.ids import hash_key, now_ms
from hookstream.storage.repository import Repository
from tests.console_support import (
    PASSWORD,
    browser,
    csrf_of,
    make_user,
    origin,
    set_cookie,
    sign_in,
)
from tests.support import Org, Service

CSP = ("default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; "
       "form-action 'self'")


def assert_page_headers(headers: Any) -> None:
    assert headers["content-security-policy"] == CSP
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cache-control"] == "no-store"


async def test_the_form_has_a_csrf_token_in_a_strict_cookie(service: Service) -> None:
    async with browser(service) as web:
        page = await web.get("/console/sign-in")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert_page_headers(page.headers)
    assert '<meta name="viewport"' in page.text
    token = csrf_of(page.text)
    cookie = set_cookie(page, "hookstream_csrf")
    assert cookie is not None and cookie.startswith(f"hookstream_csrf={token};")
    flags = cookie.lower()
    assert "httponly" in flags and "samesite=strict" in flags and "secure" not in flags


async def test_signing_in_sets_a_session_cookie_and_shows_the_home_page(
    service: Service, org: Org
) -> None:
    await make_user(service, org.id, "ana@acme.example")
    async with browser(service) as web:
        done = await sign_in(web, "Ana@Acme.example ")  # case and spaces do not matter
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/console"
        cookie = set_cookie(done, "hookstream_session")
        assert cookie is not None
        flags = [part.strip().lower() for part in cookie.split(";")]
        assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
        assert f"max-age={service.settings.console_session_seconds}" in flags
        assert "secure" not in flags  # plain http, console_secure_cookies unset

        raw = web.cookies["hookstream_session"]
        async with service.runtime.db.read() as conn:
            row = await Repository(conn).console_session_by_hash(hash_key(raw), now_ms())
        assert row is not None and row.email == "ana@acme.example"

        home = await web.get("/console")
        assert home.status_code == 200
        assert_page_headers(home.headers)
        assert "Signed in as <strong>ana@acme.example</strong>" in home.text
        assert org.id in home.text


async def test_the_session_is_stored_only_as_a_hash(service: Service, org: Org) -> None:
    await make_user(service, org.id, "hash@acme.example")
    async with browser(service) as web:
        await sign_in(web, "hash@acme.example")
        raw = web.cookies["hookstream_session"]
    async with service.runtime.db.read() as conn:
        assert await Repository(conn).console_session_by_hash(raw, now_ms()) is None


async def test_wrong_password_and_unknown_email_get_the_same_answer(
    service: Service, org: Org
) -> None:
    await make_user(service, org.id, "bo@acme.example")
    async with browser(service) as web:
        wrong = await sign_in(web, "bo@acme.example", "not the password")
        unknown = await sign_in(web, "nobody@acme.example", PASSWORD)
    for page, email in ((wrong, "bo@acme.example"), (unknown, "nobody@acme.example")):
        assert page.status_code == 400
        assert "Wrong email or password." in page.text
        assert 'id="password-error"' in page.text and 'aria-invalid="true"' in page.text
        assert f'value="{email}"' in page.text  # the email is kept
        assert set_cookie(page, "hookstream_session") is None
        assert_page_headers(page.headers)


async def test_a_disabled_user_cannot_sign_in(service: Service, org: Org) -> None:
    await make_user(service, org.id, "gone@acme.example", disabled=True)
    async with browser(service) as web:
        page = await sign_in(web, "gone@acme.example")
    assert page.status_code == 400 and "Wrong email or password." in page.text


async def test_a_post_without_the_csrf_pair_is_refused(service: Service, org: Org) -> None:
    await make_user(service, org.id, "cy@acme.example")
    async with browser(service) as web:
        page = await web.get("/console/sign-in")
        token = csrf_of(page.text)
        form = {"email": "cy@acme.example", "password": PASSWORD}
        missing = await web.post("/console/sign-in", data=form)
        wrong = await web.post("/console/sign-in", data={**form, "csrf_token": "x" * 43})
        web.cookies.delete("hookstream_csrf")
        no_cookie = await web.post("/console/sign-in", data={**form, "csrf_token": token})
        not_a_form = await web.post("/console/sign-in", json={**form, "csrf_token": token})
    for refused in (missing, wrong, no_cookie, not_a_form):
        assert refused.status_code == 403
        assert "expired" in refused.text and "Reload" in refused.text
        assert set_cookie(refused, "hookstream_session") is None
        assert_page_headers(refused.headers)


async def test_another_sites_origin_is_refused(service: Service, org: Org) -> None:
    await make_user(service, org.id, "di@acme.example")
    async with browser(service) as web:
        page = await web.get("/console/sign-in")
        form = {"email": "di@acme.example", "password": PASSWORD,
                "csrf_token": csrf_of(page.text)}
        foreign = await web.post("/console/sign-in", data=form,
                                 headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403 and "another site" in foreign.text
        assert set_cookie(foreign, "hookstream_session") is None
        null = await web.post("/console/sign-in", data=form, headers={"Origin": "null"})
        assert null.status_code == 403
        ours = await web.post("/console/sign-in", data=form,
                              headers={"Origin": origin(service)})
        assert ours.status_code == 303


@pytest.mark.parametrize(("next_path", "lands"), [
    ("/oauth2/authorize?client_id=x&state=1", "/oauth2/authorize?client_id=x&state=1"),
    ("/console", "/console"),
    ("//evil.example", "/console"),
    ("//evil.example/console", "/console"),
    ("/\\evil.example", "/console"),
    ("https://evil.example/", "/console"),
    ("javascript:alert(1)", "/console"),
    ("/\t/evil.example", "/console"),
    ("console", "/console"),
])
async def test_next_only_leads_to_a_local_path(
    service: Service, org: Org, next_path: str, lands: str
) -> None:
    email = f"next{abs(hash(next_path))}@acme.example"
    await make_user(service, org.id, email)
    async with browser(service) as web:
        done = await sign_in(web, email, next_path=next_path)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == lands


async def test_a_signed_in_visit_to_the_form_goes_on(service: Service, org: Org) -> None:
    await make_user(service, org.id, "el@acme.example")
    async with browser(service) as web:
        await sign_in(web, "el@acme.example")
        again = await web.get("/console/sign-in", params={"next": "//evil.example"})
    assert again.status_code == 303 and again.headers["location"] == "/console"


async def test_the_home_page_needs_a_session(service: Service) -> None:
    async with browser(service) as web:
        bare = await web.get("/console")
        web.cookies.set("hookstream_session", "A" * 43)
        forged = await web.get("/console")
    for page in (bare, forged):
        assert page.status_code == 303
        assert page.headers["location"] == "/console/sign-in?next=%2Fconsole"


async def test_five_failures_throttle_the_email(service: Service, org: Org) -> None:
    await make_user(service, org.id, "fy@acme.example")
    await make_user(service, org.id, "gus@acme.example")
    async with browser(service) as web:
        for _ in range(5):
            assert (await sign_in(web, "fy@acme.example", "wrong password")).status_code == 400
        throttled = await sign_in(web, "FY@acme.example")  # even with the right password
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["retry-after"]) <= 15 * 60
        assert "Too many failed sign-ins" in throttled.text
        assert set_cookie(throttled, "hookstream_session") is None
        # Another email is not affected.
        assert (await sign_in(web, "gus@acme.example")).status_code == 303


async def test_sign_out_needs_the_session_csrf_token(service: Service, org: Org) -> None:
    await make_user(service, org.id, "hal@acme.example")
    async with browser(service) as web:
        await sign_in(web, "hal@acme.example")
        home = await web.get("/console")
        token = csrf_of(home.text)
        raw = web.cookies["hookstream_session"]

        refused = await web.post("/console/sign-out", data={"csrf_token": "nope"})
        assert refused.status_code == 403
        assert (await web.get("/console")).status_code == 200  # still signed in
        foreign = await web.post("/console/sign-out", data={"csrf_token": token},
                                 headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403

        done = await web.post("/console/sign-out", data={"csrf_token": token},
                              headers={"Origin": origin(service)})
        assert done.status_code == 303 and done.headers["location"] == "/console/sign-in"
        cleared = set_cookie(done, "hookstream_session")
        assert cleared is not None and "max-age=0" in cleared.lower()
        assert (await web.get("/console")).status_code == 303
    async with service.runtime.db.read() as conn:
        assert await Repository(conn).console_session_by_hash(hash_key(raw), now_ms()) is None


@pytest.mark.parametrize("settings_overrides", [{"console_secure_cookies": True}])
async def test_cookies_are_secure_when_configured(service: Service, org: Org) -> None:
    await make_user(service, org.id, "ivy@acme.example")
    async with browser(service) as web:
        page = await web.get("/console/sign-in")
        assert "secure" in (set_cookie(page, "hookstream_csrf") or "").lower()
        # httpx (rightly) keeps a Secure cookie off plain http: send it by hand.
        token = csrf_of(page.text)
        done = await web.post(
            "/console/sign-in",
            data={"email": "ivy@acme.example", "password": PASSWORD, "csrf_token": token},
            headers={"Cookie": f"hookstream_csrf={token}"},
        )
    assert done.status_code == 303
    assert "secure" in [p.strip().lower() for p in (set_cookie(done, "hookstream_session")
                                                    or "").split(";")]


async def test_cookies_are_secure_behind_an_https_proxy(service: Service, org: Org) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1 (its default forwarded_allow_ips).
    await make_user(service, org.id, "jo@acme.example")
    https = {"X-Forwarded-Proto": "https"}
    async with browser(service) as web:
        page = await web.get("/console/sign-in", headers=https)
        assert "secure" in (set_cookie(page, "hookstream_csrf") or "").lower()
        token = csrf_of(page.text)
        done = await web.post(
            "/console/sign-in",
            data={"email": "jo@acme.example", "password": PASSWORD, "csrf_token": token},
            headers={**https, "Cookie": f"hookstream_csrf={token}",
                     "Origin": origin(service).replace("http://", "https://")},
        )
    assert done.status_code == 303, done.text
    assert "secure" in (set_cookie(done, "hookstream_session") or "").lower()


async def test_console_pages_are_not_in_the_openapi_schema(service: Service) -> None:
    paths = (await service.client.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith("/console")]
