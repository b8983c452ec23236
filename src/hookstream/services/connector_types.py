"""Connector types: an HTTP connector (``baseUrl``, ``routes``) or a broker connector (``mqtt``,
``amqp``, ``nats``) with a ``target``; the columns each writes and what the API shows of them.

A broker connector keeps its URL (without credentials) in ``base_url``, so that lists and logs
show where it publishes, and empty routes; its target's shown part in ``target_public`` and its
credentials encrypted in ``target_secret_enc``.
"""

from __future__ import annotations

from typing import Any

import orjson

from hookstream.errors import ValidationFailed
from hookstream.models import Connector
from hookstream.pipeline.deliver.broker_target import BROKER_TYPES, parse
from hookstream.services.runtime import Runtime
from hookstream.services.schemas import ConnectorCreate, ConnectorUpdate
from hookstream.services.targets import target_policy
from hookstream.settings import Settings


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"'{field}': {message}" if not message.startswith("'") else message,
                            details=[{"field": field, "message": message}])


def is_broker(connector_type: str | None) -> bool:
    return connector_type in BROKER_TYPES


def check_broker_url(settings: Settings, url: str) -> None:
    """422 on ``target.url`` when deliveries could never reach the broker: an IP-literal host
    that is refused, or (with HOOKSTREAM_HTTPS_ONLY) a connection without TLS."""
    policy = target_policy(settings)
    if settings.https_only and not url.startswith(("mqtts:", "amqps:")):
        raise _fail("target.url", "HOOKSTREAM_HTTPS_ONLY=true allows only TLS connections "
                    "(mqtts://, amqps://)")
    # url_refusal judges the host as for http(s): the scheme is not its business here.
    why = policy.url_refusal("https:" + url.partition(":")[2])
    if why is not None:
        raise _fail("target.url", why)


def _target_columns(rt: Runtime, connector_type: str, target: object,
                    stored_secret: dict[str, Any] | None) -> dict[str, Any]:
    public, secret = parse(connector_type, target, stored_secret)
    check_broker_url(rt.settings, public["url"])
    return {
        "type": connector_type,
        "base_url": public["url"],
        "route_values": "", "route_events": "", "route_alarms": "",
        "target_public": orjson.dumps(public).decode(),
        "target_secret_enc": rt.box.encrypt(orjson.dumps(secret).decode()) if secret else None,
    }


def _not_for_brokers(body: ConnectorCreate | ConnectorUpdate, connector_type: str) -> None:
    given = body.model_fields_set
    for name in ("baseUrl", "routes"):
        if name in given and getattr(body, name) is not None:
            raise _fail(name, f"'{name}' is for http connectors; a {connector_type} connector "
                        "publishes where its 'target' says")
    auth = body.authentication
    if "authentication" in given and auth is not None and auth.type != "none":
        raise _fail("authentication", f"a {connector_type} connector's credentials go in "
                    "'target' (username and password, or the URL)")


def create_columns(rt: Runtime, body: ConnectorCreate) -> dict[str, Any]:
    """The type's columns of a new connector (checked; 422 naming the field)."""
    if not is_broker(body.type):
        if body.target is not None:
            raise _fail("target", "'target' is for mqtt, amqp and nats connectors; an http "
                        "connector has 'baseUrl' and 'routes'")
        for name in ("baseUrl", "routes"):
            if getattr(body, name) is None:
                raise _fail(name, f"'{name}' is required")
        return {}
    _not_for_brokers(body, body.type)
    if body.target is None:
        raise _fail("target", f"'target' is required for a {body.type} connector")
    return _target_columns(rt, body.type, body.target, None)


def update_columns(rt: Runtime, body: ConnectorUpdate, stored_type: str | None,
                   stored_secret: dict[str, Any] | None) -> dict[str, Any]:
    """The type's columns a PATCH changes. Credentials not resent are kept (same type)."""
    given = body.model_fields_set
    before = stored_type or "http"
    after = body.type if "type" in given and body.type is not None else before
    if not is_broker(after):
        if "target" in given and body.target is not None:
            raise _fail("target", "'target' is for mqtt, amqp and nats connectors")
        if is_broker(before):
            for name in ("baseUrl", "routes"):
                if getattr(body, name) is None:
                    raise _fail(name, f"'{name}' is required to make this connector an http "
                                "connector")
            return {"type": "http", "target_public": None, "target_secret_enc": None}
        return {"type": "http"} if "type" in given and stored_type is not None else {}
    _not_for_brokers(body, after)
    if "target" not in given or body.target is None:
        if after != before:
            raise _fail("target", f"'target' is required to make this connector a {after} "
                        "connector")
        return {}
    return _target_columns(rt, after, body.target, stored_secret if after == before else None)


def shown(row: Connector) -> dict[str, Any]:
    """What the API adds to a connector's representation: its type, and a broker's target
    (never its credentials; ``credentials`` says whether there are some)."""
    if not is_broker(row.type) or not row.target_public:
        return {"type": "http"}
    return {"type": row.type, "target": orjson.loads(row.target_public), "routes": None}
