"""The thermostat cloud over real HTTP: plants and modules (/api/v1), the /smarther/v2.0 API
with subscription keys and access tokens, and plant notifications through the engine.

Access tokens here are written straight to the database (as the authorization server would
issue them); tests/test_thermostat_flow.py gets them through the real OAuth2 flow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from hookstream.ids import hash_key, new_id, new_key
from hookstream.security.ratelimit import RateLimiter
from hookstream.storage.repository import Repository
from tests.support import Org, Received, Receiver, Service, eventually, running_receiver

MODULE_PATH = (
    "/smarther/v2.0/chronothermostat/thermoregulation/addressLocation/plants/{plant}"
    "/modules/parameter/id/value/{module}"
)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Retries keep going long enough for a receiver that is down for a few seconds.
    return {"retry_schedule": (0.3,) * 60}


@dataclass
class App:
    """A third-party application of one organization: its key, client and access token."""

    service: Service
    key: str
    client_id: str
    token: str

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Ocp-Apim-Subscription-Key": self.key,
                "Authorization": f"Bearer {self.token}", **extra}

    async def get(self, path: str) -> httpx.Response:
        return await self.service.client.get(path, headers=self.headers())

    async def post(self, path: str, body: Any) -> httpx.Response:
        return await self.service.client.post(path, json=body, headers=self.headers())

    async def delete(self, path: str) -> httpx.Response:
        return await self.service.client.delete(path, headers=self.headers())


async def issue_token(
    service: Service, org_id: str, client_id: str, scopes: str, expires_in: int = 3600
) -> str:
    token = new_key("hsat")
    now = int(time.time() * 1000)
    async with service.runtime.db.write() as conn:
        await Repository(conn).insert_oauth_token(
            id=new_id("tok"), family_id=new_id("fam"), access_hash=hash_key(token),
            refresh_hash=None, client_id=client_id, user_id="usr_test", org_id=org_id,
            scope=scopes, created_at=now, access_expires_at=now + expires_in * 1000,
        )
    return token


async def new_app(org: Org, scopes: str = "comfort.read comfort.write") -> App:
    resp = await org.api.post("/api/v1/subscription-keys", json={"name": "dev"})
    assert resp.status_code == 201, resp.text
    key = resp.json()["key"]
    resp = await org.api.post("/api/v1/oauth-clients", json={
        "name": "Thermo App", "redirectUris": ["https://app.example/callback"]})
    assert resp.status_code == 201, resp.text
    client_id = resp.json()["clientId"]
    token = await issue_token(org.service, org.id, client_id, scopes)
    return App(org.service, key, client_id, token)


async def plant_with_module(org: Org, **module: Any) -> tuple[str, str]:
    resp = await org.api.post("/api/v1/plants", json={"name": "Home"})
    assert resp.status_code == 201, resp.text
    plant_id = resp.json()["id"]
    resp = await org.api.post(f"/api/v1/plants/{plant_id}/modules",
                              json={"name": "Living room", **module})
    assert resp.status_code == 201, resp.text
    assert resp.json()["device"] == "chronothermostat"
    return plant_id, resp.json()["id"]


def echo_validation(item: Received, _: int) -> web.Response:
    """An endpoint that answers Event Grid's handshake by echoing the code."""
    if item.headers.get("aeg-event-type") == "SubscriptionValidation":
        code = orjson.loads(item.body)[0]["data"]["validationCode"]
        return web.json_response({"validationResponse": code})
    return web.Response(status=200)


def notifications(receiver: Receiver) -> list[Received]:
    return [r for r in receiver.received if r.headers.get("aeg-event-type") == "Notification"]


