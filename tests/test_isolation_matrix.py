"""Tenant isolation, endpoint by endpoint: every route of /api/v1, /ingest/v1, /oauth2 and
/smarther/v2.0 is called with organization B's credentials and organization A's ids, and
answers exactly as for ids that do not exist (never a 403 that confirms they exist); lists
never show A's things; and A's things are unchanged afterwards.

The matrix must name every route the app has under those prefixes: a new endpoint fails this
test until its isolation is checked here.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from hookstream.ids import hash_key, new_id, new_key
from hookstream.storage.repository import Repository
from hookstream.thermostat.oauth.bearer import access_token
from hookstream.web.app import create_app
from tests.api_checks import message
from tests.console_support import (
    browser,
    csrf_of,
    form_action,
    location_params,
    make_user,
    pkce_pair,
    sign_in,
)
from tests.support import ADMIN_KEY, Org, Receiver, Service, running_receiver

PREFIXES = ("/api/v1", "/ingest/v1", "/oauth2", "/smarther/v2.0")
REDIRECT = "https://app.example/callback"
MODULE = ("/smarther/v2.0/chronothermostat/thermoregulation/addressLocation/plants/{plant_id}"
          "/modules/parameter/id/value/{module_id}")

MADE_UP = {
    "gateway_id": "gw_01hzzzzzzzzzzzzzzzzzzzzzzz",
    "connector_id": "con_01hzzzzzzzzzzzzzzzzzzzzzzz",
    "trigger_id": "trg_01hzzzzzzzzzzzzzzzzzzzzzzz",
    "message_id": "msg_01hzzzzzzzzzzzzzzzzzzzzzzz",
    "delivery_id": "dlv_01hzzzzzzzzzzzzzzzzzzzzzzz",
    "plant_id": "plt_01hzzzzzzzzzzzzzzzzzzzzzzz",
    "module_id": "mod_01hzzzzzzzzzzzzzzzzzzzzzzz",
    "key_id": "skey_01hzzzzzzzzzzzzzzzzzzzzzzz",
    "client_id": "cli_01hzzzzzzzzzzzzzzzzzzzzzzz",
    "subscription_id": "sub_01hzzzzzzzzzzzzzzzzzzzzzzz",
    "org_id": "org_01hzzzzzzzzzzzzzzzzzzzzzzz",
}


@dataclass
class Tenant:
    """One organization as each kind of caller sees it."""

    org: Org
    ids: dict[str, str] = field(default_factory=dict)
    ingest_token: str = ""
    subscription_key: str = ""
    client_secret: str = ""
    access_token: str = ""
    refresh_token: str = ""
    unused_code: str = ""
    unused_verifier: str = ""
    email: str = ""

    def smarther(self) -> dict[str, str]:
        return {"Ocp-Apim-Subscription-Key": self.subscription_key,
                "Authorization": f"Bearer {self.access_token}"}


async def _code(service: Service, client_id: str, email: str) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    async with browser(service) as web_:
        assert (await sign_in(web_, email)).status_code == 303
        consent = await web_.get("/oauth2/authorize", params={
            "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
            "scope": "comfort.read comfort.write", "code_challenge": challenge,
            "code_challenge_method": "S256", "state": "s"})
        assert consent.status_code == 200, consent.text
        allowed = await web_.post(form_action(consent.text), data={
            "csrf_token": csrf_of(consent.text), "decision": "allow"})
    return location_params(allowed)["code"], verifier


async def tenant(service: Service, name: str, receiver: Receiver) -> Tenant:
    org = await service.new_org(name)
    t = Tenant(org, email=f"owner@{name.lower()}.example")
    gateway = await org.gateway(f"{name}'s tower")
    t.ingest_token = gateway["ingestToken"]
    connector = await org.connector(receiver.url, name=f"{name}'s receiver")
    trigger = await org.trigger(connector["id"], ["values"], [gateway["id"]])
    (message_id,) = (await org.ingest(t.ingest_token, "values", message(f"{name}-dev"))).json()[
        "ids"]
    (delivery,) = await org.deliveries()
    plant = (await org.api.post("/api/v1/plants", json={"name": f"{name}'s home"})).json()
    module = (await org.api.post(f"/api/v1/plants/{plant['id']}/modules",
                                 json={"name": f"{name}'s hall"})).json()
    key = (await org.api.post("/api/v1/subscription-keys", json={"name": name})).json()
    t.subscription_key = key["key"]
    client = (await org.api.post("/api/v1/oauth-clients", json={
        "name": f"{name}'s app", "redirectUris": [REDIRECT]})).json()
    t.client_secret = client["clientSecret"]
    await org.api.put("/api/v1/alerts", json={"url": receiver.url + "/alerts"})
    await make_user(service, org.id, t.email)
    code, verifier = await _code(service, client["clientId"], t.email)
    tokens = (await service.client.post("/oauth2/token", auth=(client["clientId"],
              t.client_secret), data={"grant_type": "authorization_code", "code": code,
                                      "redirect_uri": REDIRECT, "code_verifier": verifier})).json()
    t.access_token, t.refresh_token = tokens["access_token"], tokens["refresh_token"]
    t.unused_code, t.unused_verifier = await _code(service, client["clientId"], t.email)
    sub = (await service.client.post(f"/smarther/v2.0/plants/{plant['id']}/subscription",
                                     json={"EndPointUrl": receiver.url + "/smarther"},
                                     headers=t.smarther())).json()
    t.ids = {
        "gateway_id": gateway["id"], "connector_id": connector["id"],
        "trigger_id": trigger["id"], "message_id": message_id, "delivery_id": delivery["id"],
        "plant_id": plant["id"], "module_id": module["id"], "key_id": key["id"],
        "client_id": client["clientId"], "subscription_id": sub["subscriptionId"],
        "org_id": org.id,
    }
    return t


def normalized(text: str, ids: dict[str, str]) -> str:
    """The answer with each id replaced by its name (and timestamps dropped)."""
    for name, value in ids.items():
        text = text.replace(value, f"<{name}>")
    return re.sub(r"\d{4}-\d\d-\d\dT[0-9:.]+Z", "<time>", text)


# Each route: how B calls it. "ids" routes are compared against made-up ids; "own" routes act
# on B's own organization only and are checked by A's snapshot staying the same.
API = {"auth": "api"}
SMARTHER = {"auth": "smarther"}
MATRIX: dict[tuple[str, str], dict[str, Any]] = {
    # organizations (admin key only: B's API key is refused alike for A's id and a made-up one)
    ("POST", "/api/v1/organizations"): {**API, "body": {"name": "x"}, "expect": 401},
    ("GET", "/api/v1/organizations"): {**API, "expect": 401},
    ("POST", "/api/v1/organizations/{org_id}/rotate-api-key"): {**API, "ids": True},
    ("POST", "/api/v1/organization/rotate-api-key"): {**API, "own": True},
    # gateways
    ("POST", "/api/v1/gateways"): {**API, "own": True, "body": {"name": "B2"}},
    ("GET", "/api/v1/gateways"): {**API, "list": True},
    ("GET", "/api/v1/gateways/{gateway_id}"): {**API, "ids": True},
    ("PATCH", "/api/v1/gateways/{gateway_id}"): {**API, "ids": True, "body": {"name": "mine"}},
    ("DELETE", "/api/v1/gateways/{gateway_id}"): {**API, "ids": True},
    ("POST", "/api/v1/gateways/{gateway_id}/rotate-token"): {**API, "ids": True},
    # connectors and triggers
    ("POST", "/api/v1/connectors"): {**API, "own": True, "body": "connector"},
    ("GET", "/api/v1/connectors"): {**API, "list": True},
    ("GET", "/api/v1/connectors/{connector_id}"): {**API, "ids": True},
    ("PATCH", "/api/v1/connectors/{connector_id}"): {
        **API, "ids": True, "body": {"active": False, "baseUrl": "https://evil.example"}},
    ("DELETE", "/api/v1/connectors/{connector_id}"): {**API, "ids": True},
    ("POST", "/api/v1/connectors/{connector_id}/rotate-secret"): {**API, "ids": True},
    ("POST", "/api/v1/connectors/{connector_id}/test"): {**API, "ids": True,
                                                          "body": {"kind": "values"}},
    ("POST", "/api/v1/connectors/{connector_id}/replay"): {
        **API, "ids": True, "body": {"since": "2020-01-01T00:00:00Z"}},
    ("GET", "/api/v1/connectors/{connector_id}/triggers"): {**API, "ids": True},
    ("POST", "/api/v1/connectors/{connector_id}/triggers"): {
        **API, "ids": True, "body": {"kinds": ["values"], "allGateways": True}},
    ("DELETE", "/api/v1/connectors/{connector_id}/triggers/{trigger_id}"): {**API, "ids": True},
    # logs, replay
    ("GET", "/api/v1/messages"): {**API, "list": True},
    ("GET", "/api/v1/messages/{message_id}"): {**API, "ids": True},
    ("GET", "/api/v1/deliveries"): {**API, "list": True},
    ("GET", "/api/v1/deliveries/{delivery_id}"): {**API, "ids": True},
    ("POST", "/api/v1/deliveries/{delivery_id}/replay"): {**API, "ids": True},
    ("POST", "/api/v1/deliveries/{delivery_id}/cancel"): {**API, "ids": True},
    # alerts, audit
    ("PUT", "/api/v1/alerts"): {**API, "own": True, "body": {"url": "https://b.example/al"}},
    ("GET", "/api/v1/alerts"): {**API, "list": True},
    ("DELETE", "/api/v1/alerts"): {**API, "own": True},
    ("GET", "/api/v1/audit-events"): {**API, "list": True},
    ("POST", "/api/v1/transforms/preview"): {**API, "own": True, "body": {
        "expression": "deviceId", "message": {"deviceId": "b"}}},
    # plants and modules
    ("POST", "/api/v1/plants"): {**API, "own": True, "body": {"name": "B home"}},
    ("GET", "/api/v1/plants"): {**API, "list": True},
    ("GET", "/api/v1/plants/{plant_id}"): {**API, "ids": True},
    ("PATCH", "/api/v1/plants/{plant_id}"): {**API, "ids": True, "body": {"name": "mine"}},
    ("DELETE", "/api/v1/plants/{plant_id}"): {**API, "ids": True},
    ("POST", "/api/v1/plants/{plant_id}/modules"): {**API, "ids": True, "body": {"name": "m"}},
    ("GET", "/api/v1/plants/{plant_id}/modules"): {**API, "ids": True},
    ("GET", "/api/v1/plants/{plant_id}/modules/{module_id}"): {**API, "ids": True},
    ("PATCH", "/api/v1/plants/{plant_id}/modules/{module_id}"): {
        **API, "ids": True, "body": {"name": "mine"}},
    ("DELETE", "/api/v1/plants/{plant_id}/modules/{module_id}"): {**API, "ids": True},
    # developer credentials
    ("POST", "/api/v1/oauth-clients"): {**API, "own": True, "body": {
        "name": "B app", "redirectUris": ["https://b.example/cb"]}},
    ("GET", "/api/v1/oauth-clients"): {**API, "list": True},
    ("DELETE", "/api/v1/oauth-clients/{client_id}"): {**API, "ids": True},
    ("POST", "/api/v1/subscription-keys"): {**API, "own": True, "body": {"name": "B key"}},
    ("GET", "/api/v1/subscription-keys"): {**API, "list": True},
    ("DELETE", "/api/v1/subscription-keys/{key_id}"): {**API, "ids": True},
    ("POST", "/api/v1/subscription-keys/{key_id}/rotate"): {**API, "ids": True},
    # ingest: B's token stores for B (checked below)
    ("POST", "/ingest/v1/{kind}"): {"auth": "ingest"},
    # the thermostat API
    ("GET", "/smarther/v2.0/plants"): {**SMARTHER, "list": True},
    ("GET", "/smarther/v2.0/plants/{plant_id}/topology"): {**SMARTHER, "ids": True},
    ("GET", MODULE): {**SMARTHER, "ids": True},
    ("POST", MODULE): {**SMARTHER, "ids": True, "body": {"function": "HEATING", "mode": "OFF"}},
    ("GET", MODULE + "/programlist"): {**SMARTHER, "ids": True},
    ("POST", "/smarther/v2.0/plants/{plant_id}/subscription"): {
        **SMARTHER, "ids": True, "body": {"EndPointUrl": "https://b.example/hook"}},
    ("GET", "/smarther/v2.0/subscription"): {**SMARTHER, "list": True},
    ("DELETE", "/smarther/v2.0/plants/{plant_id}/subscription/{subscription_id}"): {
        **SMARTHER, "ids": True},
    # OAuth2: checked one by one below
    ("POST", "/oauth2/token"): {"auth": "oauth2"},
    ("POST", "/oauth2/revoke"): {"auth": "oauth2"},
    ("GET", "/oauth2/authorize"): {"auth": "oauth2"},
    ("POST", "/oauth2/authorize"): {"auth": "oauth2"},
}


def connector_body(url: str) -> dict[str, Any]:
    return {"name": "B's", "baseUrl": url,
            "routes": {"values": "/v", "events": "/e", "alarms": "/a"}}


async def snapshot(a: Tenant) -> dict[str, Any]:
    """What A sees of everything it has (what must not change)."""
    paths = [
        "/api/v1/gateways/{gateway_id}", "/api/v1/connectors/{connector_id}",
        "/api/v1/connectors/{connector_id}/triggers", "/api/v1/plants/{plant_id}",
        "/api/v1/plants/{plant_id}/modules/{module_id}", "/api/v1/subscription-keys",
        "/api/v1/oauth-clients", "/api/v1/alerts",
    ]
    got = {}
    for path in paths:
        resp = await a.org.api.get(path.format(**a.ids))
        assert resp.status_code == 200, (path, resp.text)
        got[path] = resp.json()
    resp = await a.org.service.client.get("/smarther/v2.0/subscription", headers=a.smarther())
    got["subscriptions"] = resp.json()
    return got


@pytest.fixture
async def receiver_ok() -> Any:
    async with running_receiver(lambda *_: web.Response(status=200)) as rec:
        yield rec


async def test_every_route_answers_b_as_if_a_did_not_exist(
    service: Service, receiver_ok: Receiver, subtests: pytest.Subtests
) -> None:
    schema = create_app(service.runtime).openapi()
    routes = {
        (method.upper(), path)
        for path, item in schema["paths"].items() if path.startswith(PREFIXES)
        for method in item if method in ("get", "post", "put", "patch", "delete")
    }
    assert routes == set(MATRIX), (
        f"routes not in the matrix: {sorted(routes - set(MATRIX))}; "
        f"in the matrix but gone: {sorted(set(MATRIX) - routes)}")

    a = await tenant(service, "Acme", receiver_ok)
    b = await tenant(service, "Bolt", receiver_ok)
    before = await snapshot(a)
    secrets_of_a = [a.org.api_key, a.ingest_token, a.subscription_key, a.client_secret,
                    a.access_token, a.refresh_token]
    client = service.client

    async def call(spec: dict[str, Any], method: str, path: str) -> httpx.Response:
        body = spec.get("body")
        if body == "connector":
            body = connector_body(receiver_ok.url)
        headers = b.smarther() if spec["auth"] == "smarther" else {
            "Authorization": f"Bearer {b.org.api_key}"}
        return await client.request(method, path, json=body, headers=headers)

    for (method, template), spec in MATRIX.items():
        if spec["auth"] in ("ingest", "oauth2"):
            continue
        with subtests.test(f"{method} {template}"):
            if spec.get("ids"):
                theirs = await call(spec, method, template.format(**a.ids))
                made_up = await call(spec, method, template.format(**MADE_UP))
                assert theirs.status_code == made_up.status_code, theirs.text
                assert theirs.status_code in (401, 404), theirs.text
                assert normalized(theirs.text, a.ids) == normalized(made_up.text, MADE_UP)
            else:
                resp = await call(spec, method, template)
                assert resp.status_code < 500, resp.text
                if "expect" in spec:
                    assert resp.status_code == spec["expect"], resp.text
                text = resp.text
                for value in [*a.ids.values(), *secrets_of_a]:
                    assert value not in text, (value, text)
            # Lists filtered by A's ids find nothing of A's either.
            if spec.get("list") and spec["auth"] == "api":
                for name in ("gateway_id", "connector_id", "plant_id"):
                    resp = await call(spec, method, template + f"?gatewayId={a.ids[name]}"
                                      f"&connectorId={a.ids[name]}&targetId={a.ids[name]}")
                    for value in a.ids.values():
                        assert value not in resp.text

    # Ingest: B's token stores B's message, never one of A's.
    resp = await client.post("/ingest/v1/values", json=message("b-probe"),
                             headers={"Authorization": f"Bearer {b.ingest_token}"})
    assert resp.status_code == 202
    a_messages = (await a.org.api.get("/api/v1/messages")).json()["items"]
    assert "b-probe" not in str(a_messages)

    # OAuth2: B's client cannot use A's code or refresh token, nor revoke A's token; A's
    # client id is as unknown to B's user as a made-up one.
    b_auth = (b.ids["client_id"], b.client_secret)
    for grant in (
        {"grant_type": "authorization_code", "redirect_uri": REDIRECT,
         "code_verifier": a.unused_verifier},
        {"grant_type": "refresh_token"},
    ):
        real = a.unused_code if grant["grant_type"] == "authorization_code" else a.refresh_token
        fake = "hsx_" + new_key("z")
        field_name = "code" if grant["grant_type"] == "authorization_code" else "refresh_token"
        theirs = await client.post("/oauth2/token", auth=b_auth, data={**grant, field_name: real})
        made_up = await client.post("/oauth2/token", auth=b_auth,
                                    data={**grant, field_name: fake})
        assert theirs.status_code == made_up.status_code == 400
        assert theirs.json() == made_up.json()
    resp = await client.post("/oauth2/revoke", auth=b_auth, data={"token": a.access_token})
    assert resp.status_code == 200
    now = int(time.time() * 1000)
    assert await access_token(service.runtime.db, a.access_token, now) is not None
    # A's code and refresh token still work for A.
    a_auth = (a.ids["client_id"], a.client_secret)
    resp = await client.post("/oauth2/token", auth=a_auth, data={
        "grant_type": "authorization_code", "code": a.unused_code, "redirect_uri": REDIRECT,
        "code_verifier": a.unused_verifier})
    assert resp.status_code == 200, resp.text
    resp = await client.post("/oauth2/token", auth=a_auth, data={
        "grant_type": "refresh_token", "refresh_token": a.refresh_token})
    assert resp.status_code == 200, resp.text
    a.access_token = resp.json()["access_token"]
    async with browser(service) as web_:
        assert (await sign_in(web_, b.email)).status_code == 303
        pages = []
        for client_id in (a.ids["client_id"], MADE_UP["client_id"]):
            resp = await web_.get("/oauth2/authorize", params={
                "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
                "scope": "comfort.read", "code_challenge": pkce_pair()[1],
                "code_challenge_method": "S256"})
            pages.append((resp.status_code, resp.text.replace(client_id, "<client>")))
            csrf = csrf_of(resp.text) if 'name="csrf_token"' in resp.text else ""
            post = await web_.post(f"/oauth2/authorize?client_id={client_id}&response_type=code"
                                   f"&redirect_uri={REDIRECT}&scope=comfort.read",
                                   data={"csrf_token": csrf, "decision": "allow"})
            assert "code=" not in post.headers.get("location", "")
            pages.append((post.status_code, post.text.replace(client_id, "<client>")))
        assert pages[0] == pages[2] and pages[1] == pages[3]
        assert pages[0][0] == 400 or "Unknown app" in pages[0][1]

    # A's things are exactly as they were, and A's credentials all still work.
    assert await snapshot(a) == before
    assert (await a.org.ingest(a.ingest_token, "values", message())).status_code == 202
    await b.org.api.aclose()
    await a.org.api.aclose()


async def test_a_token_of_one_organization_with_the_key_of_another_is_refused(
    service: Service,
) -> None:
    a, b = await service.new_org("A"), await service.new_org("B")
    key_b = (await b.api.post("/api/v1/subscription-keys", json={"name": "b"})).json()["key"]
    token_a = new_key("hsat")
    now = int(time.time() * 1000)
    async with service.runtime.db.write() as conn:
        await Repository(conn).insert_oauth_token(
            id=new_id("tok"), family_id=new_id("fam"), access_hash=hash_key(token_a),
            client_id="cli_x", user_id="usr_x", org_id=a.id, scope="comfort.read",
            created_at=now, access_expires_at=now + 60_000)
    await a.api.post("/api/v1/plants", json={"name": "A home"})
    resp = await service.client.get("/smarther/v2.0/plants", headers={
        "Ocp-Apim-Subscription-Key": key_b, "Authorization": f"Bearer {token_a}"})
    assert resp.status_code == 401
    assert "A home" not in resp.text
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert (await service.client.get("/api/v1/organizations", headers=admin)).status_code == 200
    await a.api.aclose()
    await b.api.aclose()
