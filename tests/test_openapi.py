"""/openapi.json is fit for client generators: designed operation ids, one described tag per
operation, a summary each, examples that are valid requests, and every error documented in the
shape the API answers it (tests/test_openapi_client.py generates and uses a client)."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pydantic import BaseModel

from hookstream.pipeline.message import DatastreamMessage
from hookstream.services import plugins
from hookstream.services.runtime import Runtime
from hookstream.services.schemas import (
    ConnectorCreate,
    GatewayCreate,
    TransformPreview,
    TriggerCreate,
)
from hookstream.web.app import create_app
from tests.support import base_settings

# camelCase, verb first: what a generator turns into create_gateway, list_deliveries, ...
OPERATION_ID = re.compile(r"(?:create|list|get|update|delete|set|rotate|replay|cancel|test|"
                          r"ingest|request|revoke|start|decide|preview)(?:[A-Z][a-z0-9]+)+")
MAX_ID_LENGTH = 40  # generators make file names of them, with a suffix or two
# Operations whose errors are not the API's {"error": {...}} or Smarther's shape.
NO_INPUT = {"getHealth", "getReadiness", "getMetrics"}  # nothing to refuse: no 4xx
BROWSER = {"startAuthorization", "decideAuthorization"}  # their errors are pages (HTML)
OAUTH_ERRORS = {"requestToken", "revokeToken"}  # RFC 6749 5.2, documented as OAuthError


def _schema() -> dict[str, Any]:
    # create_app only reads the settings until a request comes; the schema needs no database.
    stand_in = cast(Runtime, SimpleNamespace(settings=base_settings("sqlite:///unused.db"),
                                             plugins=plugins.load()))
    schema: dict[str, Any] = create_app(stand_in).openapi()
    return schema


SCHEMA = _schema()
OPERATIONS = {
    operation["operationId"]: (method.upper(), path, operation)
    for path, item in SCHEMA["paths"].items() for method, operation in item.items()
}


def test_every_operation_has_a_designed_unique_id() -> None:
    ids = [op.get("operationId", "") for item in SCHEMA["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert len(ids) > 60  # the datastream's and the thermostat cloud's
    bad = [i for i in ids if not OPERATION_ID.fullmatch(i) or len(i) > MAX_ID_LENGTH]
    assert not bad, f"not a short camelCase verb + resource: {bad}"
    # The names the issue and the contract give.
    for name, (method, path) in {
        "createGateway": ("POST", "/api/v1/gateways"),
        "listGateways": ("GET", "/api/v1/gateways"),
        "getGateway": ("GET", "/api/v1/gateways/{gateway_id}"),
        "listDeliveries": ("GET", "/api/v1/deliveries"),
        "replayConnector": ("POST", "/api/v1/connectors/{connector_id}/replay"),
        "createTrigger": ("POST", "/api/v1/connectors/{connector_id}/triggers"),
        "listMessages": ("GET", "/api/v1/messages"),
        "ingestMessages": ("POST", "/ingest/v1/{kind}"),
    }.items():
        assert OPERATIONS[name][:2] == (method, path), name


def test_every_operation_has_one_described_tag_and_a_summary() -> None:
    declared = {t["name"]: t.get("description", "") for t in SCHEMA["tags"]}
    assert len(declared) == len(SCHEMA["tags"])
    used = set()
    for name, (_, _, operation) in OPERATIONS.items():
        assert len(operation.get("tags", [])) == 1, (name, operation.get("tags"))
        used.add(operation["tags"][0])
        assert operation.get("summary", "").strip(), f"{name} has no summary"
    assert used == set(declared), (used ^ set(declared))
    assert all(declared.values()), "a tag without a description"
    assert {"gateways", "connectors", "triggers", "messages", "deliveries", "ingest", "plants",
            "smarther"} <= used


def _error_ref(operation: dict[str, Any], status: str) -> str:
    response = operation["responses"].get(status, {})
    ref: str = response.get("content", {}).get("application/json", {}).get("schema", {}).get(
        "$ref", "")
    return ref.removeprefix("#/components/schemas/")


def test_every_operation_documents_its_error_body() -> None:
    components = SCHEMA["components"]["schemas"]
    for name, (_, path, operation) in OPERATIONS.items():
        refusals = {s: r for s, r in operation["responses"].items() if s.startswith("4")}
        if name in NO_INPUT:
            assert not refusals, name
            continue
        if name in BROWSER:
            assert refusals and not any("application/json" in r.get("content", {})
                                        for r in refusals.values()), name
            continue
        if name in OAUTH_ERRORS:
            assert _error_ref(operation, "400") == _error_ref(operation, "401") == "OAuthError"
            continue
        expected = "SmartherError" if path.startswith("/smarther/") else "Error"
        assert _error_ref(operation, "4XX") == expected, name
        assert _error_ref(operation, "503") == expected, name
        if "422" in operation["responses"]:
            assert _error_ref(operation, "422") == expected, name
    assert components["Error"]["required"] == ["error"]
    assert components["Error"]["properties"]["error"]["required"] == ["code", "message"]
    assert components["SmartherError"]["required"] == ["statusCode", "message"]
    assert components["OAuthError"]["required"] == ["error"]
    # FastAPI's {"detail": [...]} is never answered, so it is not documented.
    assert "HTTPValidationError" not in components


@pytest.mark.parametrize(("operation_id", "model"), [
    ("createGateway", GatewayCreate),
    ("createConnector", ConnectorCreate),
    ("createTrigger", TriggerCreate),
    ("ingestMessages", DatastreamMessage),
    ("previewTransform", TransformPreview),
])
def test_the_main_bodies_have_examples_that_are_valid_requests(
    operation_id: str, model: type[BaseModel]
) -> None:
    media = OPERATIONS[operation_id][2]["requestBody"]["content"]["application/json"]
    examples = media["examples"]
    assert len(examples) >= 2
    for name, example in examples.items():
        assert example["summary"], name
        values = example["value"] if isinstance(example["value"], list) else [example["value"]]
        for value in values:
            model.model_validate(value)  # raises, naming the field, when an example is wrong


def test_query_parameters_are_not_nullable() -> None:
    # A query string has no null; generators would make anyOf [X, null] an extra type.
    nullable = [
        (name, p["name"]) for name, (_, _, operation) in OPERATIONS.items()
        for p in operation.get("parameters", []) if "null" in str(p.get("schema"))
    ]
    assert not nullable
    kind = next(p for p in OPERATIONS["listMessages"][2]["parameters"] if p["name"] == "kind")
    assert kind["schema"]["enum"] == ["values", "events", "alarms"]
