"""Connectors (where and how to deliver) and their triggers: the management API contract."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.api_checks import error_of
from tests.support import Org

ROUTES = {"values": "/v", "events": "/e", "alarms": "/a"}
URL = "https://hooks.example.com/in"


def connector_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "ERP", "baseUrl": URL, "routes": dict(ROUTES)}
    body.update(fields)
    return body


def whsec(n: int) -> str:
    return "whsec_" + base64.b64encode(bytes(range(n))).decode()


# Every authentication type, with credentials that must never be shown again.
AUTHS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "none": ({"type": "none"}, []),
    "basic": ({"type": "basic", "username": "erp-user", "password": "pw-Sekr1t-basic"},
              ["pw-Sekr1t-basic"]),
    "bearer": ({"type": "bearer", "token": "tok-Sekr1t-bearer"}, ["tok-Sekr1t-bearer"]),
    "api_key": ({"type": "api_key", "header": "X-Api-Key", "value": "val-Sekr1t-apikey"},
                ["val-Sekr1t-apikey"]),
    "oauth2_client_credentials": (
        {"type": "oauth2_client_credentials", "tokenUrl": "https://auth.example.com/token",
         "clientId": "hookstream", "clientSecret": "cs-Sekr1t-oauth", "scope": "ingest"},
        ["cs-Sekr1t-oauth"],
    ),
}


# --- connectors -------------------------------------------------------------------------


async def test_a_connector_is_created_inactive_with_its_secret_shown_once(org: Org) -> None:
    resp = await org.api.post("/api/v1/connectors", json=connector_body())
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["id"] and body["name"] == "ERP" and body["baseUrl"] == URL
    assert body["routes"] == ROUTES
    assert body["active"] is False  # the contract's default
    assert body["authentication"] == {"type": "none"}
    secret = body["secret"]
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) <= 64
    other = (await org.api.post("/api/v1/connectors", json=connector_body())).json()
    assert other["secret"] != secret  # generated, not a constant
    got = await org.api.get(f"/api/v1/connectors/{body['id']}")
    assert "secret" not in got.json() and secret not in got.text

    # A given secret is kept, and likewise shown only this once.
    for size in (24, 64):
        given = whsec(size)
        resp = await org.api.post("/api/v1/connectors", json=connector_body(secret=given))
        assert resp.status_code == 201, resp.text
        assert resp.json()["secret"] == given
        cid = resp.json()["id"]
        got = await org.api.get(f"/api/v1/connectors/{cid}")
        assert got.status_code == 200 and "secret" not in got.json()
        assert given not in got.text
        assert given not in (await org.api.get("/api/v1/connectors")).text


async def test_a_malformed_connector_is_422_naming_what_is_wrong(
    org: Org, subtests: pytest.Subtests
) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("secret without prefix", connector_body(secret=whsec(32).removeprefix("whsec_")),
         "secret"),
        ("secret not base64", connector_body(secret="whsec_***not*base64***"), "secret"),
        ("secret too short", connector_body(secret=whsec(16)), "secret"),
        ("secret too long", connector_body(secret=whsec(65)), "secret"),
        ("ftp baseUrl", connector_body(baseUrl="ftp://files.example.com/in"), "baseUrl"),
        ("baseUrl not a URL", connector_body(baseUrl="nope"), "baseUrl"),
        ("baseUrl missing", {"name": "ERP", "routes": ROUTES}, "baseUrl"),
        ("baseUrl a number", connector_body(baseUrl=80), "baseUrl"),
        ("routes missing", {"name": "ERP", "baseUrl": URL}, "routes"),
        ("a route without '/'", connector_body(routes={**ROUTES, "events": "events"}),
         "routes.events"),
        ("a route missing", connector_body(routes={"values": "/v", "events": "/e"}),
         "routes.alarms"),
        ("an unknown route", connector_body(routes={**ROUTES, "logs": "/l"}), "routes.logs"),
        ("name missing", {"baseUrl": URL, "routes": ROUTES}, "name"),
        ("unknown field", connector_body(retries=3), "retries"),
        ("active as a string", connector_body(active="yes"), "active"),
        ("unknown auth type", connector_body(authentication={"type": "digest"}), "type"),
        ("basic without password",
         connector_body(authentication={"type": "basic", "username": "u"}), "password"),
        ("bearer without token", connector_body(authentication={"type": "bearer"}), "token"),
        ("api_key without header",
         connector_body(authentication={"type": "api_key", "value": "v"}), "header"),
        ("oauth2 with a bad tokenUrl",
         connector_body(authentication={"type": "oauth2_client_credentials",
                                        "tokenUrl": "nope", "clientId": "c",
                                        "clientSecret": "s"}), "tokenUrl"),
        ("auth with an unknown field",
         connector_body(authentication={"type": "bearer", "token": "t", "extra": 1}), "extra"),
    ]
    for label, body, named in cases:
        with subtests.test(label):
            resp = await org.api.post("/api/v1/connectors", json=body)
            error_of(resp, 422, names=(named,))
    assert (await org.api.get("/api/v1/connectors")).json()["items"] == []


async def test_every_authentication_type_is_accepted_and_its_credentials_hidden(
    org: Org, subtests: pytest.Subtests
) -> None:
    for kind, (auth, secrets) in AUTHS.items():
        with subtests.test(kind):
            resp = await org.api.post("/api/v1/connectors",
                                      json=connector_body(name=kind, authentication=auth))
            assert resp.status_code == 201, resp.text
            cid = resp.json()["id"]
            got = await org.api.get(f"/api/v1/connectors/{cid}")
            assert got.status_code == 200, got.text
            shown = got.json()["authentication"]
            assert shown["type"] == kind
            for hidden in ("password", "token", "value", "clientSecret"):
                assert hidden not in shown, shown
            for secret in secrets:
                assert secret not in resp.text.replace(resp.json()["secret"], "")
                assert secret not in got.text
    listed = await org.api.get("/api/v1/connectors")
    assert sorted(c["name"] for c in listed.json()["items"]) == sorted(AUTHS)
    for _, secrets in AUTHS.values():
        for secret in secrets:
            assert secret not in listed.text
    for item in listed.json()["items"]:
        assert "secret" not in item


async def test_patch_changes_name_base_url_and_active_but_not_the_secret(org: Org) -> None:
    created = (await org.api.post("/api/v1/connectors", json=connector_body())).json()
    cid = created["id"]
    resp = await org.api.patch(f"/api/v1/connectors/{cid}",
                               json={"name": "ERP 2", "baseUrl": "http://erp.example.com/x"})
    assert resp.status_code == 200, resp.text
    resp = await org.api.patch(f"/api/v1/connectors/{cid}", json={"active": True})
    assert resp.status_code == 200, resp.text
    assert resp.json()["active"] is True
    got = (await org.api.get(f"/api/v1/connectors/{cid}")).json()
    assert (got["name"], got["baseUrl"], got["active"]) == (
        "ERP 2", "http://erp.example.com/x", True)
    assert got["routes"] == ROUTES

    before = got
    err = error_of(await org.api.patch(f"/api/v1/connectors/{cid}", json={"secret": whsec(32)}),
                   422, names=("secret",))
    assert "rotate-secret" in err["message"]
    error_of(await org.api.patch(f"/api/v1/connectors/{cid}", json={"baseUrl": "ftp://x/y"}),
             422, names=("baseUrl",))
    error_of(await org.api.patch(f"/api/v1/connectors/{cid}", json={"active": "no"}),
             422, names=("active",))
    error_of(await org.api.patch(f"/api/v1/connectors/{cid}", json={"colour": "red"}),
             422, names=("colour",))
    assert (await org.api.get(f"/api/v1/connectors/{cid}")).json() == before

    resp = await org.api.patch(f"/api/v1/connectors/{cid}", json={"active": False})
    assert resp.status_code == 200 and resp.json()["active"] is False
    # New credentials are taken and, like the first ones, never shown.
    auth, (hidden,) = AUTHS["bearer"]
    resp = await org.api.patch(f"/api/v1/connectors/{cid}", json={"authentication": auth})
    assert resp.status_code == 200, resp.text
    got = await org.api.get(f"/api/v1/connectors/{cid}")
    assert got.json()["authentication"] == {"type": "bearer"} and hidden not in got.text


async def test_a_deleted_connector_is_gone(org: Org) -> None:
    cid = (await org.api.post("/api/v1/connectors", json=connector_body())).json()["id"]
    keep = (await org.api.post("/api/v1/connectors", json=connector_body(name="keep"))).json()
    assert (await org.api.delete(f"/api/v1/connectors/{cid}")).status_code == 204
    error_of(await org.api.get(f"/api/v1/connectors/{cid}"), 404, "not_found", names=(cid,))
    error_of(await org.api.delete(f"/api/v1/connectors/{cid}"), 404, "not_found")
    error_of(await org.api.patch(f"/api/v1/connectors/{cid}", json={"active": True}), 404,
             "not_found")
    error_of(await org.api.get(f"/api/v1/connectors/{cid}/triggers"), 404, "not_found")
    error_of(await org.api.post(f"/api/v1/connectors/{cid}/triggers",
                                json={"kinds": ["values"], "allGateways": True}), 404)
    listed = (await org.api.get("/api/v1/connectors")).json()["items"]
    assert [c["id"] for c in listed] == [keep["id"]]


# --- triggers ---------------------------------------------------------------------------


async def test_triggers_are_created_listed_and_deleted(org: Org) -> None:
    g1, g2 = await org.gateway("G1"), await org.gateway("G2")
    cid = (await org.api.post("/api/v1/connectors", json=connector_body())).json()["id"]
    url = f"/api/v1/connectors/{cid}/triggers"

    resp = await org.api.post(url, json={"kinds": ["values", "alarms"],
                                         "gatewayIds": [g1["id"], g2["id"]]})
    assert resp.status_code == 201, resp.text
    scoped = resp.json()
    assert scoped["id"] and sorted(scoped["kinds"]) == ["alarms", "values"]
    assert sorted(scoped["gatewayIds"]) == sorted([g1["id"], g2["id"]])
    assert "allGateways" not in scoped or scoped["allGateways"] is False

    resp = await org.api.post(url, json={"kinds": ["events"], "allGateways": True})
    assert resp.status_code == 201, resp.text
    everywhere = resp.json()
    assert everywhere["allGateways"] is True and everywhere["kinds"] == ["events"]

    listed = await org.api.get(url)
    assert listed.status_code == 200, listed.text
    items = {t["id"]: t for t in listed.json()["items"]}
    assert set(items) == {scoped["id"], everywhere["id"]}
    assert sorted(items[scoped["id"]]["gatewayIds"]) == sorted([g1["id"], g2["id"]])
    assert items[everywhere["id"]]["allGateways"] is True

    assert (await org.api.delete(f"{url}/{scoped['id']}")).status_code == 204
    assert [t["id"] for t in (await org.api.get(url)).json()["items"]] == [everywhere["id"]]
    error_of(await org.api.delete(f"{url}/{scoped['id']}"), 404, "not_found",
             names=(scoped["id"],))
    error_of(await org.api.delete(f"{url}/trg_01HZZZZZZZZZZZZZZZZZZZZZZZ"), 404, "not_found",
             names=("trg_01HZZZZZZZZZZZZZZZZZZZZZZZ",))
    assert [t["id"] for t in (await org.api.get(url)).json()["items"]] == [everywhere["id"]]


async def test_a_bad_trigger_is_422(org: Org, subtests: pytest.Subtests) -> None:
    gw = await org.gateway()
    cid = (await org.api.post("/api/v1/connectors", json=connector_body())).json()["id"]
    url = f"/api/v1/connectors/{cid}/triggers"
    made_up = "gw_01HZZZZZZZZZZZZZZZZZZZZZZZ"
    cases: list[tuple[str, dict[str, Any], str | None, str]] = [
        ("empty kinds", {"kinds": [], "allGateways": True}, None, "kinds"),
        ("no kinds", {"allGateways": True}, None, "kinds"),
        ("unknown kind", {"kinds": ["values", "logs"], "allGateways": True}, None, "kinds"),
        ("both scopes", {"kinds": ["values"], "gatewayIds": [gw["id"]], "allGateways": True},
         None, "allGateways"),
        ("neither scope", {"kinds": ["values"]}, None, "gatewayIds"),
        ("empty gatewayIds", {"kinds": ["values"], "gatewayIds": []}, None, "gatewayIds"),
        ("allGateways false", {"kinds": ["values"], "allGateways": False}, None, "gatewayIds"),
        ("gatewayIds not a list", {"kinds": ["values"], "gatewayIds": gw["id"]}, None,
         "gatewayIds"),
        ("unknown field", {"kinds": ["values"], "allGateways": True, "filter": "x"}, None,
         "filter"),
        ("a made-up gateway", {"kinds": ["values"], "gatewayIds": [gw["id"], made_up]},
         "unknown_gateway", made_up),
    ]
    for label, body, code, named in cases:
        with subtests.test(label):
            error_of(await org.api.post(url, json=body), 422, code, names=(named,))
    assert (await org.api.get(url)).json()["items"] == []


async def test_a_deleted_gateway_leaves_the_trigger_list(org: Org) -> None:
    g1, g2 = await org.gateway("G1"), await org.gateway("G2")
    cid = (await org.api.post("/api/v1/connectors", json=connector_body())).json()["id"]
    url = f"/api/v1/connectors/{cid}/triggers"
    assert (await org.api.post(url, json={"kinds": ["values"],
                                          "gatewayIds": [g1["id"], g2["id"]]})).status_code == 201
    assert (await org.api.delete(f"/api/v1/gateways/{g1['id']}")).status_code == 204
    (trigger,) = (await org.api.get(url)).json()["items"]
    assert trigger["gatewayIds"] == [g2["id"]]
    # A deleted gateway cannot be named in a new trigger.
    error_of(await org.api.post(url, json={"kinds": ["values"], "gatewayIds": [g1["id"]]}),
             422, "unknown_gateway", names=(g1["id"],))
