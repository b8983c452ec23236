"""The console's pages without a browser: every page, CSRF, isolation, errors next to fields,
secrets shown once, health, and the console user of a fresh local trial."""

from __future__ import annotations

import html
import os
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from hookstream.services.runtime import Runtime
from hookstream.services.users import LOCAL_EMAIL, ensure_local_user
from hookstream.settings import Settings
from tests.console_support import browser, csrf_of, make_user, origin, sign_in
from tests.support import (
    Org,
    Received,
    Receiver,
    Service,
    base_settings,
    eventually,
    free_port,
    hookstream_cmd,
    running_receiver,
    spawn,
    wait_ready_sync,
)

CSP = ("default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; "
       "form-action 'self'")
PAGES = ["/console", "/console/gateways", "/console/connectors", "/console/connectors/new",
         "/console/messages", "/console/deliveries", "/console/plants", "/console/developers",
         "/console/audit"]
SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"  # base64 of 24 bytes


class Console:
    """A signed-in browser (httpx) of one organization's console user."""

    def __init__(self, service: Service, web_: httpx.AsyncClient, email: str) -> None:
        self.service = service
        self.web = web_
        self.email = email
        self.token = ""

    async def get(self, path: str, **params: Any) -> httpx.Response:
        page = await self.web.get(path, params=params or None)
        if page.status_code == 200:
            self.token = csrf_of(page.text)
        return page

    async def post(self, path: str, data: dict[str, Any] | None = None, *,
                   token: str | None = None) -> httpx.Response:
        """Post a form as our own pages do: our Origin and the session's CSRF token."""
        if not self.token:
            await self.get("/console")
        form = {"csrf_token": self.token if token is None else token, **(data or {})}
        if token == "":
            form.pop("csrf_token")
        return await self.web.post(path, data=form, headers={"Origin": origin(self.service)})


@pytest.fixture
async def console(service: Service, org: Org) -> AsyncIterator[Console]:
    email = "ana@acme.example"
    await make_user(service, org.id, email)
    async with browser(service) as web_:
        assert (await sign_in(web_, email)).status_code == 303
        yield Console(service, web_, email)


def field_error(page: str, name: str) -> str:
    """The error shown under field ``name`` ('' when there is none)."""
    match = re.search(rf'<p class="field-error" id="{re.escape(name.replace(".", "-"))}-error">'
                      r"([^<]*)</p>", page)
    return html.unescape(match.group(1)) if match else ""


def input_value(page: str, name: str) -> str | None:
    match = re.search(rf'name="{re.escape(name)}" type="[^"]*"\s+value="([^"]*)"', page)
    return html.unescape(match.group(1)) if match else None


def secret_shown(page: str) -> str:
    match = re.search(r'<code id="secret-value">([^<]*)</code>', page)
    assert match, page
    return html.unescape(match.group(1))


async def add_connector(console: Console, base_url: str, name: str = "My server",
                        **fields: str) -> tuple[str, str]:
    """Add a connector through the form: (its id, its secret)."""
    form = {"name": name, "baseUrl": base_url, "routes.values": "/values",
            "routes.events": "/events", "routes.alarms": "/alarms",
            "authentication.type": "none", **fields}
    page = await console.post("/console/connectors/new", form)
    assert page.status_code == 200, page.text
    match = re.search(r"<dt>Connector id</dt><dd><code>(con_[0-9a-z]+)</code>", page.text)
    assert match, page.text
    return match.group(1), secret_shown(page.text)


# --- every page ------------------------------------------------------------------------------

