"""No bad input gets a 500: every one is a 4xx with the contract's error body."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from tests.api_checks import ADMIN, message
from tests.support import Org

ROUTES = {"values": "/v", "events": "/e", "alarms": "/a"}
CONNECTOR = {"name": "c", "baseUrl": "https://erp.example.com", "routes": ROUTES}


def cursor_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# (label, who, method, path, body): who is "org", "admin", "ingest" or "none"; a body of
# bytes is sent as is, anything else as JSON; "{gw}", "{con}" and "{token}" are filled in.
BAD_REQUESTS: list[tuple[str, str, str, str, Any]] = [
    # organizations
    ("org without key", "none", "POST", "/api/v1/organizations", {"name": "x"}),
    ("org with org key", "org", "POST", "/api/v1/organizations", {"name": "x"}),
    ("org without name", "admin", "POST", "/api/v1/organizations", {}),
    ("org unknown field", "admin", "POST", "/api/v1/organizations", {"name": "x", "y": 1}),
    ("org body an array", "admin", "POST", "/api/v1/organizations", [{"name": "x"}]),
    ("org body malformed", "admin", "POST", "/api/v1/organizations", b'{"name": '),
    ("org body not UTF-8", "admin", "POST", "/api/v1/organizations", b'{"name": "\xff\xfe"}'),
    ("org name with NUL", "admin", "POST", "/api/v1/organizations", {"name": "a\u0000b"}),
    ("org name a lone surrogate", "admin", "POST", "/api/v1/organizations",
     b'{"name": "\\ud800"}'),
    ("org name too long", "admin", "POST", "/api/v1/organizations", {"name": "x" * 201}),
    # gateways
    ("gateway without key", "none", "GET", "/api/v1/gateways", None),
    ("gateway with admin key", "admin", "GET", "/api/v1/gateways", None),
    ("gateway without name", "org", "POST", "/api/v1/gateways", {}),
    ("gateway without body", "org", "POST", "/api/v1/gateways", None),
    ("gateway body null", "org", "POST", "/api/v1/gateways", b"null"),
    ("gateway form body", "org", "POST", "/api/v1/gateways", b"name=x"),
    ("gateway unknown field", "org", "POST", "/api/v1/gateways", {"name": "x", "z": 1}),
    ("gateway name with NUL", "org", "POST", "/api/v1/gateways", {"name": "a\u0000"}),
    ("gateway externalId with NUL", "org", "POST", "/api/v1/gateways",
     {"name": "a", "externalId": "\u0000"}),
    ("gateway name a lone surrogate", "org", "POST", "/api/v1/gateways",
     b'{"name": "a\\udc00"}'),
    ("gateway externalId too long", "org", "POST", "/api/v1/gateways",
     {"name": "a", "externalId": "x" * 201}),
    ("gateway made-up id", "org", "GET", "/api/v1/gateways/gw_nope", None),
    ("gateway id with NUL", "org", "GET", "/api/v1/gateways/gw_%00", None),
    ("gateway id very long", "org", "GET", "/api/v1/gateways/" + "g" * 5000, None),
    ("gateway patch NUL", "org", "PATCH", "/api/v1/gateways/{gw}", {"name": "\u0000"}),
    ("gateway patch bad id", "org", "PATCH", "/api/v1/gateways/%00", {"name": "x"}),
    ("gateway delete NUL id", "org", "DELETE", "/api/v1/gateways/%00", None),
    ("gateway limit 0", "org", "GET", "/api/v1/gateways?limit=0", None),
    ("gateway limit 5000", "org", "GET", "/api/v1/gateways?limit=5000", None),
    ("gateway limit huge", "org", "GET", "/api/v1/gateways?limit=99999999999999999999", None),
    ("gateway bad cursor", "org", "GET", "/api/v1/gateways?cursor=%%%", None),
    ("gateway cursor with NUL", "org", "GET",
     "/api/v1/gateways?cursor=" + cursor_of(b"gw_\x00"), None),
    ("gateway cursor not UTF-8", "org", "GET",
     "/api/v1/gateways?cursor=" + cursor_of(b"gw_\xff\xfe"), None),
    # connectors
    ("connector without routes", "org", "POST", "/api/v1/connectors",
     {"name": "c", "baseUrl": "https://x.example.com"}),
    ("connector ftp", "org", "POST", "/api/v1/connectors", {**CONNECTOR, "baseUrl": "ftp://x"}),
    ("connector bad port", "org", "POST", "/api/v1/connectors",
     {**CONNECTOR, "baseUrl": "http://x.example.com:99999"}),
    ("connector IPv6 junk", "org", "POST", "/api/v1/connectors",
     {**CONNECTOR, "baseUrl": "http://[::1/x"}),
    ("connector secret junk", "org", "POST", "/api/v1/connectors",
     {**CONNECTOR, "secret": "whsec_%%%"}),
    ("connector auth type", "org", "POST", "/api/v1/connectors",
     {**CONNECTOR, "authentication": {"type": "kerberos"}}),
    ("connector auth not an object", "org", "POST", "/api/v1/connectors",
     {**CONNECTOR, "authentication": "bearer"}),
    ("connector auth without type", "org", "POST", "/api/v1/connectors",
     {**CONNECTOR, "authentication": {"token": "t"}}),
    ("connector header with newline", "org", "POST", "/api/v1/connectors",
     {**CONNECTOR, "authentication": {"type": "bearer", "token": "a\r\nX-Evil: 1"}}),
    ("connector name with NUL", "org", "POST", "/api/v1/connectors",
     {**CONNECTOR, "name": "\u0000"}),
    ("connector route with NUL", "org", "POST", "/api/v1/connectors",
     {**CONNECTOR, "routes": {**ROUTES, "values": "/\u0000"}}),
    ("connector patch secret", "org", "PATCH", "/api/v1/connectors/{con}", {"secret": "x"}),
    ("connector patch body a list", "org", "PATCH", "/api/v1/connectors/{con}", [1]),
    ("connector patch without body", "org", "PATCH", "/api/v1/connectors/{con}", None),
    ("trigger without body", "org", "POST", "/api/v1/connectors/{con}/triggers", None),
    ("connector made-up id", "org", "GET", "/api/v1/connectors/con_nope", None),
    ("connector id with NUL", "org", "DELETE", "/api/v1/connectors/%00", None),
    # triggers
    ("trigger no kinds", "org", "POST", "/api/v1/connectors/{con}/triggers",
     {"kinds": [], "allGateways": True}),
    ("trigger bad kind", "org", "POST", "/api/v1/connectors/{con}/triggers",
     {"kinds": ["x"], "allGateways": True}),
    ("trigger both scopes", "org", "POST", "/api/v1/connectors/{con}/triggers",
     {"kinds": ["values"], "allGateways": True, "gatewayIds": ["{gw}"]}),
    ("trigger no scope", "org", "POST", "/api/v1/connectors/{con}/triggers",
     {"kinds": ["values"]}),
    ("trigger gateway with NUL", "org", "POST", "/api/v1/connectors/{con}/triggers",
     {"kinds": ["values"], "gatewayIds": ["gw_\u0000"]}),
    ("trigger gateway not a string", "org", "POST", "/api/v1/connectors/{con}/triggers",
     {"kinds": ["values"], "gatewayIds": [1]}),
    ("trigger made-up connector", "org", "POST", "/api/v1/connectors/con_nope/triggers",
     {"kinds": ["values"], "allGateways": True}),
    ("trigger made-up id", "org", "DELETE", "/api/v1/connectors/{con}/triggers/trg_%00", None),
    # logs
    ("messages bad since", "org", "GET", "/api/v1/messages?since=yesterday", None),
    ("messages since without offset", "org", "GET", "/api/v1/messages?since=2026-01-01T00:00",
     None),
    ("messages bad kind", "org", "GET", "/api/v1/messages?kind=logs", None),
    ("messages device with NUL", "org", "GET", "/api/v1/messages?deviceId=%00", None),
    ("messages gateway with NUL", "org", "GET", "/api/v1/messages?gatewayId=%00", None),
    ("message made-up id", "org", "GET", "/api/v1/messages/msg_nope", None),
    ("message id with NUL", "org", "GET", "/api/v1/messages/%00", None),
    ("deliveries bad status", "org", "GET", "/api/v1/deliveries?status=lost", None),
    ("deliveries connector with NUL", "org", "GET", "/api/v1/deliveries?connectorId=%00",
     None),
    ("delivery made-up id", "org", "GET", "/api/v1/deliveries/dlv_nope", None),
    ("delivery replay made-up", "org", "POST", "/api/v1/deliveries/dlv_%00/replay", None),
    # ingest
    ("ingest without token", "none", "POST", "/ingest/v1/values", message()),
    ("ingest with org key", "org", "POST", "/ingest/v1/values", message()),
    ("ingest unknown kind", "ingest", "POST", "/ingest/v1/foo", message()),
    ("ingest malformed JSON", "ingest", "POST", "/ingest/v1/values", b"{"),
    ("ingest not UTF-8", "ingest", "POST", "/ingest/v1/values", b'{"deviceId": "\xff"}'),
    ("ingest lone surrogate", "ingest", "POST", "/ingest/v1/values",
     b'{"deviceId": "\\ud800", "property": "p", "timestamp": 1, "payload": 1}'),
    ("ingest unknown field", "ingest", "POST", "/ingest/v1/values", message(x=1)),
    ("ingest timestamp text", "ingest", "POST", "/ingest/v1/values",
     {**message(), "timestamp": "x"}),
    ("ingest timestamp huge", "ingest", "POST", "/ingest/v1/values",
     b'{"deviceId": "d", "property": "p", "timestamp": 99999999999999999999999, "payload": 1}'),
    ("ingest receivedAt over a long", "ingest", "POST", "/ingest/v1/values",
     message(receivedAt=2**63)),
    ("ingest payload huge int", "ingest", "POST", "/ingest/v1/values",
     b'{"deviceId": "d", "property": "p", "timestamp": 1, "payload": 1' + b"0" * 400 + b"}"),
    ("ingest payload deeply nested", "ingest", "POST", "/ingest/v1/values",
     b'{"deviceId": "d", "property": "p", "timestamp": 1, "payload": ' + b"[" * 5000
     + b"]" * 5000 + b"}"),
    ("ingest deviceId with NUL", "ingest", "POST", "/ingest/v1/values",
     message("a\u0000b")),
    ("ingest deviceId too long", "ingest", "POST", "/ingest/v1/values", message("d" * 257)),
    ("ingest tags number", "ingest", "POST", "/ingest/v1/values", message(tags={"a": 1})),
    ("ingest no deviceId", "ingest", "POST", "/ingest/v1/values",
     {"property": "p", "timestamp": 1, "payload": 1}),
    ("ingest 1001", "ingest", "POST", "/ingest/v1/values", [message()] * 1001),
    ("ingest empty array", "ingest", "POST", "/ingest/v1/values", []),
    ("ingest empty body", "ingest", "POST", "/ingest/v1/values", b""),
    ("ingest over 1 MiB", "ingest", "POST", "/ingest/v1/values",
     orjson.dumps(message(payload="x" * (1024 * 1024)))),
    ("ingest GET", "ingest", "GET", "/ingest/v1/values", None),
]


def fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, real in names.items():
            value = value.replace("{" + key + "}", real)
        return value
    if isinstance(value, list):
        return [fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, names) for k, v in value.items()}
    return value


async def test_no_bad_request_gets_a_500(org: Org, subtests: pytest.Subtests) -> None:
    gw = await org.gateway()
    con = (await org.api.post("/api/v1/connectors", json=CONNECTOR)).json()
    names = {"gw": gw["id"], "con": con["id"]}
    keys = {"org": org.api_key, "admin": ADMIN["Authorization"].removeprefix("Bearer "),
            "ingest": gw["ingestToken"]}
    client = org.service.client
    for label, who, method, path, body in BAD_REQUESTS:
        with subtests.test(label):
            headers = {"Content-Type": "application/json"}
            if who in keys:
                headers["Authorization"] = f"Bearer {keys[who]}"
            content = None
            if body is not None:
                content = body if isinstance(body, bytes) else orjson.dumps(fill(body, names))
            resp = await client.request(method, fill(path, names), content=content,
                                        headers=headers)
            assert 400 <= resp.status_code < 500, f"{resp.status_code}: {resp.text[:300]}"
            err = resp.json()["error"]
            assert isinstance(err["code"], str) and err["code"], err
            assert isinstance(err["message"], str) and err["message"], err
    # The service still answers, and none of the bad requests left anything behind.
    assert [g["id"] for g in (await org.api.get("/api/v1/gateways")).json()["items"]] == [
        gw["id"]]
    assert [c["id"] for c in (await org.api.get("/api/v1/connectors")).json()["items"]] == [
        con["id"]]
    assert (await org.api.get("/api/v1/messages")).json()["items"] == []
