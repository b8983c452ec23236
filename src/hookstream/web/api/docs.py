"""What /openapi.json says beyond the routes themselves: the tags, the request examples, and
the clean-up that keeps the document fit for client generators.

Every operation has a designed ``operationId`` (``createGateway``, ``listDeliveries``, ...),
given by ``operation_id=`` on its route; generators name their functions and models after it
(tests/test_openapi.py checks each is camelCase, short and unique)."""

from __future__ import annotations

from typing import Any

from fastapi.openapi.models import Example

# One tag per resource, in the order /docs shows them; a plug-in appends its own (add_tags).
TAGS: list[dict[str, Any]] = [
    {"name": "organizations", "description": "Tenants, managed with the admin key; each has "
                                             "an API key for everything else."},
    {"name": "gateways", "description": "The gateways that send messages, each with its "
                                        "ingest token."},
    {"name": "connectors", "description": "Where and how messages are delivered: base URL, "
                                          "routes per kind, signing secret, authentication."},
    {"name": "triggers", "description": "Which kinds of messages, from which gateways, a "
                                        "connector receives."},
    {"name": "transforms", "description": "Try a connector's JSONata transform on a message: "
                                          "the body it would send."},
    {"name": "messages", "description": "The message log: every accepted message and the "
                                        "deliveries it was routed to."},
    {"name": "deliveries", "description": "The delivery log, each delivery's attempts, "
                                          "replay and cancel."},
    {"name": "alerts", "description": "Where the organization's own alerts go "
                                      "(connector.deactivated, delivery.failed)."},
    {"name": "audit", "description": "Who changed what in the organization."},
    {"name": "ingest", "description": "Gateways post their messages here, with their ingest "
                                      "token."},
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics."},
]


def add_tags(app: Any, tags: list[dict[str, Any]]) -> None:
    """Append a plug-in's tags to the ones /openapi.json lists."""
    app.openapi_tags = [*(app.openapi_tags or []), *tags]


def _example(summary: str, value: Any) -> Example:
    return Example(summary=summary, value=value)


GATEWAY_EXAMPLES: dict[str, Example] = {
    "gateway": _example("A gateway with the id your own systems know it by",
                        {"name": "Boiler room", "externalId": "tower-0042"}),
    "minimal": _example("Only a name", {"name": "Boiler room"}),
}

CONNECTOR_EXAMPLES: dict[str, Example] = {
    "bearer": _example(
        "Deliver to three routes of one server, with a bearer token, switched on",
        {"name": "Production receiver", "baseUrl": "https://hooks.example.com",
         "routes": {"values": "/iot/values", "events": "/iot/events", "alarms": "/iot/alarms"},
         "authentication": {"type": "bearer", "token": "s3cr3t-token"}, "active": True},
    ),
    "own_secret": _example(
        "Your own signing secret, basic authentication, a retry schedule; off until switched on",
        {"name": "Staging receiver", "baseUrl": "https://staging.example.com/webhooks",
         "routes": {"values": "", "events": "", "alarms": "/alarms"},
         "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
         "authentication": {"type": "basic", "username": "hookstream", "password": "pa55word"},
         "retry": {"schedule": [5, 60, 600], "maxAttempts": 4}},
    ),
    "transform": _example(
        "Reshape every body with a JSONata transform before it is signed and sent",
        {"name": "ThingsBoard", "baseUrl": "https://tb.example.com/api/v1/ACCESS_TOKEN",
         "routes": {"values": "/telemetry", "events": "/telemetry", "alarms": "/telemetry"},
         "transform": {"language": "jsonata",
                       "expression": '{"ts": timestamp, "values": {slug: scaledPayload}}'}},
    ),
}

_VALUE = {"deviceId": "boiler-1", "property": "temperature", "timestamp": 1767225600000,
          "payload": 642, "receivedAt": 1767225600120, "scaledPayload": 64.2, "name": "Boiler 1",
          "unit": "°C", "externalId": "BLR-1", "propertyId": "prop-1", "equipmentId": "eq-1",
          "gatewayInterfaceId": "gwi-1", "slug": "temperature", "isOutOfService": False,
          "tags": {"site": "north"}}
TRANSFORM_EXAMPLES: dict[str, Example] = {
    "reshape": _example(
        "ThingsBoard's telemetry shape from one value message",
        {"expression": '{"ts": timestamp, "values": {slug: scaledPayload}}', "message": _VALUE},
    ),
    "batch": _example(
        "A batch (an array of messages) reduced to one reading per device",
        {"expression": '$.{"device": deviceId, "value": scaledPayload}',
         "message": [_VALUE, {**_VALUE, "deviceId": "boiler-2", "scaledPayload": 58.0}]},
    ),
}

TRIGGER_EXAMPLES: dict[str, Example] = {
    "gateways": _example("Values and alarms from two gateways",
                         {"kinds": ["values", "alarms"],
                          "gatewayIds": ["gw_01J0000000000000000000000A",
                                         "gw_01J0000000000000000000000B"]}),
    "all": _example("Every kind from every gateway, present and future",
                    {"kinds": ["values", "events", "alarms"], "allGateways": True}),
}

_MESSAGE = {"deviceId": "thermo-1", "property": "temperature", "timestamp": 1_700_000_000_000,
            "payload": 21.5, "unit": "°C", "tags": {"floor": "2"}}
INGEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "one": {"summary": "One message", "value": _MESSAGE},
    "batch": {"summary": "An array of messages (up to 1000)", "value": [
        _MESSAGE,
        {"deviceId": "thermo-1", "property": "humidity", "timestamp": 1_700_000_000_000,
         "payload": 48, "unit": "%"},
    ]},
}


def untitle_responses(schema: dict[str, Any]) -> None:
    """Drop the titles FastAPI gives untyped answers ("Response Creategateway"), in place.

    Generators name a model after its title; without one they use the operation and status
    (``CreateGatewayResponse201``)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                for media in response.get("content", {}).values():
                    body = media.get("schema", {})
                    if str(body.get("title", "")).startswith("Response "):
                        del body["title"]


def plain_parameters(schema: dict[str, Any]) -> None:
    """Make an optional ``X | None`` query parameter plain ``X`` in the document, in place.

    A query string cannot carry a null (left out is how it is absent), and generators make
    ``anyOf [X, null]`` into extra types (``ListMessagesKindType0``)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                body = parameter.get("schema", {})
                options = body.get("anyOf", [])
                others = [o for o in options if o != {"type": "null"}]
                if parameter.get("required") or len(others) != 1 or len(options) != 2:
                    continue
                del body["anyOf"]
                body.update(others[0])
