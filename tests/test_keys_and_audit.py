"""Key lifecycle (rotate with an overlap, revoke) and the audit log, over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api_checks import message
from tests.support import ADMIN_KEY, Org, Receiver, Service


def as_key(service: Service, key: str) -> httpx.AsyncClient:
    return service.org_client(key)


async def events(org: Org, **params: Any) -> list[dict[str, Any]]:
    resp = await org.api.get("/api/v1/audit-events", params=params)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["items"])


async def test_an_api_key_rotates_with_an_overlap_and_can_be_revoked(org: Org) -> None:
    old = org.api_key
    resp = await org.api.post("/api/v1/organization/rotate-api-key",
                              json={"overlapSeconds": 3600})
    assert resp.status_code == 200, resp.text
    new = resp.json()["apiKey"]
    assert new != old and resp.json()["previousKeyExpiresAt"]
    async with as_key(org.service, new) as by_new, as_key(org.service, old) as by_old:
        assert (await by_new.get("/api/v1/gateways")).status_code == 200
        # During the overlap the old key works, and the audit log says which key was used.
        created = await by_old.post("/api/v1/gateways", json={"name": "via old key"})
        assert created.status_code == 201
        [event] = [e for e in await events(org) if e["action"] == "gateway.created"]
        assert event["actor"] == "api_key:previous"
        # Rotating again with no overlap revokes the key that was current until now.
        resp = await by_new.post("/api/v1/organization/rotate-api-key",
                                 json={"overlapSeconds": 0})
        newest = resp.json()["apiKey"]
        for client in (by_new, by_old):
            resp = await client.get("/api/v1/gateways")
            assert resp.status_code == 401, resp.text
    # The admin can give an organization a new key when it lost it.
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    resp = await org.service.client.post(
        f"/api/v1/organizations/{org.id}/rotate-api-key", json={"overlapSeconds": 0},
        headers=admin)
    assert resp.status_code == 200
    async with as_key(org.service, resp.json()["apiKey"]) as rescued, \
            as_key(org.service, newest) as lost:
        assert (await rescued.get("/api/v1/gateways")).status_code == 200
        assert (await lost.get("/api/v1/gateways")).status_code == 401
        actions = [(e["action"], e["actor"]) for e in (await rescued.get(
            "/api/v1/audit-events", params={"action": "api_key.rotated"})).json()["items"]]
    assert actions == [("api_key.rotated", "api_key")] * 2 + [("api_key.rotated", "admin")]
    resp = await org.service.client.post(
        "/api/v1/organizations/org_01HZZZZZZZZZZZZZZZZZZZZZZZ/rotate-api-key", headers=admin)
    assert resp.status_code == 404
    for bad in ({"overlapSeconds": -1}, {"overlapSeconds": 10**9}, {"overlap": 5}):
        resp = await org.service.client.post(
            f"/api/v1/organizations/{org.id}/rotate-api-key", json=bad, headers=admin)
        assert resp.status_code == 422, bad


async def test_an_ingest_token_rotates_with_an_overlap(org: Org, receiver: Receiver) -> None:
    gateway = await org.gateway()
    old = gateway["ingestToken"]
    resp = await org.api.post(f"/api/v1/gateways/{gateway['id']}/rotate-token", json={})
    assert resp.status_code == 200, resp.text
    new = resp.json()["ingestToken"]
    for token in (old, new):  # the default overlap (24 h): both work
        assert (await org.ingest(token, "values", message())).status_code == 202
    resp = await org.api.post(f"/api/v1/gateways/{gateway['id']}/rotate-token",
                              json={"overlapSeconds": 0})
    newest = resp.json()["ingestToken"]
    assert (await org.ingest(new, "values", message())).status_code == 401
    assert (await org.ingest(old, "values", message())).status_code == 401
    assert (await org.ingest(newest, "values", message())).status_code == 202
    resp = await org.api.post("/api/v1/gateways/gw_01HZZZZZZZZZZZZZZZZZZZZZZZ/rotate-token")
    assert resp.status_code == 404
    rotations = await events(org, targetId=gateway["id"], action="gateway.token_rotated")
    assert [e["details"]["overlapSeconds"] for e in rotations] == [86400, 0]
    assert old not in str(rotations) and newest not in str(rotations)


async def test_a_subscription_key_rotates_with_an_overlap(org: Org) -> None:
    created = (await org.api.post("/api/v1/subscription-keys", json={"name": "dev"})).json()
    resp = await org.api.post(f"/api/v1/subscription-keys/{created['id']}/rotate",
                              json={"overlapSeconds": 60})
    assert resp.status_code == 200
    new = resp.json()["key"]

    async def status(key: str) -> int:
        # No token: a valid key gets past the key check to the token check (401 invalid_token).
        resp = await org.service.client.get("/smarther/v2.0/plants",
                                            headers={"Ocp-Apim-Subscription-Key": key})
        return 0 if "subscription key" in resp.json()["message"] else resp.status_code

    assert await status(created["key"]) == 401 and await status(new) == 401
    await org.api.post(f"/api/v1/subscription-keys/{created['id']}/rotate",
                       json={"overlapSeconds": 0})
    assert await status(created["key"]) == 0 and await status(new) == 0


async def test_the_audit_log_says_who_changed_what(service: Service, receiver: Receiver) -> None:
    org, other = await service.new_org("Acme"), await service.new_org("Other")
    gateway = await org.gateway()
    connector = await org.connector(receiver.url, secret=None)
    trigger = await org.trigger(connector["id"], ["values"], [gateway["id"]])
    await org.api.patch(f"/api/v1/connectors/{connector['id']}", json={"active": False})
    rotated = (await org.api.post(f"/api/v1/connectors/{connector['id']}/rotate-secret")).json()
    await org.api.delete(f"/api/v1/connectors/{connector['id']}/triggers/{trigger['id']}")
    await org.api.delete(f"/api/v1/connectors/{connector['id']}")
    key = (await org.api.post("/api/v1/subscription-keys", json={"name": "dev"})).json()
    await org.api.delete(f"/api/v1/subscription-keys/{key['id']}")
    client = (await org.api.post("/api/v1/oauth-clients", json={
        "name": "App", "redirectUris": ["https://a.example/cb"]})).json()
    await org.api.delete(f"/api/v1/oauth-clients/{client['clientId']}")

    log = await events(org)
    assert [(e["action"], e["targetId"]) for e in log] == [
        ("gateway.created", gateway["id"]),
        ("connector.created", connector["id"]),
        ("trigger.created", trigger["id"]),
        ("connector.updated", connector["id"]),
        ("connector.secret_rotated", connector["id"]),
        ("trigger.deleted", trigger["id"]),
        ("connector.deleted", connector["id"]),
        ("subscription_key.created", key["id"]),
        ("subscription_key.deleted", key["id"]),
        ("oauth_client.created", client["clientId"]),
        ("oauth_client.deleted", client["clientId"]),
    ]
    assert all(e["actor"] == "api_key" and e["at"] for e in log)
    assert log[3]["details"] == {"fields": ["active"], "active": False}
    assert log[2]["details"] == {"connectorId": connector["id"], "kinds": ["values"],
                                 "gatewayIds": [gateway["id"]]}
    # No secret given or shown appears in the log.
    text = str(log)
    for secret in (connector["secret"], rotated["secret"], key["key"], client["clientSecret"],
                   gateway["ingestToken"], org.api_key):
        assert secret not in text
    # Filters, and nothing of it for another organization.
    only = await events(org, targetId=connector["id"])
    assert {e["targetId"] for e in only} == {connector["id"]} and len(only) == 4
    assert await events(other) == []
    assert await events(other, targetId=connector["id"]) == []
    resp = await org.api.get("/api/v1/audit-events", params={"since": "yesterday"})
    assert resp.status_code == 422
    page1 = (await org.api.get("/api/v1/audit-events", params={"limit": 4})).json()
    page2 = (await org.api.get("/api/v1/audit-events",
                               params={"limit": 4, "cursor": page1["nextCursor"]})).json()
    assert [e["id"] for e in page1["items"] + page2["items"]] == [e["id"] for e in log[:8]]
    await org.api.aclose()
    await other.api.aclose()
