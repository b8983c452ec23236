"""A broker connector's target: checked, split into what may be shown and its credentials, and
put back together for the senders (pure, no I/O).

``"target"`` of an ``mqtt``, ``amqp`` or ``nats`` connector::

    mqtt: {"url": "mqtt://host:1883" | "mqtts://host:8883", "username"?, "password"?,
           "topic": "sites/{gatewayId}/{kind}/{deviceId}", "qos": 0 | 1, "retain": false}
    amqp: {"url": "amqp://user:pass@host:5672/vhost" | "amqps://...", "exchange": "iot",
           "routingKey": "{kind}.{deviceId}"}
    nats: {"url": "nats://host:4222", "username"?, "password"?, "subject": "iot.{kind}",
           "jetstream": true}

Credentials (``username`` and ``password``, or the URL's user information, which is moved into
them) are the secret part: stored encrypted, never shown. The URL is shown without them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from hookstream.errors import ValidationFailed
from hookstream.pipeline.deliver.topics import template_problem

BROKER_TYPES: tuple[str, ...] = ("mqtt", "amqp", "nats")
CONNECTOR_TYPES: tuple[str, ...] = ("http", *BROKER_TYPES)

SCHEMES = {
    "mqtt": {"mqtt": (1883, False), "mqtts": (8883, True)},
    "amqp": {"amqp": (5672, False), "amqps": (5671, True)},
    "nats": {"nats": (4222, False)},
}
# Each type's template field and its other fields, with their defaults.
TEMPLATE_FIELD = {"mqtt": "topic", "amqp": "routingKey", "nats": "subject"}
_OPTIONS: dict[str, dict[str, Any]] = {
    "mqtt": {"qos": 1, "retain": False},
    "amqp": {"exchange": ""},
    "nats": {"jetstream": False},
}
_SECRET_FIELDS = ("username", "password")
# AMQP 0-9-1: exchange names are letters, digits, '-', '_', '.' and ':', up to 127.
_EXCHANGE = re.compile(r"^[A-Za-z0-9_.:\-]{0,127}$")


@dataclass(frozen=True, slots=True)
class BrokerTarget:
    """Where and how a broker connector publishes (credentials included)."""

    type: str  # mqtt, amqp or nats
    url: str  # as shown: without credentials
    host: str
    port: int
    tls: bool
    template: str  # the topic, routing key or subject, with placeholders
    username: str | None = None
    password: str | None = None
    vhost: str = "/"  # AMQP
    exchange: str = ""  # AMQP
    qos: int = 1  # MQTT
    retain: bool = False  # MQTT
    jetstream: bool = False  # NATS

    @property
    def key(self) -> tuple[Any, ...]:
        """What a pooled connection depends on: a change opens a new one."""
        return (self.type, self.host, self.port, self.tls, self.vhost, self.username,
                self.password)


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"'{field}': {message}", details=[{"field": field,
                                                               "message": message}])


def parse(connector_type: str, raw: object, stored_secret: Mapping[str, Any] | None = None
          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check a target given to the API; its public part and its credentials.

    Credentials left out are taken from ``stored_secret`` (a PATCH that does not resend
    them); ``null`` removes them. Raises ValidationFailed naming the field (``target.url``...).
    """
    if connector_type not in BROKER_TYPES:
        raise _fail("type", f"unknown type '{connector_type}'; one of "
                    + ", ".join(CONNECTOR_TYPES))
    if not isinstance(raw, dict):
        raise _fail("target", f"a {connector_type} connector needs a 'target' object")
    template_field = TEMPLATE_FIELD[connector_type]
    known = {"url", template_field, *_OPTIONS[connector_type], *_SECRET_FIELDS}
    for name in raw:
        if name not in known:
            raise _fail(f"target.{name}", f"not a field of a {connector_type} target; the fields "
                        "are " + ", ".join(sorted(known)))
    url = raw.get("url")
    if not isinstance(url, str) or not url:
        raise _fail("target.url", "required: the broker's URL")
    if len(url) > 2048:
        raise _fail("target.url", "longer than 2048 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _fail("target.url", f"not a valid URL: {exc}") from None
    schemes = SCHEMES[connector_type]
    if parts.scheme not in schemes:
        raise _fail("target.url", f"a {connector_type} URL starts with "
                    + " or ".join(f"{s}://" for s in schemes))
    if not parts.hostname:
        raise _fail("target.url", "the URL has no host")
    if parts.query or parts.fragment:
        raise _fail("target.url", "the URL cannot have a ?query or #fragment")
    path = parts.path
    if connector_type == "amqp":
        if path.count("/") > 1:
            raise _fail("target.url", "the path is the virtual host: one segment, '%2F' for '/'")
    elif path not in ("", "/"):
        raise _fail("target.url", f"a {connector_type} URL has no path")
    public: dict[str, Any] = {}
    hostport = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is not None:
        hostport += f":{port}"
    public["url"] = f"{parts.scheme}://{hostport}{path if connector_type == 'amqp' else ''}"

    template = raw.get(template_field)
    if not isinstance(template, str) or (connector_type != "amqp" and not template):
        raise _fail(f"target.{template_field}", "required: a string (placeholders "
                    "{gatewayId}, {gatewayExternalId}, {kind}, {deviceId}, {property})")
    why = template_problem(template, connector_type)
    if why is not None:
        raise _fail(f"target.{template_field}", why)
    public[template_field] = template

    for name, default in _OPTIONS[connector_type].items():
        value = raw.get(name, default)
        if name == "qos":
            if isinstance(value, bool) or value not in (0, 1):
                raise _fail("target.qos", "0 (at most once) or 1 (at least once, delivered on "
                            "the broker's PUBACK)")
        elif name == "exchange":
            if not isinstance(value, str) or not _EXCHANGE.match(value):
                raise _fail("target.exchange", "an exchange name: up to 127 letters, digits, "
                            "'-', '_', '.' or ':' ('' is the default exchange)")
        elif not isinstance(value, bool):
            raise _fail(f"target.{name}", "true or false")
        public[name] = value

    # Credentials: the URL's user information, or the fields; else what was stored.
    secret: dict[str, Any] = {}
    if parts.username is not None or parts.password is not None:
        if "username" in raw or "password" in raw:
            raise _fail("target.url", "give the credentials in the URL or in 'username' and "
                        "'password', not both")
        secret = {"username": unquote(parts.username or ""),
                  "password": unquote(parts.password or "")}
    else:
        kept = dict(stored_secret or {})
        for name in _SECRET_FIELDS:
            if name not in raw:
                continue
            value = raw[name]
            if value is None:
                kept.pop(name, None)
            elif not isinstance(value, str) or len(value) > 1000:
                raise _fail(f"target.{name}", "a string of up to 1000 characters, or null")
            else:
                kept[name] = value
        secret = {k: v for k, v in kept.items() if k in _SECRET_FIELDS and v is not None}
    if "password" in secret and not secret.get("username") and connector_type != "mqtt":
        raise _fail("target.password", "a password needs a username")
    public["credentials"] = bool(secret)
    return public, secret


def build(connector_type: str, public: Mapping[str, Any],
          secret: Mapping[str, Any] | None = None) -> BrokerTarget:
    """The sender's target from the stored parts (checked when stored)."""
    parts = urlsplit(public["url"])
    default_port, tls = SCHEMES[connector_type][parts.scheme]
    vhost = unquote(parts.path[1:]) if connector_type == "amqp" and len(parts.path) > 1 else "/"
    secret = secret or {}
    return BrokerTarget(
        type=connector_type,
        url=public["url"],
        host=parts.hostname or "",
        port=parts.port or default_port,
        tls=tls,
        template=public[TEMPLATE_FIELD[connector_type]],
        username=secret.get("username"),
        password=secret.get("password"),
        vhost=vhost,
        exchange=public.get("exchange", ""),
        qos=int(public.get("qos", 1)),
        retain=bool(public.get("retain", False)),
        jetstream=bool(public.get("jetstream", False)),
    )


def vhost_path(vhost: str) -> str:
    """The URL path naming an AMQP virtual host."""
    return "/" + quote(vhost, safe="")
