"""Organizations (admin key) and gateways (organization key): the management API contract."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api_checks import ADMIN, error_of, message
from tests.support import ADMIN_KEY, Org, Service

# --- organizations ----------------------------------------------------------------------


async def test_each_key_opens_only_its_own_doors(service: Service, org: Org) -> None:
    # Organizations: the admin key only (the contract allows 401 or 403 for an org key).
    body = {"name": "Intruder"}
    post = service.client.post
    error_of(await post("/api/v1/organizations", json=body), 401, "unauthorized")
    wrong = {"Authorization": "Bearer hsa_not_the_admin_key"}
    error_of(await post("/api/v1/organizations", json=body, headers=wrong), 401, "unauthorized")
    basic = {"Authorization": "Basic YWRtaW46YWRtaW4="}
    error_of(await post("/api/v1/organizations", json=body, headers=basic), 401, "unauthorized")
    # An organization's own key does not manage organizations.
    resp = await org.api.post("/api/v1/organizations", json=body)
    assert resp.status_code in (401, 403), resp.text
    error_of(resp, resp.status_code)
    listed = await service.client.get("/api/v1/organizations", headers=ADMIN)
    assert listed.status_code == 200, listed.text
    assert [o["name"] for o in listed.json()["items"]] == ["Acme"]

    # An organization's things: its API key only.
    error_of(await service.client.get("/api/v1/gateways"), 401, "unauthorized")
    wrong = {"Authorization": "Bearer hsk_made_up"}
    error_of(await service.client.get("/api/v1/gateways", headers=wrong), 401, "unauthorized")
    resp = await service.client.get("/api/v1/gateways", headers=ADMIN)
    assert resp.status_code in (401, 403), resp.text
    error_of(resp, resp.status_code)
    gw = await org.gateway()
    as_api = {"Authorization": f"Bearer {gw['ingestToken']}"}
    error_of(await service.client.get("/api/v1/gateways", headers=as_api), 401, "unauthorized")

    # Ingest: a gateway's token only.
    error_of(await org.ingest(org.api_key, "values", message()), 401, "unauthorized")
    error_of(await org.ingest(ADMIN_KEY, "values", message()), 401, "unauthorized")
    assert (await org.ingest(gw["ingestToken"], "values", message())).status_code == 202


async def test_an_organization_is_created_with_a_working_api_key(
    service: Service, subtests: pytest.Subtests
) -> None:
    resp = await service.client.post("/api/v1/organizations", json={"name": "Birch"},
                                     headers=ADMIN)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert set(body) == {"id", "name", "apiKey"}
    assert body["name"] == "Birch"
    assert body["id"] and body["apiKey"] and body["apiKey"] != body["id"]
    key = {"Authorization": f"Bearer {body['apiKey']}"}
    resp = await service.client.get("/api/v1/gateways", headers=key)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"items": [], "nextCursor": None}

    cases: list[tuple[str, Any, str]] = [
        ("missing name", {}, "name"),
        ("unknown field", {"name": "Acme", "colour": "red"}, "colour"),
        ("empty name", {"name": ""}, "name"),
        ("number as name", {"name": 42}, "name"),
    ]
    for label, bad, named in cases:
        with subtests.test(label):
            resp = await service.client.post("/api/v1/organizations", json=bad, headers=ADMIN)
            error_of(resp, 422, names=(named,))
    listed = await service.client.get("/api/v1/organizations", headers=ADMIN)
    assert [o["name"] for o in listed.json()["items"]] == ["Birch"]


# --- gateways ---------------------------------------------------------------------------


async def test_gateway_create_get_list_patch_delete(org: Org) -> None:
    resp = await org.api.post("/api/v1/gateways", json={"name": "Tower 1", "externalId": "T-1"})
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert {"id", "name", "externalId", "ingestToken"} <= set(created)
    assert created["name"] == "Tower 1" and created["externalId"] == "T-1"
    assert created["ingestToken"]
    gid = created["id"]

    got = (await org.api.get(f"/api/v1/gateways/{gid}")).json()
    assert got["id"] == gid and got["name"] == "Tower 1" and got["externalId"] == "T-1"
    # The ingest token is shown once: never by GET, the list, or PATCH.
    assert "ingestToken" not in got
    listed = await org.api.get("/api/v1/gateways")
    assert [g["id"] for g in listed.json()["items"]] == [gid]
    assert created["ingestToken"] not in listed.text

    resp = await org.api.patch(f"/api/v1/gateways/{gid}", json={"name": "Tower One"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "Tower One" and resp.json()["externalId"] == "T-1"
    assert created["ingestToken"] not in resp.text
    resp = await org.api.patch(f"/api/v1/gateways/{gid}", json={"externalId": None})
    assert resp.status_code == 200, resp.text
    got = (await org.api.get(f"/api/v1/gateways/{gid}")).json()
    assert got["name"] == "Tower One" and got["externalId"] is None

    resp = await org.api.delete(f"/api/v1/gateways/{gid}")
    assert resp.status_code == 204, resp.text
    error_of(await org.api.get(f"/api/v1/gateways/{gid}"), 404, "not_found", names=(gid,))
    error_of(await org.api.delete(f"/api/v1/gateways/{gid}"), 404, "not_found", names=(gid,))
    error_of(await org.api.patch(f"/api/v1/gateways/{gid}", json={"name": "x"}), 404,
             "not_found", names=(gid,))
    assert (await org.api.get("/api/v1/gateways")).json()["items"] == []


async def test_a_bad_gateway_body_is_422_naming_the_field(
    org: Org, subtests: pytest.Subtests
) -> None:
    gw = await org.gateway("Kept")
    cases: list[tuple[str, str, Any, str]] = [
        ("create without name", "POST", {}, "name"),
        ("create with unknown field", "POST", {"name": "T", "serial": "x"}, "serial"),
        ("create with empty name", "POST", {"name": ""}, "name"),
        ("create with number externalId", "POST", {"name": "T", "externalId": 7}, "externalId"),
        ("create with null name", "POST", {"name": None}, "name"),
        ("create without a body", "POST", None, "body"),
        ("create with an array", "POST", [{"name": "T"}], "body"),
        ("patch without a body", "PATCH", None, "body"),
        ("patch the token", "PATCH", {"ingestToken": "hsi_mine"}, "ingestToken"),
        ("patch an empty name", "PATCH", {"name": ""}, "name"),
    ]
    for label, method, body, named in cases:
        with subtests.test(label):
            url = "/api/v1/gateways" if method == "POST" else f"/api/v1/gateways/{gw['id']}"
            error_of(await org.api.request(method, url, json=body), 422, names=(named,))
    listed = (await org.api.get("/api/v1/gateways")).json()["items"]
    assert [(g["id"], g["name"]) for g in listed] == [(gw["id"], "Kept")]


async def test_a_deleted_gateways_token_is_refused_at_ingest(org: Org) -> None:
    gw = await org.gateway()
    other = await org.gateway("Other")
    assert (await org.ingest(gw["ingestToken"], "values", message())).status_code == 202
    assert (await org.api.delete(f"/api/v1/gateways/{gw['id']}")).status_code == 204
    error_of(await org.ingest(gw["ingestToken"], "values", message()), 401, "unauthorized")
    # Only that gateway's token stops working.
    assert (await org.ingest(other["ingestToken"], "values", message())).status_code == 202


async def test_gateway_list_pages_with_limit_and_cursor(org: Org) -> None:
    made = [(await org.gateway(f"G{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    sizes = []
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        resp = await org.api.get("/api/v1/gateways", params=params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert set(body) == {"items", "nextCursor"}
        sizes.append(len(body["items"]))
        seen.extend(g["id"] for g in body["items"])
        cursor = body["nextCursor"]
        if cursor is None:
            break
        assert len(sizes) < 10, "the cursor never ends"
    assert sizes == [2, 2, 1]
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))
    whole = (await org.api.get("/api/v1/gateways", params={"limit": 1000})).json()
    assert len(whole["items"]) == 5 and whole["nextCursor"] is None


async def test_bad_list_parameters_are_422(org: Org, subtests: pytest.Subtests) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "Zm9vYmFy"}, "cursor"),  # base64, but not a cursor this API made
        ({"limit": 0}, "limit"),
        ({"limit": 5000}, "limit"),
        ({"limit": "ten"}, "limit"),
    ]
    for params in cases:
        for path in ("/api/v1/gateways", "/api/v1/connectors", "/api/v1/messages",
                     "/api/v1/deliveries"):
            with subtests.test(path=path, params=params[0]):
                error_of(await org.api.get(path, params=params[0]), 422, names=(params[1],))