# --- management side ----------------------------------------------------------------------
async def test_plants_and_modules_are_managed_per_organization(service: Service) -> None:
    acme, other = await service.new_org("Acme"), await service.new_org("Other")
    gateway = await acme.gateway()
    plant_id, module_id = await plant_with_module(
        acme, gatewayId=gateway["id"], deviceId="thermo-1",
        mapping={"temperature": "temp", "humidity": "hum"},
    )
    module = (await acme.api.get(f"/api/v1/plants/{plant_id}/modules/{module_id}")).json()
    assert module["mapping"] == {"temperature": "temp", "humidity": "hum",
                                 "loadState": "loadState"}
    assert module["status"]["mode"] == "AUTOMATIC"
    listed = (await acme.api.get("/api/v1/plants")).json()
    assert [p["id"] for p in listed["items"]] == [plant_id]
    renamed = await acme.api.patch(f"/api/v1/plants/{plant_id}", json={"name": "Chalet"})
    assert renamed.json()["name"] == "Chalet"

    # Another organization sees none of it: 404 as for an id that does not exist.
    for path in (f"/api/v1/plants/{plant_id}", f"/api/v1/plants/{plant_id}/modules",
                 f"/api/v1/plants/{plant_id}/modules/{module_id}"):
        resp = await other.api.get(path)
        assert resp.status_code == 404, path
        assert resp.json()["error"]["code"] == "not_found"
    assert (await other.api.get("/api/v1/plants")).json()["items"] == []
    assert (await other.api.delete(f"/api/v1/plants/{plant_id}")).status_code == 404
    # ... nor can it link its modules to this organization's gateway.
    resp = await other.api.post("/api/v1/plants", json={"name": "Theirs"})
    resp = await other.api.post(f"/api/v1/plants/{resp.json()['id']}/modules", json={
        "name": "x", "gatewayId": gateway["id"], "deviceId": "thermo-1"})
    assert resp.status_code == 422
    assert resp.json()["error"]["details"][0]["field"] == "gatewayId"

    assert (await acme.api.delete(f"/api/v1/plants/{plant_id}")).status_code == 204
    assert (await acme.api.get(f"/api/v1/plants/{plant_id}/modules/{module_id}")).status_code \
        == 404
    await acme.api.aclose()
    await other.api.aclose()


@pytest.mark.parametrize("body, field", [
    ({"name": "m", "gatewayId": "gw_x"}, "deviceId"),
    ({"name": "m", "deviceId": "d1"}, "gatewayId"),
    ({"name": "m", "mapping": {"pressure": "p"}}, "mapping.pressure"),
    ({"name": "m", "colour": "red"}, "colour"),
    ({"name": ""}, "name"),
])
async def test_bad_module_bodies_are_422_naming_the_field(
    org: Org, body: dict[str, Any], field: str
) -> None:
    plant_id = (await org.api.post("/api/v1/plants", json={"name": "Home"})).json()["id"]
    resp = await org.api.post(f"/api/v1/plants/{plant_id}/modules", json=body)
    assert resp.status_code == 422, resp.text
    assert field in [d["field"] for d in resp.json()["error"]["details"]]


async def test_developer_secrets_are_shown_once_and_stored_hashed(org: Org) -> None:
    key = (await org.api.post("/api/v1/subscription-keys", json={"name": "dev"})).json()
    client = (await org.api.post("/api/v1/oauth-clients", json={
        "name": "App", "redirectUris": ["https://app.example/cb"]})).json()
    public = (await org.api.post("/api/v1/oauth-clients", json={
        "name": "Mobile", "redirectUris": ["http://127.0.0.1:9999/cb"], "public": True})).json()
    assert client["clientSecret"].startswith("hscs_") and public["clientSecret"] is None
    listed = (await org.api.get("/api/v1/subscription-keys")).json()["items"]
    assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]
    clients = (await org.api.get("/api/v1/oauth-clients")).json()["items"]
    assert {c["clientId"] for c in clients} == {client["clientId"], public["clientId"]}
    assert all("clientSecret" not in c for c in clients)
    async with org.service.runtime.db.read() as conn:
        repo = Repository(conn)
        stored = await repo.oauth_client_by_id(client["clientId"])
        assert stored.secret_hash == hash_key(client["clientSecret"])
        assert (await repo.subscription_key_by_hash(hash_key(key["key"]), 0)) is not None
    for uri in ("http://app.example/cb", "https://app.example/cb#frag", "ftp://x/"):
        resp = await org.api.post("/api/v1/oauth-clients", json={
            "name": "Bad", "redirectUris": [uri]})
        assert resp.status_code == 422, uri