async def test_every_page_of_a_new_organization_says_what_to_do(console: Console) -> None:
    for path in PAGES:
        page = await console.get(path)
        assert page.status_code == 200, (path, page.text)
        assert page.headers["content-security-policy"] == CSP
        assert page.headers["cache-control"] == "no-store"
        assert f"Signed in as <strong>{console.email}</strong>" in page.text
        assert '<script src="/console/static/console.js?v=' in page.text
        assert "<script>" not in page.text and " onclick=" not in page.text  # CSP: no inline
    empty = {
        "/console": ["Getting started", "No gateways yet", "No connectors yet"],
        "/console/gateways": ["No gateways yet"],
        "/console/connectors": ["No connectors yet", "Add a connector"],
        "/console/messages": ["No messages yet"],
        "/console/deliveries": ["No deliveries yet"],
        "/console/plants": ["No plants yet"],
        "/console/developers": ["No OAuth2 clients yet", "No subscription keys yet"],
        "/console/audit": ["No changes yet"],
    }
    for path, texts in empty.items():
        page = await console.get(path)
        for text in texts:
            assert text in page.text, (path, text)


async def test_static_files_have_their_types(console: Console) -> None:
    css = await console.web.get("/console/static/console.css")
    js = await console.web.get("/console/static/console.js")
    assert css.status_code == js.status_code == 200
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert js.headers["x-content-type-options"] == "nosniff"
    assert (await console.web.get("/console/static/..%2Fpages.py")).status_code == 404
    assert (await console.web.get("/console/static/other.js")).status_code == 404


async def test_pages_need_a_session(service: Service, org: Org) -> None:
    async with browser(service) as web_:
        for path in PAGES:
            page = await web_.get(path)
            assert page.status_code == 303, path
            assert page.headers["location"].startswith("/console/sign-in?next=%2Fconsole")
        listed = await web_.get("/console/deliveries", params={"status": "failed"})
        assert listed.headers["location"] == (
            "/console/sign-in?next=%2Fconsole%2Fdeliveries%3Fstatus%3Dfailed")
        # A form posted without a session (it ended) changes nothing and asks to sign in,
        # then goes back to the page the form was on.
        posted = await web_.post("/console/gateways", data={"name": "x"}, headers={
            "Referer": f"{service.base_url}/console/gateways?done=x"})
        assert posted.status_code == 303
        assert posted.headers["location"] == (
            "/console/sign-in?next=%2Fconsole%2Fgateways%3Fdone%3Dx")
        foreign = await web_.post("/console/gateways", data={"name": "x"}, headers={
            "Referer": "https://evil.example/console/gateways"})
        assert foreign.headers["location"] == "/console/sign-in?next=%2Fconsole"
    assert (await org.api.get("/api/v1/gateways")).json()["items"] == []


# --- CSRF ---------------------------------------------------------------------------------------

