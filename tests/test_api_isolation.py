"""Tenant isolation: another organization's ids answer exactly like ids that do not exist."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api_checks import error_of, message, shape
from tests.support import Org, Receiver, Service

MADE_UP = {
    "gateways": "gw_01HZZZZZZZZZZZZZZZZZZZZZZZ",
    "connectors": "con_01HZZZZZZZZZZZZZZZZZZZZZZZ",
    "messages": "msg_01HZZZZZZZZZZZZZZZZZZZZZZZ",
    "deliveries": "dlv_01HZZZZZZZZZZZZZZZZZZZZZZZ",
}


@pytest.fixture
async def b(service: Service) -> AsyncIterator[Org]:
    """A second organization, B."""
    other = await service.new_org("B")
    yield other
    await other.api.aclose()


async def org_a_things(a: Org, receiver: Receiver) -> dict[str, Any]:
    """A gateway, an active connector with a trigger, a message and its delivery."""
    gw = await a.gateway("A's tower")
    con = await a.connector(receiver.url, name="A's receiver")
    trg = await a.trigger(con["id"], ["values"], [gw["id"]])
    resp = await a.ingest(gw["ingestToken"], "values", message("a-device"))
    assert resp.status_code == 202, resp.text
    (msg_id,) = resp.json()["ids"]
    (dlv,) = await a.deliveries()
    return {"gateways": gw["id"], "connectors": con["id"], "messages": msg_id,
            "deliveries": dlv["id"], "trigger": trg["id"], "token": gw["ingestToken"]}


async def snapshot(a: Org, ids: dict[str, Any]) -> dict[str, Any]:
    """What A sees of its things (times of deliveries move on; the rest must not)."""
    got: dict[str, Any] = {}
    for kind in ("gateways", "connectors", "messages"):
        resp = await a.api.get(f"/api/v1/{kind}/{ids[kind]}")
        assert resp.status_code == 200, resp.text
        got[kind] = resp.json()
    got["messages"].pop("deliveries")
    got["triggers"] = (await a.api.get(f"/api/v1/connectors/{ids['connectors']}/triggers")).json()
    return got


async def test_another_organizations_ids_answer_like_made_up_ones(
    org: Org, b: Org, receiver: Receiver, subtests: pytest.Subtests
) -> None:
    a = org
    ids = await org_a_things(a, receiver)
    before = await snapshot(a, ids)

    requests: list[tuple[str, str, str, dict[str, Any] | None]] = []
    for kind in ("gateways", "connectors", "messages", "deliveries"):
        requests.append((kind, "GET", f"/api/v1/{kind}/{{id}}", None))
    requests += [
        ("gateways", "PATCH", "/api/v1/gateways/{id}", {"name": "taken over"}),
        ("gateways", "DELETE", "/api/v1/gateways/{id}", None),
        ("connectors", "PATCH", "/api/v1/connectors/{id}",
         {"active": False, "baseUrl": "https://evil.example.com"}),
        ("connectors", "DELETE", "/api/v1/connectors/{id}", None),
        ("connectors", "GET", "/api/v1/connectors/{id}/triggers", None),
        ("connectors", "POST", "/api/v1/connectors/{id}/triggers",
         {"kinds": ["values"], "allGateways": True}),
        ("connectors", "DELETE", f"/api/v1/connectors/{{id}}/triggers/{ids['trigger']}", None),
        ("connectors", "POST", "/api/v1/connectors/{id}/rotate-secret", None),
        ("connectors", "POST", "/api/v1/connectors/{id}/replay",
         {"since": "2020-01-01T00:00:00Z"}),
        ("deliveries", "POST", "/api/v1/deliveries/{id}/replay", None),
    ]
    for kind, method, template, body in requests:
        with subtests.test(f"{method} {template} ({kind})"):
            real, fake = ids[kind], MADE_UP[kind]
            theirs = await b.api.request(method, template.format(id=real), json=body)
            made_up = await b.api.request(method, template.format(id=fake), json=body)
            assert made_up.status_code == 404, made_up.text
            err_fake = error_of(made_up, 404)
            err_real = error_of(theirs, 404)
            assert shape(err_real, real) == shape(err_fake, fake)
            assert real not in made_up.text

    # Not through B's own connector either.
    b_con = await b.connector(receiver.url, name="B's receiver")
    url = f"/api/v1/connectors/{b_con['id']}/triggers/"
    theirs = error_of(await b.api.delete(url + ids["trigger"]), 404)
    made_up = error_of(await b.api.delete(url + "trg_01HZZZZZZZZZZZZZZZZZZZZZZZ"), 404)
    assert shape(theirs, ids["trigger"]) == shape(made_up, "trg_01HZZZZZZZZZZZZZZZZZZZZZZZ")

    # A's things are exactly as they were, and still work.
    assert await snapshot(a, ids) == before
    assert (await a.ingest(ids["token"], "values", message("a-device"))).status_code == 202
    await receiver.wait_for(2)


async def test_a_trigger_cannot_name_another_organizations_gateway(
    org: Org, b: Org, receiver: Receiver
) -> None:
    a = org
    a_gw = await a.gateway("A's tower")
    b_con = await b.connector(receiver.url)
    url = f"/api/v1/connectors/{b_con['id']}/triggers"
    theirs = await b.api.post(url, json={"kinds": ["values"], "gatewayIds": [a_gw["id"]]})
    made_up = await b.api.post(url, json={"kinds": ["values"],
                                          "gatewayIds": [MADE_UP["gateways"]]})
    err_real = error_of(theirs, 422, "unknown_gateway", names=(a_gw["id"],))
    err_fake = error_of(made_up, 422, "unknown_gateway", names=(MADE_UP["gateways"],))
    assert shape(err_real, a_gw["id"]) == shape(err_fake, MADE_UP["gateways"])
    assert (await b.api.get(url)).json()["items"] == []
    # Nothing of A's reaches B's receiver through an all-gateways trigger either.
    await b.trigger(b_con["id"], ["values"])
    assert (await a.ingest(a_gw["ingestToken"], "values", message())).status_code == 202
    assert await b.deliveries() == []
    assert (await b.api.get("/api/v1/messages")).json()["items"] == []


async def test_lists_show_only_the_organizations_own_items(
    org: Org, b: Org, receiver: Receiver
) -> None:
    a = org
    ids = await org_a_things(a, receiver)
    b_gw = await b.gateway("B's tower")
    assert (await b.ingest(b_gw["ingestToken"], "values", message("b-device"))).status_code == 202

    gateways = (await b.api.get("/api/v1/gateways")).json()["items"]
    assert [g["id"] for g in gateways] == [b_gw["id"]]
    assert (await b.api.get("/api/v1/connectors")).json()["items"] == []
    assert await b.deliveries() == []
    msgs = (await b.api.get("/api/v1/messages")).json()["items"]
    assert [m["message"]["deviceId"] for m in msgs] == ["b-device"]
    # Filtering by A's ids finds nothing rather than A's data.
    for params in ({"gatewayId": ids["gateways"]}, {"deviceId": "a-device"}):
        assert (await b.api.get("/api/v1/messages", params=params)).json()["items"] == []
    params = {"connectorId": ids["connectors"]}
    assert (await b.api.get("/api/v1/deliveries", params=params)).json()["items"] == []
    # And A still sees its own.
    assert [g["id"] for g in (await a.api.get("/api/v1/gateways")).json()["items"]] == [
        ids["gateways"]]
    assert len((await a.api.get("/api/v1/messages")).json()["items"]) == 1
