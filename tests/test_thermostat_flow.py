"""The whole thermostat cloud flow, as a third-party application and its user go through it,
over real HTTP: the organization registers the app (client + subscription key), the user signs
in and consents, the app authorizes with PKCE, exchanges and refreshes tokens, reads plants,
topology and status, subscribes a local receiver, sets MANUAL 21.5 °C, and receives one signed
notification.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
from aiohttp import web
from standardwebhooks import Webhook

from hookstream.thermostat.oauth.bearer import access_token
from tests.console_support import (
    browser,
    csrf_of,
    form_action,
    location_params,
    make_user,
    pkce_pair,
    sign_in,
)
from tests.support import Org, Received, eventually, running_receiver

REDIRECT = "https://thermo-app.example/callback"
MODULE = (
    "/smarther/v2.0/chronothermostat/thermoregulation/addressLocation/plants/{plant}"
    "/modules/parameter/id/value/{module}"
)


def echo_validation(item: Received, _: int) -> web.Response:
    if item.headers.get("aeg-event-type") == "SubscriptionValidation":
        code = orjson.loads(item.body)[0]["data"]["validationCode"]
        return web.json_response({"validationResponse": code})
    return web.Response(status=200)


async def authorize(org: Org, client_id: str, email: str, scope: str) -> tuple[str, str]:
    """The user signs in and allows; returns (code, verifier)."""
    verifier, challenge = pkce_pair()
    async with browser(org.service) as web_:
        signed_in = await sign_in(web_, email)
        assert signed_in.status_code == 303, signed_in.text
        consent = await web_.get("/oauth2/authorize", params={
            "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
            "scope": scope, "state": "st-42", "code_challenge": challenge,
            "code_challenge_method": "S256",
        })
        assert consent.status_code == 200, consent.text
        assert "Thermo App" in consent.text
        allowed = await web_.post(form_action(consent.text), data={
            "csrf_token": csrf_of(consent.text), "decision": "allow"})
    assert allowed.status_code in (302, 303), allowed.text
    assert allowed.headers["location"].startswith(REDIRECT)
    params = location_params(allowed)
    assert params["state"] == "st-42"
    return params["code"], verifier


async def test_a_third_party_app_end_to_end(org: Org) -> None:
    # The organization: a plant with a module, a subscription key, a public OAuth2 client and
    # a console user (the plant's owner).
    plant_id = (await org.api.post("/api/v1/plants", json={"name": "Home"})).json()["id"]
    module_id = (await org.api.post(f"/api/v1/plants/{plant_id}/modules",
                                    json={"name": "Living room"})).json()["id"]
    key = (await org.api.post("/api/v1/subscription-keys", json={"name": "dev"})).json()["key"]
    client = (await org.api.post("/api/v1/oauth-clients", json={
        "name": "Thermo App", "redirectUris": [REDIRECT], "public": True})).json()
    assert client["clientSecret"] is None
    await make_user(org.service, org.id, "owner@example.com")
    api = org.service.client

    # Authorization code with PKCE, then the token exchange (a public client: no secret).
    code, verifier = await authorize(org, client["clientId"], "owner@example.com",
                                     "comfort.read comfort.write")
    resp = await api.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "client_id": client["clientId"], "code_verifier": verifier})
    assert resp.status_code == 200, resp.text
    tokens = resp.json()
    assert tokens["token_type"].lower() == "bearer" and tokens["expires_in"] == 3600
    assert set(tokens["scope"].split()) == {"comfort.read", "comfort.write"}

    # Refresh: a new pair; the old refresh token, used again, is refused.
    resp = await api.post("/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "client_id": client["clientId"]})
    assert resp.status_code == 200, resp.text
    fresh = resp.json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    reused = await api.post("/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "client_id": client["clientId"]})
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # Reuse means the token was copied: the whole authorization ends, the new token too.
    assert await access_token(org.service.runtime.db, fresh["access_token"],
                              int(time.time() * 1000)) is None

    # Authorize again (the user consents once more) and use the API.
    code, verifier = await authorize(org, client["clientId"], "owner@example.com",
                                     "comfort.read comfort.write")
    tokens = (await api.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "client_id": client["clientId"], "code_verifier": verifier})).json()
    headers = {"Ocp-Apim-Subscription-Key": key,
               "Authorization": f"Bearer {tokens['access_token']}"}

    async def call(method: str, path: str, body: Any = None) -> httpx.Response:
        return await api.request(method, path, json=body, headers=headers)

    assert (await call("GET", "/smarther/v2.0/plants")).json() == {
        "plants": [{"id": plant_id, "name": "Home"}]}
    topology = (await call("GET", f"/smarther/v2.0/plants/{plant_id}/topology")).json()
    assert topology["plant"]["modules"] == [
        {"device": "chronothermostat", "id": module_id, "name": "Living room"}]
    status = (await call("GET", MODULE.format(plant=plant_id, module=module_id))).json()
    assert status["chronothermostats"][0]["mode"] == "AUTOMATIC"

    async with running_receiver(echo_validation) as receiver:
        resp = await call("POST", f"/smarther/v2.0/plants/{plant_id}/subscription",
                          {"EndPointUrl": receiver.url + "/notify"})
        assert resp.status_code == 201, resp.text
        sub = resp.json()
        resp = await call("POST", MODULE.format(plant=plant_id, module=module_id), {
            "function": "HEATING", "mode": "MANUAL",
            "setPoint": {"value": "21.5", "unit": "C"}})
        assert resp.status_code == 200, resp.text

        async def notified() -> bool:
            return any(r.headers.get("aeg-event-type") == "Notification"
                       for r in receiver.received)

        await eventually(notified)
        notes = [r for r in receiver.received
                 if r.headers.get("aeg-event-type") == "Notification"]
        assert len(notes) == 1
        Webhook(sub["signingSecret"]).verify(notes[0].body, notes[0].headers)
        [event] = orjson.loads(notes[0].body)
        chrono = event["data"]["chronothermostats"][0]
        assert (chrono["mode"], chrono["setPoint"]) == ("MANUAL", {"value": "21.5", "unit": "C"})
        assert chrono["sender"] == {"addressType": "AddressLocation",
                                    "system": "thermoregulation",
                                    "plant": {"id": plant_id, "module": {"id": module_id}}}
        assert chrono["receiver"] == {"oid": [sub["subscriptionId"]]}


async def test_a_read_only_token_cannot_set_and_revocation_ends_access(org: Org) -> None:
    plant_id = (await org.api.post("/api/v1/plants", json={"name": "Home"})).json()["id"]
    module_id = (await org.api.post(f"/api/v1/plants/{plant_id}/modules",
                                    json={"name": "Hall"})).json()["id"]
    key = (await org.api.post("/api/v1/subscription-keys", json={"name": "dev"})).json()["key"]
    client = (await org.api.post("/api/v1/oauth-clients", json={
        "name": "Thermo App", "redirectUris": [REDIRECT]})).json()
    await make_user(org.service, org.id, "reader@example.com")
    code, verifier = await authorize(org, client["clientId"], "reader@example.com",
                                     "comfort.read")
    api = org.service.client
    resp = await api.post("/oauth2/token", auth=(client["clientId"], client["clientSecret"]),
                          data={"grant_type": "authorization_code", "code": code,
                                "redirect_uri": REDIRECT, "code_verifier": verifier})
    assert resp.status_code == 200, resp.text
    token = resp.json()["access_token"]
    headers = {"Ocp-Apim-Subscription-Key": key, "Authorization": f"Bearer {token}"}
    path = MODULE.format(plant=plant_id, module=module_id)
    assert (await api.get(path, headers=headers)).status_code == 200
    resp = await api.post(path, headers=headers, json={"function": "HEATING", "mode": "OFF"})
    assert resp.status_code == 403 and resp.json()["statusCode"] == 403
    # Deleting the client ends its tokens.
    assert (await org.api.delete(f"/api/v1/oauth-clients/{client['clientId']}")).status_code \
        == 204
    resp = await api.get(path, headers=headers)
    assert resp.status_code == 401 and resp.json()["statusCode"] == 401