async def test_a_form_posted_without_its_csrf_token_is_refused_and_changes_nothing(
    console: Console, org: Org, receiver: Receiver
) -> None:
    gateway = await org.gateway("Tower 1")
    connector = await org.connector(receiver.url, active=False)
    cid = connector["id"]
    forms: list[tuple[str, dict[str, str]]] = [
        ("/console/gateways", {"name": "Sneaky"}),
        (f"/console/gateways/{gateway['id']}/rotate-token", {}),
        (f"/console/gateways/{gateway['id']}/delete", {}),
        ("/console/connectors/new", {"name": "Sneaky", "baseUrl": receiver.url,
                                     "authentication.type": "none"}),
        (f"/console/connectors/{cid}/active", {"active": "true"}),
        (f"/console/connectors/{cid}/triggers", {"kinds": "values", "allGateways": "on"}),
        (f"/console/connectors/{cid}/rotate-secret", {}),
        (f"/console/connectors/{cid}/delete", {}),
        ("/console/plants", {"name": "Sneaky"}),
        ("/console/developers/keys", {"name": "Sneaky"}),
    ]
    before = (await org.api.get("/api/v1/audit-events")).json()["items"]
    for path, data in forms:
        for token in ("", "x" * 43):
            refused = await console.post(path, data, token=token)
            assert refused.status_code == 403, (path, refused.text)
            assert "This form cannot be used" in refused.text
            assert refused.headers["content-security-policy"] == CSP
        # The right token from another site is refused too.
        foreign = await console.web.post(path, data={**data, "csrf_token": console.token},
                                         headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403, path
        # Not a form at all: no token can be read.
        as_json = await console.web.post(path, json={**data, "csrf_token": console.token},
                                         headers={"Origin": origin(console.service)})
        assert as_json.status_code == 403, path
    assert (await org.api.get("/api/v1/audit-events")).json()["items"] == before
    assert [g["name"] for g in (await org.api.get("/api/v1/gateways")).json()["items"]] == [
        "Tower 1"]
    got = (await org.api.get(f"/api/v1/connectors/{cid}")).json()
    assert got["active"] is False and got["secretRotation"] is None
    assert (await org.api.get(f"/api/v1/connectors/{cid}/triggers")).json()["items"] == []
    assert (await org.api.get("/api/v1/plants")).json()["items"] == []
    # With the token, the same form works.
    assert (await console.post(f"/console/connectors/{cid}/active",
                               {"active": "true", "back": "list"})).status_code == 303
    assert (await org.api.get(f"/api/v1/connectors/{cid}")).json()["active"] is True


# --- isolation -----------------------------------------------------------------------------------

async def test_another_organizations_things_never_appear(
    service: Service, console: Console, org: Org, receiver: Receiver
) -> None:
    other = await service.new_org("Globex")
    try:
        theirs_gw = await other.gateway("Globex Tower")
        theirs = await other.connector(receiver.url, name="Globex receiver")
        await other.trigger(theirs["id"], ["values"])
        sent = await other.ingest(theirs_gw["ingestToken"], "values", {
            "deviceId": "globex-device", "property": "t", "timestamp": 1, "payload": 1})
        assert sent.status_code == 202
        await receiver.wait_for(1)
        (their_delivery,) = await other.deliveries()
        await other.api.post("/api/v1/plants", json={"name": "Globex plant"})
        await other.api.post("/api/v1/subscription-keys", json={"name": "Globex key"})

        ours_gw = await org.gateway("Acme Tower")
        ours = await org.connector(receiver.url, name="Acme receiver")
        secrets = [theirs_gw["id"], theirs["id"], their_delivery["id"], "Globex",
                   "globex-device", sent.json()["ids"][0]]
        for path in PAGES:
            page = await console.get(path)
            assert page.status_code == 200
            for secret in secrets:
                assert secret not in page.text, (path, secret)
        page = await console.get(f"/console/connectors/{ours['id']}")
        assert ours_gw["id"] in page.text and theirs_gw["id"] not in page.text
        # Filters naming their ids find nothing of theirs.
        filtered = await console.get("/console/deliveries", connectorId=theirs["id"])
        assert their_delivery["id"] not in filtered.text
        filtered = await console.get("/console/messages", gatewayId=theirs_gw["id"])
        assert "globex-device" not in filtered.text

        # Their ids in URLs are unknown ids: 404 pages, and nothing changes.
        for path in (f"/console/connectors/{theirs['id']}",
                     f"/console/deliveries/{their_delivery['id']}"):
            page = await console.get(path)
            assert page.status_code == 404 and "Not found" in page.text, path
            assert "Globex" not in page.text
        posts: list[tuple[str, dict[str, str]]] = [
            (f"/console/connectors/{theirs['id']}/active", {"active": "false"}),
            (f"/console/connectors/{theirs['id']}/triggers",
             {"kinds": "values", "allGateways": "on"}),
            (f"/console/connectors/{theirs['id']}/test", {"kind": "values"}),
            (f"/console/connectors/{theirs['id']}/rotate-secret", {}),
            (f"/console/connectors/{theirs['id']}/replay", {"since": "2020-01-01T00:00"}),
            (f"/console/connectors/{theirs['id']}/delete", {}),
            (f"/console/deliveries/{their_delivery['id']}/replay", {}),
            (f"/console/deliveries/{their_delivery['id']}/cancel", {}),
            (f"/console/gateways/{theirs_gw['id']}/rotate-token", {}),
            (f"/console/gateways/{theirs_gw['id']}/delete", {}),
        ]
        for path, data in posts:
            await console.get("/console")
            refused = await console.post(path, data)
            assert refused.status_code == 404, (path, refused.text)
        # A trigger of ours cannot name their gateway: refused next to the gateway list.
        await console.get(f"/console/connectors/{ours['id']}")
        page = await console.post(f"/console/connectors/{ours['id']}/triggers",
                                  {"kinds": "values", "gatewayIds": theirs_gw["id"]})
        assert page.status_code == 422
        assert "unknown gateway" in field_error(page.text, "gatewayIds").lower()
        assert (await org.api.get(f"/api/v1/connectors/{ours['id']}/triggers")).json()[
            "items"] == []

        got = (await other.api.get(f"/api/v1/connectors/{theirs['id']}")).json()
        assert got["active"] is True and got["secretRotation"] is None
        assert len(await other.deliveries()) == 1
        audit = (await other.api.get("/api/v1/audit-events")).json()["items"]
        assert not [e for e in audit if e["actor"].startswith("user:")]
        assert (await other.api.get(
            f"/api/v1/gateways/{theirs_gw['id']}")).status_code == 200
    finally:
        await other.api.aclose()


# --- errors next to the field ------------------------------------------------------------------

async def test_connector_form_errors_are_next_to_their_fields_and_values_are_kept(
    console: Console, org: Org
) -> None:
    page = await console.post("/console/connectors/new", {
        "name": "", "baseUrl": "ftp://files.example", "routes.values": "values",
        "routes.events": "/events", "routes.alarms": "", "secret": "not-a-secret",
        "authentication.type": "basic", "authentication.username": "",
        "authentication.password": "hunter2 hunter2", "authentication.token": "bearer-xyz",
    })
    assert page.status_code == 422
    text = page.text
    assert field_error(text, "name") == "Required."
    assert field_error(text, "baseUrl") == "Must be an http:// or https:// URL with a host."
    assert "starts with '/'" in field_error(text, "routes.values")
    assert "whsec_" in field_error(text, "secret")
    assert field_error(text, "authentication.username") == "Required."
    assert field_error(text, "routes.events") == ""
    assert 'aria-invalid="true" aria-describedby="baseUrl-error"' in text
    # What was typed is kept, except the secrets.
    assert input_value(text, "baseUrl") == "ftp://files.example"
    assert input_value(text, "routes.values") == "values"
    assert input_value(text, "routes.events") == "/events"
    assert '<option value="basic" selected>' in text
    for secret in ("hunter2", "not-a-secret", "bearer-xyz"):
        assert secret not in text
    assert (await org.api.get("/api/v1/connectors")).json()["items"] == []

    # Each authentication type's own fields.
    page = await console.post("/console/connectors/new", {
        "name": "Keyed", "baseUrl": "https://example.com", "authentication.type": "api_key",
        "authentication.header": "Content-Type", "authentication.value": "k",
    })
    assert page.status_code == 422
    assert "set by hookstream" in field_error(page.text, "authentication.header")
    page = await console.post("/console/connectors/new", {
        "name": "OAuth", "baseUrl": "https://example.com",
        "authentication.type": "oauth2_client_credentials",
        "authentication.tokenUrl": "mailto:x", "authentication.clientId": "id",
        "authentication.clientSecret": "s3cr3t-value",
    })
    assert page.status_code == 422
    assert field_error(page.text, "authentication.tokenUrl") == (
        "Must be an http:// or https:// URL with a host.")
    assert input_value(page.text, "authentication.clientId") == "id"
    assert "s3cr3t-value" not in page.text
    page = await console.post("/console/connectors/new", {
        "name": "Odd", "baseUrl": "https://example.com", "authentication.type": "kerberos"})
    assert page.status_code == 422 and field_error(page.text, "authentication.type")


@pytest.mark.parametrize("settings_overrides", [{"allow_private_targets": False}])
async def test_a_refused_target_is_named_under_the_base_url(console: Console) -> None:
    page = await console.post("/console/connectors/new", {
        "name": "Local", "baseUrl": "http://127.0.0.1:9000", "authentication.type": "none"})
    assert page.status_code == 422
    assert "HOOKSTREAM_ALLOW_PRIVATE_TARGETS" in field_error(page.text, "baseUrl")


async def test_trigger_replay_filter_and_module_errors_are_next_to_their_fields(
    console: Console, org: Org, receiver: Receiver
) -> None:
    connector = await org.connector(receiver.url)
    cid = connector["id"]
    await console.get(f"/console/connectors/{cid}")
    page = await console.post(f"/console/connectors/{cid}/triggers", {})
    assert page.status_code == 422
    assert field_error(page.text, "kinds") == "Pick at least one kind of message."
    assert field_error(page.text, "gatewayIds") == "Pick at least one gateway, or all gateways."
    assert "<details class=\"reveal\" open" in page.text  # the form stays open

    page = await console.post(f"/console/connectors/{cid}/replay", {"since": ""})
    assert page.status_code == 422 and field_error(page.text, "since").startswith("Required")
    page = await console.post(f"/console/connectors/{cid}/replay",
                              {"since": "yesterday", "until": "2026-01-01T00:00"})
    assert page.status_code == 422 and "RFC 3339" in field_error(page.text, "since")
    assert input_value(page.text, "until") == "2026-01-01T00:00"
    page = await console.post(f"/console/connectors/{cid}/replay",
                              {"since": "2026-01-01T00:00", "status": "lost"})
    assert page.status_code == 422 and field_error(page.text, "status")

    page = await console.get("/console/deliveries", since="soon", status="lost")
    assert page.status_code == 422
    assert field_error(page.text, "status").startswith("Not one of")
    page = await console.get("/console/deliveries", since="soon")
    assert "RFC 3339" in field_error(page.text, "since")
    page = await console.get("/console/messages", kind="gossip")
    assert page.status_code == 422 and field_error(page.text, "kind")
    page = await console.get("/console/messages", cursor="not-ours")
    assert page.status_code == 422 and "Invalid cursor." in page.text

    plant = (await org.api.post("/api/v1/plants", json={"name": "Home"})).json()
    gateway = await org.gateway()
    await console.get("/console/plants")
    page = await console.post(f"/console/plants/{plant['id']}/modules",
                              {"name": "Living room", "gatewayId": gateway["id"]})
    assert page.status_code == 422
    assert "required with the other" in field_error(page.text, "deviceId").lower()
    page = await console.post("/console/plants", {"name": ""})
    assert page.status_code == 422 and field_error(page.text, "name") == "Required."
    page = await console.post("/console/developers/clients", {
        "name": "App", "redirectUris": "https://ok.example/cb\nhttp://evil.example/cb"})
    assert page.status_code == 422 and "https://" in field_error(page.text, "redirectUris")
    assert "http://evil.example/cb" in page.text  # kept in the text area


# --- secrets shown once, the audit actor, health -------------------------------------------------

async def test_created_secrets_are_shown_once_and_changes_are_audited_as_the_user(
    console: Console, org: Org, receiver: Receiver
) -> None:
    cid, secret = await add_connector(console, receiver.url, secret=SECRET)
    assert secret == SECRET
    detail = await console.get(f"/console/connectors/{cid}")
    assert secret not in detail.text and "Off" in detail.text
    generated_id, generated = await add_connector(console, receiver.url, name="Generated")
    assert generated.startswith("whsec_") and generated != SECRET

    page = await console.post("/console/gateways", {"name": "Tower 9", "externalId": "TW-9"})
    assert page.status_code == 200 and "shown this once" in page.text
    token = secret_shown(page.text)
    gateways = (await org.api.get("/api/v1/gateways")).json()["items"]
    assert [(g["name"], g["externalId"]) for g in gateways] == [("Tower 9", "TW-9")]
    assert token not in (await console.get("/console/gateways")).text
    sent = await org.ingest(token, "values", {"deviceId": "d", "property": "p", "timestamp": 1,
                                              "payload": 1})
    assert sent.status_code == 202
    rotated = await console.post(f"/console/gateways/{gateways[0]['id']}/rotate-token",
                                 {"revokeNow": "on"})
    assert rotated.status_code == 200
    new_token = secret_shown(rotated.text)
    assert new_token != token and "stopped working" in rotated.text
    org.service.runtime.gateway_tokens.forget(gateways[0]["id"])
    assert (await org.ingest(token, "values", {"deviceId": "d", "property": "p",
                                               "timestamp": 1, "payload": 1})).status_code == 401

    page = await console.post(f"/console/connectors/{cid}/rotate-secret")
    assert secret_shown(page.text).startswith("whsec_") and "two" in page.text
    key = await console.post("/console/developers/keys", {"name": "my app"})
    assert secret_shown(key.text).startswith("hssk_")
    client = await console.post("/console/developers/clients", {
        "name": "Comfort", "redirectUris": "https://app.example/cb"})
    assert secret_shown(client.text).startswith("hscs_")
    public = await console.post("/console/developers/clients", {
        "name": "Mobile", "redirectUris": "https://app.example/m", "public": "on"})
    assert public.status_code == 200 and 'id="secret-value"' not in public.text

    events = (await org.api.get("/api/v1/audit-events")).json()["items"]
    mine = [(e["action"], e["targetId"]) for e in events if e["actor"] == f"user:{console.email}"]
    assert ("connector.created", cid) in mine and ("connector.created", generated_id) in mine
    assert ("connector.secret_rotated", cid) in mine
    assert ("gateway.token_rotated", gateways[0]["id"]) in mine
    assert {a for a, _ in mine} >= {"gateway.created", "subscription_key.created",
                                    "oauth_client.created"}
    for event in events:
        for value in (secret, generated, token, new_token):
            assert value not in str(event)


async def test_health_shows_the_success_rate_and_the_last_error(
    console: Console, org: Org
) -> None:
    def flaky(request: Received, n: int) -> web.Response:
        if n == 1:
            return web.Response(status=503, text="busy, try later")
        return web.Response(status=204)

    async with running_receiver(flaky) as rec:
        gateway = await org.gateway()
        connector = await org.connector(rec.url, name="Flaky")
        await org.trigger(connector["id"], ["values"], [gateway["id"]])
        await org.ingest(gateway["ingestToken"], "values", {
            "deviceId": "d1", "property": "p", "timestamp": 1, "payload": 1})

        async def delivered() -> bool:
            items = await org.deliveries()
            return bool(items) and items[0]["status"] == "delivered"

        await eventually(delivered)
    listing = await console.get("/console/connectors")
    assert ">50.0%</span>" in listing.text and "of 2 attempts" in listing.text
    assert "HTTP 503" in listing.text
    detail = await console.get(f"/console/connectors/{connector['id']}")
    assert "HTTP 503" in detail.text and "busy, try later" in detail.text
    # The delivery page lists both attempts, newest first.
    (delivery,) = await org.deliveries()
    page = await console.get(f"/console/deliveries/{delivery['id']}")
    rows = re.findall(r"HTTP (\d{3})</span>", page.text)
    assert rows == ["204", "503"]
    assert "busy, try later" in page.text and " ms</td>" in page.text


async def test_deactivated_reason_is_shown(console: Console, org: Org) -> None:
    async with running_receiver(lambda r, n: web.Response(status=410)) as rec:
        gateway = await org.gateway()
        connector = await org.connector(rec.url, name="Gone")
        await org.trigger(connector["id"], ["values"], [gateway["id"]])
        await org.ingest(gateway["ingestToken"], "values", {
            "deviceId": "d1", "property": "p", "timestamp": 1, "payload": 1})

        async def off() -> bool:
            got = (await org.api.get(f"/api/v1/connectors/{connector['id']}")).json()
            return got["active"] is False

        await eventually(off)
    reason = (await org.api.get(f"/api/v1/connectors/{connector['id']}")).json()[
        "deactivatedReason"]
    for path in ("/console/connectors", f"/console/connectors/{connector['id']}"):
        page = await console.get(path)
        assert html.escape(reason, quote=False) in page.text, path


# --- the buttons: test, replay of a range, cancel; the logs' filters and pages -------------------

async def test_the_test_button_reports_the_receivers_answer(
    console: Console, org: Org, receiver: Receiver
) -> None:
    cid, _ = await add_connector(console, receiver.url)
    await console.get(f"/console/connectors/{cid}")
    page = await console.post(f"/console/connectors/{cid}/test", {"kind": "alarms"})
    assert page.status_code == 200
    assert "Delivered:</strong>" in page.text and "HTTP 204" in page.text
    assert '<option value="alarms" selected>' in page.text
    (request,) = receiver.received
    assert request.path == "/alarms" and b'"deviceId":"hookstream-test"' in request.body
    assert (await org.deliveries()) == []  # nothing stored


async def test_the_test_button_says_why_nothing_was_sent(console: Console, org: Org) -> None:
    connector = await org.connector(f"http://127.0.0.1:{free_port()}")  # nothing listens
    page = await console.post(f"/console/connectors/{connector['id']}/test", {"kind": "values"})
    assert page.status_code == 200
    result = re.search(r'<div class="alert" role="status"[^>]*id="test-result">(.*?)</div>',
                       page.text, re.S)
    assert result and "Not delivered:</strong>" in result.group(1), page.text


async def test_replay_of_a_range_cancel_and_the_logs(
    console: Console, org: Org, receiver: Receiver
) -> None:
    gateway = await org.gateway("Tower 1")
    connector = await org.connector(receiver.url, name="Receiver")
    cid = connector["id"]
    await org.trigger(cid, ["values"], [gateway["id"]])
    batch = [{"deviceId": f"dev-{i % 2}", "property": "p", "timestamp": i, "payload": i}
             for i in range(51)]
    assert (await org.ingest(gateway["ingestToken"], "values", batch)).status_code == 202
    await receiver.wait_for(51)

    async def all_delivered() -> bool:
        return all(d["status"] == "delivered" for d in await org.deliveries())

    await eventually(all_delivered)
    # The logs: 50 a page, then "Older"; filters narrow them.
    page = await console.get("/console/deliveries")
    assert page.text.count('data-label="Status"') == 50
    older = re.search(r'<a class="button secondary small" href="([^"]+)">Older', page.text)
    assert older, page.text
    rest = await console.get(html.unescape(older.group(1)))
    assert rest.text.count('data-label="Status"') == 1
    page = await console.get("/console/deliveries", deviceId="dev-1", status="delivered",
                             connectorId=cid)
    assert page.text.count('data-label="Status"') == 25 and "dev-0" not in page.text
    page = await console.get("/console/deliveries", status="failed")
    assert "No delivery matches these filters" in page.text
    page = await console.get("/console/deliveries", since="2999-01-01T00:00")
    assert page.status_code == 200 and "No delivery matches these filters" in page.text
    page = await console.get("/console/messages", deviceId="dev-0", kind="values",
                             gatewayId=gateway["id"])
    assert page.text.count('data-label="Deliveries"') == 26
    assert "Receiver</a> <span class=\"badge delivered\">delivered</span>" in page.text

    # Replay of a range: the deliveries of the connector since then, each once more.
    await console.get(f"/console/connectors/{cid}")
    done = await console.post(f"/console/connectors/{cid}/replay",
                              {"since": "2020-01-01T00:00", "status": "delivered"})
    assert done.status_code == 303
    assert done.headers["location"] == (
        f"/console/deliveries?connectorId={cid}&done=replayed-range&n=51")
    page = await console.get(done.headers["location"])
    assert "Replayed 51 deliveries, listed at the top." in page.text
    await receiver.wait_for(102)
    assert len(await org.deliveries(connectorId=cid)) == 102
    nothing = await console.post(f"/console/connectors/{cid}/replay",
                                 {"since": "2020-01-01T00:00", "until": "2020-01-02T00:00"})
    assert nothing.status_code == 422 and "No delivery of this connector matches" in nothing.text
    future = await console.post(f"/console/connectors/{cid}/replay",
                                {"since": "2999-01-01T00:00"})
    assert future.status_code == 422 and field_error(future.text, "since") == "In the future."

    # Switched off, a replay from a delivery's page is held: cancel it from its own page.
    assert (await console.post(f"/console/connectors/{cid}/active",
                               {"active": "false"})).status_code == 303
    original = (await org.deliveries(connectorId=cid))[-1]
    replayed = await console.post(f"/console/deliveries/{original['id']}/replay")
    assert replayed.status_code == 303 and replayed.headers["location"].endswith("?done=replayed")
    page = await console.get(replayed.headers["location"])
    assert "Replayed: this is the new delivery" in page.text and original["id"] in page.text
    assert '<span class="badge held">held</span>' in page.text
    assert "Held while the connector is switched off" in page.text
    assert ">Cancel</button>" in page.text
    (held,) = await org.deliveries(status="held")
    done = await console.post(f"/console/deliveries/{held['id']}/cancel")
    assert done.headers["location"] == f"/console/deliveries/{held['id']}?done=cancelled"
    page = await console.get(done.headers["location"])
    assert "The delivery was cancelled." in page.text and ">Cancel</button>" not in page.text
    again = await console.post(f"/console/deliveries/{held['id']}/cancel")
    assert again.status_code == 409 and "cancelled" in again.text


# --- the local trial's console user --------------------------------------------------------------

async def test_a_fresh_local_trial_gets_a_console_user_once(
    service: Service, settings: Settings, tmp_path: Path
) -> None:
    if not settings.is_sqlite:
        assert await ensure_local_user(service.runtime) is None  # only the local trial
        return
    local = await ensure_local_user(service.runtime)
    assert local is not None and local.email == LOCAL_EMAIL
    assert stat.S_IMODE(os.stat(local.file).st_mode) == 0o600
    assert local.password in local.file.read_text()
    assert await ensure_local_user(service.runtime) is None  # there is an organization now
    async with browser(service) as web_:
        done = await sign_in(web_, LOCAL_EMAIL, local.password)
        assert done.status_code == 303, done.text
        page = await web_.get("/console")
        assert "<h1>Local</h1>" in page.text and local.org_id in page.text


async def test_no_console_user_without_private_targets(tmp_path: Path,
                                                       sqlite_template: Any) -> None:
    settings = base_settings(sqlite_template.new_database(tmp_path), data_dir=tmp_path / "var",
                             allow_private_targets=False)
    runtime = await Runtime.open(settings)
    try:
        assert await ensure_local_user(runtime) is None
    finally:
        await runtime.close()


@pytest.mark.slow
def test_make_run_prints_the_console_sign_in(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")}
    env.update(HOOKSTREAM_LISTEN=f"127.0.0.1:{port}", HOOKSTREAM_ALLOW_PRIVATE_TARGETS="true")
    base = f"http://127.0.0.1:{port}"

    def start(log: Path) -> Any:
        server = spawn(hookstream_cmd("serve"), env, log)
        try:
            wait_ready_sync(server, log, url=f"{base}/readyz", what="hookstream serve")
        except BaseException:
            server.kill()
            server.wait(30)
            raise
        return server

    first = start(tmp_path / "first.log")
    try:
        banner = (tmp_path / "first.log").read_text()
        match = re.search(r"sign in +admin@localhost / (\S+) +\(generated now; shown once, "
                          r"kept in var/console.txt\)", banner)
        assert match, banner
        assert f"console    {base}/console" in banner
        password = match.group(1)
        kept = (tmp_path / "var" / "console.txt").read_text()
        assert password in kept and f"{base}/console" in kept
        with httpx.Client(base_url=base) as web_:
            form = web_.get("/console/sign-in")
            done = web_.post("/console/sign-in", follow_redirects=False, data={
                "email": LOCAL_EMAIL, "password": password, "csrf_token": csrf_of(form.text)})
            assert done.status_code == 303, done.text
    finally:
        first.terminate()
        assert first.wait(20) == 0
    again = start(tmp_path / "again.log")
    try:
        banner = (tmp_path / "again.log").read_text()
        assert "sign in    see var/console.txt" in banner and password not in banner
    finally:
        again.terminate()
        assert again.wait(20) == 0
