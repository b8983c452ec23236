"""Schemathesis against the running service's /openapi.json, one test per operation.

Each operation gets a bounded, reproducible run (``derandomize``): cases that fit the schema,
cases that do not, and cases aimed at ids that exist (a gateway, connector, trigger, message,
delivery, plant, module, OAuth2 client, subscription key and plant subscription made first),
sent with the right credential: the admin key for /api/v1/organizations, the organization's
API key for the rest of /api/v1, the ingest token for /ingest/v1, and a subscription key plus
an access token for /smarther/v2.0. Every answer must be below 500, have a documented status
and content type, and match the documented schema (errors included).

Not fuzzed, because nothing meaningful can be generated for them:
- ``POST /oauth2/authorize``: the consent form's answer; it needs a signed-in console session
  and that session's CSRF token from the page, so every generated case is the same refusal.
The console's HTML pages are not in the schema (``include_in_schema=False``).
``POST /smarther/v2.0/plants/{plant_id}/subscription`` is fuzzed without a body: none is
documented, and if one is, its ``EndPointUrl`` must be pinned to the receiver here, since the
service calls that URL at once (the subscription handshake).

The service runs without a delivery worker: a fuzzed ``baseUrl`` must never be called. The
only outgoing requests are to the local receiver (connector test, subscription handshake).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hookstream.services import plugins
from hookstream.services.runtime import Runtime
from hookstream.settings import Settings
from hookstream.web.app import create_app
from tests.support import (
    ADMIN_KEY,
    Org,
    Receiver,
    Service,
    base_settings,
    running_receiver,
    running_service,
)
from tests.test_thermostat_api import echo_validation, issue_token

# HOOKSTREAM_FUZZ_EXAMPLES=500 makes a deeper run of the same tests (not part of make test).
MAX_EXAMPLES = int(os.environ.get("HOOKSTREAM_FUZZ_EXAMPLES", "20"))
EXCLUDED = {
    "POST /oauth2/authorize": "needs a console session and its CSRF token from the page",
}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def _operations() -> list[str]:
    """Every operation of the schema (read at collection, so new routes are fuzzed too)."""
    # create_app only reads the settings until a request comes; the schema needs no database.
    stand_in = cast(Runtime, SimpleNamespace(settings=base_settings("sqlite:///unused.db"),
                                             plugins=plugins.load()))
    paths = create_app(stand_in).openapi()["paths"]
    assert isinstance(paths, dict)
    return [f"{method.upper()} {path}" for path, ops in paths.items() for method in ops]


OPERATIONS = _operations()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Rate limits would answer 429 long before the run ends and hide what lies behind them.
    return {"api_key_rate_per_minute": 0, "ingest_token_rate_per_minute": 0,
            "subscription_key_rate_per_minute": 10**9,
            "connect_timeout": 1.0, "request_timeout": 2.0}


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    # No worker: deliveries stay queued, so no fuzzed URL is ever called.
    async with running_service(settings, worker=False) as svc:
        yield svc


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver(echo_validation) as rec:
        yield rec


@dataclass
class World:
    """What exists before the run: ids for path parameters, and the credentials."""

    base_url: str
    ids: dict[str, str]
    api_key: str
    ingest_token: str
    subscription_key: str
    access_token: str

    def headers(self, path: str) -> dict[str, str]:
        """The credential an operation under ``path`` takes."""
        if path.startswith("/api/v1/organizations"):
            return {"Authorization": f"Bearer {ADMIN_KEY}"}
        if path.startswith("/api/v1/"):
            return {"Authorization": f"Bearer {self.api_key}"}
        if path.startswith("/ingest/"):
            return {"Authorization": f"Bearer {self.ingest_token}"}
        if path.startswith("/smarther/"):
            return {"Ocp-Apim-Subscription-Key": self.subscription_key,
                    "Authorization": f"Bearer {self.access_token}"}
        return {}

    def follow_rotation(self, case: Case[Any], status: int, body: Any) -> None:
        """Keep using the credential a rotation just issued (overlapSeconds may be 0)."""
        if status != 200 or not isinstance(body, dict):
            return
        params = case.path_parameters or {}
        if "apiKey" in body and params.get("org_id", self.ids["org_id"]) == self.ids["org_id"]:
            self.api_key = body["apiKey"]
        elif "ingestToken" in body and params.get("gateway_id") == self.ids["gateway_id"]:
            self.ingest_token = body["ingestToken"]
        elif "key" in body and params.get("key_id") == self.ids["key_id"]:
            self.subscription_key = body["key"]


async def _world(org: Org, receiver: Receiver) -> World:
    """One of everything an operation can name, made through the API."""
    api = org.api
    gateway = await org.gateway()
    connector = await org.connector(receiver.url)
    trigger = await org.trigger(connector["id"], ["values"], [gateway["id"]])
    resp = await org.ingest(gateway["ingestToken"], "values", {
        "deviceId": "thermo-1", "property": "temp", "timestamp": 1_700_000_000_000,
        "payload": 21.5})
    assert resp.status_code == 202, resp.text
    message_id = resp.json()["ids"][0]
    [delivery] = await org.deliveries()
    plant = (await api.post("/api/v1/plants", json={"name": "Home"})).json()
    module = (await api.post(f"/api/v1/plants/{plant['id']}/modules", json={
        "name": "Living room", "gatewayId": gateway["id"], "deviceId": "thermo-1"})).json()
    client = (await api.post("/api/v1/oauth-clients", json={
        "name": "Thermo App", "redirectUris": ["https://app.example/callback"]})).json()
    key = (await api.post("/api/v1/subscription-keys", json={"name": "dev"})).json()
    token = await issue_token(org.service, org.id, client["clientId"],
                              "comfort.read comfort.write")
    resp = await org.service.client.post(
        f"/smarther/v2.0/plants/{plant['id']}/subscription",
        json={"EndPointUrl": receiver.url + "/smarther"},
        headers={"Ocp-Apim-Subscription-Key": key["key"], "Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 201, resp.text
    ids = {
        "org_id": org.id, "gateway_id": gateway["id"], "connector_id": connector["id"],
        "trigger_id": trigger["id"], "message_id": message_id, "delivery_id": delivery["id"],
        "plant_id": plant["id"], "module_id": module["id"], "client_id": client["clientId"],
        "key_id": key["id"], "subscription_id": resp.json()["subscriptionId"],
        "kind": "values",
        # Query filters, so that lists answer with items too.
        "gatewayId": gateway["id"], "connectorId": connector["id"], "deviceId": "thermo-1",
        "targetId": connector["id"],
    }
    return World(org.service.base_url, ids, org.api_key, gateway["ingestToken"], key["key"],
                 token)


def _strategy(operation: Any, world: World) -> st.SearchStrategy[Case[Any]]:
    """Cases that fit the schema and cases that do not, half of them aimed at what exists."""
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    strategies = [operation.as_strategy(mode) for mode in modes]
    names = [p.name for p in operation.path_parameters]
    path = {n: world.ids[n] for n in names} if all(n in world.ids for n in names) else {}
    query = {q.name: world.ids[q.name] for q in operation.query if q.name in world.ids}
    if path or query:
        # A negative case needs something left to spoil besides the fixed ids.
        varied = operation.body or operation.headers or len(query) < len(operation.query)
        strategies += [
            operation.as_strategy(mode, path_parameters=path or None, query=query or None)
            for mode in (modes if varied else modes[:1])
        ]
    return st.one_of(strategies)


def _operation(world: World, label: str) -> Any:
    """The operation ``label`` ("METHOD /path") of the schema the service serves."""
    schema = schemathesis.openapi.from_url(world.base_url + "/openapi.json",
                                           config=schemathesis.Config())
    method, path = label.split(" ", 1)
    return schema[path][method]


def _send(world: World, case: Case[Any], session: requests.Session,
          headers: dict[str, str] | None = None) -> int:
    """Send ``case`` with its credential and run the checks; returns the status."""
    headers = world.headers(case.path) if headers is None else headers
    response = case.call(base_url=world.base_url, session=session, headers=headers, timeout=30)
    case.validate_response(response, checks=CHECKS, headers=headers)
    body: Any = None
    if response.headers.get("content-type", [""])[0].startswith("application/json"):
        body = response.json()
    world.follow_rotation(case, response.status_code, body)
    return response.status_code


def _fuzz(label: str, world: World) -> None:
    """The schemathesis run of one operation (blocking: the service answers from the loop)."""
    operation = _operation(world, label)
    session = requests.Session()

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                               HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(case=_strategy(operation, world))
    def run(case: Case[Any]) -> None:
        _send(world, case, session)

    try:
        run()
    finally:
        session.close()


# Excluded operations are left out rather than skipped: .ci/run fails on any skip.
@pytest.mark.parametrize("label", [
    pytest.param(label, id=label) for label in OPERATIONS if label not in EXCLUDED
])
async def test_operation_holds_to_its_schema(label: str, org: Org, receiver: Receiver) -> None:
    world = await _world(org, receiver)
    await asyncio.to_thread(_fuzz, label, world)


def test_only_operations_of_the_schema_are_excluded() -> None:
    assert set(EXCLUDED) <= set(OPERATIONS), "an excluded operation is gone from the schema"


def _send_examples(world: World, examples: list[tuple[str, dict[str, Any], int]],
                   headers: dict[str, str] | None = None) -> None:
    with requests.Session() as session:
        for label, fields, status in examples:
            case = _operation(world, label).Case(**fields)
            assert _send(world, case, session, headers) == status, label


async def test_answers_that_once_contradicted_the_schema_now_match_it(
    org: Org, receiver: Receiver
) -> None:
    """Regressions: each of these answers was found by the fuzz run to break /openapi.json."""
    world = await _world(org, receiver)
    ids = world.ids
    subscription = {"plant_id": ids["plant_id"], "subscription_id": ids["subscription_id"]}
    unsubscribe = "DELETE /smarther/v2.0/plants/{plant_id}/subscription/{subscription_id}"
    message = {"deviceId": "d", "property": "p", "timestamp": 1, "payload": 1}
    await asyncio.to_thread(_send_examples, world, [
        # 202 {"accepted", "ids"} was documented as a string.
        ("POST /ingest/v1/{kind}", {"path_parameters": {"kind": "values"}, "body": message,
                                    "media_type": "application/json"}, 202),
        # Errors were documented in FastAPI's {"detail": [...]} shape, and only for 422.
        ("POST /api/v1/gateways", {"body": {}, "media_type": "application/json"}, 422),
        ("GET /api/v1/gateways/{gateway_id}", {"path_parameters": {"gateway_id": "gw_0"}}, 404),
        # Unsubscribing answers 200 without a body, documented as JSON; then none are left,
        # which answers 204, not documented at all.
        (unsubscribe, {"path_parameters": subscription}, 200),
        (unsubscribe, {"path_parameters": subscription}, 404),
        ("GET /smarther/v2.0/subscription", {}, 204),
        ("DELETE /api/v1/plants/{plant_id}", {"path_parameters": {"plant_id": ids["plant_id"]}},
         204),
        ("GET /smarther/v2.0/plants", {}, 204),
    ])
    await asyncio.to_thread(_send_examples, world, [
        ("GET /api/v1/gateways", {}, 401),
        ("POST /ingest/v1/{kind}", {"path_parameters": {"kind": "events"}, "body": message,
                                    "media_type": "application/json"}, 401),
        ("GET /smarther/v2.0/plants", {}, 401),
    ], headers={"Authorization": "Bearer wrong", "Ocp-Apim-Subscription-Key": "wrong"})