# --- /smarther/v2.0: keys, tokens, scopes ---------------------------------------------------
async def test_subscription_key_and_token_are_required(org: Org) -> None:
    app = await new_app(org)
    plants = "/smarther/v2.0/plants"
    client = org.service.client
    resp = await client.get(plants, headers={"Authorization": f"Bearer {app.token}"})
    assert resp.status_code == 401
    assert resp.json() == {"statusCode": 401, "message": (
        "Access denied due to missing subscription key. Make sure to include subscription key "
        "when making requests to an API.")}
    resp = await client.get(plants, headers={"Ocp-Apim-Subscription-Key": "nope",
                                             "Authorization": f"Bearer {app.token}"})
    assert resp.status_code == 401
    assert resp.json()["message"].startswith("Access denied due to invalid subscription key")
    resp = await client.get(plants, headers={"Ocp-Apim-Subscription-Key": app.key})
    assert resp.status_code == 401 and resp.json()["statusCode"] == 401
    assert "invalid_token" not in resp.json()["message"]
    resp = await client.get(plants, headers={"Ocp-Apim-Subscription-Key": app.key,
                                             "Authorization": "Bearer hsat_forged"})
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    expired = await issue_token(org.service, org.id, app.client_id, "comfort.read", -1)
    resp = await client.get(plants, headers={"Ocp-Apim-Subscription-Key": app.key,
                                             "Authorization": f"Bearer {expired}"})
    assert resp.status_code == 401
    # No plants yet: 204, as the original answers.
    assert (await app.get(plants)).status_code == 204
    # A revoked key stops working at once.
    key_id = (await org.api.get("/api/v1/subscription-keys")).json()["items"][0]["id"]
    assert (await org.api.delete(f"/api/v1/subscription-keys/{key_id}")).status_code == 204
    assert (await app.get(plants)).status_code == 401


async def test_rate_limit_per_subscription_key_answers_429_with_retry_after(org: Org) -> None:
    app = await new_app(org)
    other = await new_app(org)
    org.service.runtime.subscription_key_limiter = RateLimiter(3, 60.0)
    answers = [(await app.get("/smarther/v2.0/plants")).status_code for _ in range(4)]
    assert answers == [204, 204, 204, 429]
    resp = await app.get("/smarther/v2.0/plants")
    assert resp.status_code == 429
    assert int(resp.headers["retry-after"]) >= 1
    assert resp.json()["statusCode"] == 429
    assert resp.json()["message"].startswith("Rate limit is exceeded. Try again in")
    # Another key has its own bucket.
    assert (await other.get("/smarther/v2.0/plants")).status_code == 204


async def test_plants_topology_and_status_have_the_original_shapes(org: Org) -> None:
    app = await new_app(org, scopes="comfort.read")
    plant_id, module_id = await plant_with_module(org)
    assert (await app.get("/smarther/v2.0/plants")).json() == {
        "plants": [{"id": plant_id, "name": "Home"}]}
    assert (await app.get(f"/smarther/v2.0/plants/{plant_id}/topology")).json() == {
        "plant": {"id": plant_id, "name": "Home", "modules": [
            {"device": "chronothermostat", "id": module_id, "name": "Living room"}]}}
    status = (await app.get(MODULE_PATH.format(plant=plant_id, module=module_id))).json()
    chrono = status["chronothermostats"][0]
    assert list(chrono) == ["function", "mode", "setPoint", "programs", "temperatureFormat",
                            "loadState", "time", "thermometer", "hygrometer", "sender"]
    assert chrono["setPoint"] == {"value": "20.0", "unit": "C"}
    assert chrono["programs"] == [{"number": "1"}]
    assert chrono["sender"] == {"addressType": "AddressLocation", "system": "thermoregulation",
                                "plant": {"id": plant_id, "module": {"id": module_id}}}
    # A token without comfort.write cannot set.
    resp = await app.post(MODULE_PATH.format(plant=plant_id, module=module_id),
                          {"function": "HEATING", "mode": "MANUAL",
                           "setPoint": {"value": "21.5", "unit": "C"}})
    assert resp.status_code == 403
    assert resp.json() == {"statusCode": 403,
                           "message": "the access token lacks the 'comfort.write' scope"}


async def test_another_organizations_plant_is_404(service: Service) -> None:
    acme, other = await service.new_org("Acme"), await service.new_org("Other")
    plant_id, module_id = await plant_with_module(acme)
    app = await new_app(other)
    for path in (f"/smarther/v2.0/plants/{plant_id}/topology",
                 MODULE_PATH.format(plant=plant_id, module=module_id)):
        resp = await app.get(path)
        assert resp.status_code == 404, path
        assert resp.json()["statusCode"] == 404
    resp = await app.post(MODULE_PATH.format(plant=plant_id, module=module_id),
                          {"function": "HEATING", "mode": "OFF"})
    assert resp.status_code == 404
    resp = await app.post(f"/smarther/v2.0/plants/{plant_id}/subscription",
                          {"EndPointUrl": "https://example.com/hook"})
    assert resp.status_code == 404
    # The other organization's key with this organization's token is refused too.
    mine = await new_app(acme)
    resp = await service.client.get("/smarther/v2.0/plants", headers={
        "Ocp-Apim-Subscription-Key": app.key, "Authorization": f"Bearer {mine.token}"})
    assert resp.status_code == 401
    await acme.api.aclose()
    await other.api.aclose()


@pytest.mark.parametrize("body, reason", [
    ({"function": "HEATING", "mode": "MANUAL"}, "setPoint"),
    ({"function": "HEATING", "mode": "BOOST"}, "activationTime"),
    ({"function": "HEATING", "mode": "MANUAL", "setPoint": {"value": "45", "unit": "C"}},
     "between 3 and 40"),
    ({"function": "HEATING", "mode": "HOLIDAY"}, "mode"),
    ({"function": "HEATING", "mode": "OFF", "colour": "red"}, "colour"),
    ([1, 2], "object"),
])
async def test_invalid_settings_are_400_with_a_reason(org: Org, body: Any, reason: str) -> None:
    app = await new_app(org)
    plant_id, module_id = await plant_with_module(org)
    resp = await app.post(MODULE_PATH.format(plant=plant_id, module=module_id), body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["statusCode"] == 400
    assert reason in resp.json()["message"]
    status = (await app.get(MODULE_PATH.format(plant=plant_id, module=module_id))).json()
    assert status["chronothermostats"][0]["mode"] == "AUTOMATIC"  # unchanged
    resp = await org.service.client.post(
        MODULE_PATH.format(plant=plant_id, module=module_id), content=b"{nope",
        headers=app.headers(**{"content-type": "application/json"}))
    assert resp.status_code == 400 and resp.json()["message"] == "the body is not valid JSON"


# --- subscriptions and notifications --------------------------------------------------------
async def test_subscribe_validate_set_and_receive_a_signed_notification(org: Org) -> None:
    app = await new_app(org)
    plant_id, module_id = await plant_with_module(org)
    async with running_receiver(echo_validation) as receiver:
        resp = await app.post(f"/smarther/v2.0/plants/{plant_id}/subscription",
                              {"EndPointUrl": receiver.url + "/smarther"})
        assert resp.status_code == 201, resp.text
        sub = resp.json()
        assert set(sub) == {"plantId", "subscriptionId", "EndPointUrl", "signingSecret"}
        assert sub["plantId"] == plant_id and sub["EndPointUrl"] == receiver.url + "/smarther"
        # The validation event came first, signed with the new secret.
        validation = receiver.received[0]
        assert validation.headers["aeg-event-type"] == "SubscriptionValidation"
        event = orjson.loads(validation.body)[0]
        assert event["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"
        Webhook(sub["signingSecret"]).verify(validation.body, validation.headers)
        async with org.service.runtime.db.read() as conn:
            rows = await Repository(conn).subscriptions_of_client(org.id, app.client_id)
        assert [bool(r.verified) for r in rows] == [True]

        resp = await app.post(MODULE_PATH.format(plant=plant_id, module=module_id), {
            "function": "HEATING", "mode": "MANUAL",
            "setPoint": {"value": "21.5", "unit": "C"}})
        assert resp.status_code == 200, resp.text
        assert resp.json()["chronothermostats"][0]["setPoint"] == {"value": "21.5", "unit": "C"}
        await eventually(lambda: _has(notifications(receiver), 1))
        note = notifications(receiver)[0]
        assert note.path == "/smarther"
        Webhook(sub["signingSecret"]).verify(note.body, note.headers)
        events = orjson.loads(note.body)
        assert isinstance(events, list) and len(events) == 1
        assert set(events[0]) == {"id", "eventType", "subject", "eventTime", "data"}
        assert events[0]["id"] == note.headers["webhook-id"]
        assert events[0]["eventType"] == "chronothermostat.changed"
        chrono = events[0]["data"]["chronothermostats"][0]
        assert (chrono["function"], chrono["mode"]) == ("HEATING", "MANUAL")
        assert chrono["setPoint"] == {"value": "21.5", "unit": "C"}
        assert chrono["sender"] == {"addressType": "AddressLocation",
                                    "system": "thermoregulation",
                                    "plant": {"id": plant_id, "module": {"id": module_id}}}
        assert chrono["receiver"] == {"oid": [sub["subscriptionId"]]}

        # The delivery and its attempt are in the organization's log like any webhook.
        deliveries = await org.deliveries()
        assert [d["status"] for d in deliveries] == ["delivered"]

        listed = await app.get("/smarther/v2.0/subscription")
        assert listed.json() == [{"plantId": plant_id, "subscriptionId": sub["subscriptionId"],
                                  "EndPointUrl": receiver.url + "/smarther"}]
        again = await app.post(f"/smarther/v2.0/plants/{plant_id}/subscription",
                               {"EndPointUrl": receiver.url + "/smarther"})
        assert again.status_code == 409
        resp = await app.delete(
            f"/smarther/v2.0/plants/{plant_id}/subscription/{sub['subscriptionId']}")
        assert resp.status_code == 200
        assert (await app.get("/smarther/v2.0/subscription")).status_code == 204
        # After unsubscribing, a change notifies no one.
        before = len(receiver.received)
        await app.post(MODULE_PATH.format(plant=plant_id, module=module_id),
                       {"function": "HEATING", "mode": "OFF"})
        await eventually(lambda: _no_pending(org))
        assert len(receiver.received) == before


async def _has(items: list[Received], count: int) -> bool:
    return len(items) >= count


async def _no_pending(org: Org) -> bool:
    return all(d["status"] != "pending" for d in await org.deliveries())


async def test_an_endpoint_that_refuses_validation_gets_no_subscription(org: Org) -> None:
    app = await new_app(org)
    plant_id, _ = await plant_with_module(org)
    async with running_receiver(lambda *_: web.Response(status=500)) as receiver:
        resp = await app.post(f"/smarther/v2.0/plants/{plant_id}/subscription",
                              {"EndPointUrl": receiver.url})
        assert resp.status_code == 400
        assert "HTTP 500" in resp.json()["message"]
    assert (await app.get("/smarther/v2.0/subscription")).status_code == 204
    # A plain 200 without the echo is accepted, unverified (existing clients answer so).
    async with running_receiver(lambda *_: web.Response(status=200)) as receiver:
        resp = await app.post(f"/smarther/v2.0/plants/{plant_id}/subscription",
                              {"EndPointUrl": receiver.url})
        assert resp.status_code == 201
    async with org.service.runtime.db.read() as conn:
        rows = await Repository(conn).subscriptions_of_client(org.id, app.client_id)
    assert [bool(r.verified) for r in rows] == [False]
    for bad in ({"EndPointUrl": "ftp://x"}, {"url": "https://x.example"}, {"EndPointUrl": 5}):
        resp = await app.post(f"/smarther/v2.0/plants/{plant_id}/subscription", bad)
        assert resp.status_code == 400, bad
        assert resp.json()["statusCode"] == 400


async def test_changes_made_while_the_receiver_is_down_arrive_in_order(org: Org) -> None:
    app = await new_app(org)
    plant_id, module_id = await plant_with_module(org)
    down = {"on": False}

    def respond(item: Received, _: int) -> web.Response:
        if item.headers.get("aeg-event-type") == "SubscriptionValidation":
            return web.Response(status=200)
        return web.Response(status=503 if down["on"] else 200)

    async with running_receiver(respond) as receiver:
        resp = await app.post(f"/smarther/v2.0/plants/{plant_id}/subscription",
                              {"EndPointUrl": receiver.url})
        assert resp.status_code == 201
        down["on"] = True
        set_points = ["18.0", "18.5", "19.0", "19.5", "20.5"]
        for value in set_points:
            resp = await app.post(MODULE_PATH.format(plant=plant_id, module=module_id), {
                "function": "HEATING", "mode": "MANUAL", "setPoint": {"value": value}})
            assert resp.status_code == 200
        await eventually(lambda: _has(notifications(receiver), 3))
        assert all(
            orjson.loads(r.body)[0]["data"]["chronothermostats"][0]["setPoint"]["value"] == "18.0"
            for r in notifications(receiver)
        )  # while it is down, only the oldest change is tried (and retried)
        down["on"] = False
        await eventually(lambda: _delivered(org, 5))
        delivered = notifications(receiver)
        seen: list[str] = []
        for r in delivered:
            value = orjson.loads(r.body)[0]["data"]["chronothermostats"][0]["setPoint"]["value"]
            if not seen or seen[-1] != value:
                seen.append(value)
        assert seen == set_points
        assert len({r.headers["webhook-id"] for r in delivered}) == 5


async def _delivered(org: Org, count: int) -> bool:
    return sum(d["status"] == "delivered" for d in await org.deliveries()) >= count


async def test_gateway_reports_change_the_module_and_notify(org: Org) -> None:
    app = await new_app(org)
    gateway = await org.gateway()
    plant_id, module_id = await plant_with_module(
        org, gatewayId=gateway["id"], deviceId="thermo-1", mapping={"temperature": "temp"})
    async with running_receiver(echo_validation) as receiver:
        resp = await app.post(f"/smarther/v2.0/plants/{plant_id}/subscription",
                              {"EndPointUrl": receiver.url})
        assert resp.status_code == 201
        ts = int(time.time() * 1000)
        readings = [
            {"deviceId": "thermo-1", "property": "temp", "timestamp": ts, "payload": 21.34},
            {"deviceId": "thermo-1", "property": "humidity", "timestamp": ts, "payload": "48"},
            {"deviceId": "thermo-1", "property": "loadState", "timestamp": ts, "payload": "ON"},
            {"deviceId": "other", "property": "temp", "timestamp": ts, "payload": 30},
        ]
        resp = await org.ingest(gateway["ingestToken"], "values", readings)
        assert resp.status_code == 202, resp.text
        await eventually(lambda: _has(notifications(receiver), 3))
        last = orjson.loads(notifications(receiver)[-1].body)[0]["data"]["chronothermostats"][0]
        assert last["thermometer"]["measures"][0]["value"] == "21.3"
        assert last["hygrometer"]["measures"][0] == {
            "timeStamp": last["hygrometer"]["measures"][0]["timeStamp"], "value": "48.0",
            "unit": "%"}
        assert last["loadState"] == "ACTIVE"
        status = (await app.get(MODULE_PATH.format(plant=plant_id, module=module_id))).json()
        assert status["chronothermostats"][0]["thermometer"] == last["thermometer"]
        # The same reading again changes nothing a subscriber would notice: no notification.
        count = len(notifications(receiver))
        resp = await org.ingest(gateway["ingestToken"], "values", readings[:1])
        await eventually(lambda: _no_pending(org))
        assert len(notifications(receiver)) == count
