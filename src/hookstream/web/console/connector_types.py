"""The connector form's type fields: an HTTP connector (base URL, routes, authentication) or
a broker connector (MQTT, AMQP, NATS) with its target's fields.

Without JavaScript every type's section is on the page, so each broker field is named by its
type (``mqtt.url``, ``amqp.url``...); only the chosen type's are read. The API names a target's
field ``target.url``: errors are moved to the field of the chosen type.
"""

from __future__ import annotations

from typing import Any

from hookstream.pipeline.deliver.broker_target import BROKER_TYPES
from hookstream.web.console.web import FieldErrors, Form

TYPES = (
    ("http", "HTTP: webhooks to your web server"),
    ("mqtt", "MQTT: publish to your broker"),
    ("amqp", "AMQP: publish to RabbitMQ (or another AMQP 0-9-1 broker)"),
    ("nats", "NATS: publish to a subject (JetStream optional)"),
)
# Each broker type's fields in the form's order: (name, label, input type, hint).
TYPE_FIELDS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "mqtt": (
        ("url", "Broker URL", "text", "mqtt://host:1883 or mqtts://host:8883"),
        ("username", "Username (optional)", "text", ""),
        ("password", "Password (optional)", "password",
         "Stored encrypted, never shown again; leave empty to keep the stored one."),
        ("topic", "Topic", "text", "Placeholders {gatewayId}, {gatewayExternalId}, {kind}, "
         "{deviceId}, {property}, e.g. sites/{gatewayId}/{kind}/{deviceId}"),
        ("qos", "QoS", "select", "1: delivered on the broker's PUBACK; 0: once written"),
        ("retain", "Retain", "checkbox", "The broker keeps the last message of each topic."),
    ),
    "amqp": (
        ("url", "Broker URL", "text", "amqp://user:pass@host:5672/vhost (credentials stored "
         "encrypted; leave them out to keep the stored ones)"),
        ("exchange", "Exchange", "text", "e.g. iot (empty: the default exchange)"),
        ("routingKey", "Routing key", "text", "e.g. {kind}.{deviceId}"),
    ),
    "nats": (
        ("url", "Server URL", "text", "nats://host:4222"),
        ("username", "Username (optional)", "text", ""),
        ("password", "Password (optional)", "password",
         "Stored encrypted, never shown again; leave empty to keep the stored one."),
        ("subject", "Subject", "text", "e.g. iot.{kind}.{deviceId}"),
        ("jetstream", "JetStream", "checkbox", "Delivered on the stream's PubAck; Nats-Msg-Id "
         "is the webhook-id, so the stream stores a retry once."),
    ),
}
SECRET_TYPE_FIELDS = {"password"}


def blank_type_values() -> dict[str, str]:
    """The type fields of an empty form (QoS 1, JetStream on)."""
    values = {"type": "http"}
    for kind, fields in TYPE_FIELDS.items():
        for name, _, _, _ in fields:
            values[f"{kind}.{name}"] = ""
    values["mqtt.qos"] = "1"
    values["nats.jetstream"] = "on"
    return values


def type_values_from_form(form: Form) -> dict[str, str]:
    """What the form shows again after an error (never a password)."""
    values = {"type": form.text("type") or "http"}
    for kind, fields in TYPE_FIELDS.items():
        for name, _, input_type, _ in fields:
            key = f"{kind}.{name}"
            if name in SECRET_TYPE_FIELDS:
                values[key] = ""
            elif input_type == "checkbox":
                values[key] = "on" if form.checked(key) else ""
            else:
                values[key] = form.text(key)
    return values


def type_values_of(connector: dict[str, Any]) -> dict[str, str]:
    """The form's type fields for a connector as the API shows it."""
    values = blank_type_values()
    kind = connector.get("type", "http")
    values["type"] = kind
    target = connector.get("target") or {}
    for name, _, input_type, _ in TYPE_FIELDS.get(kind, ()):
        value = target.get(name)
        if input_type == "checkbox":
            values[f"{kind}.{name}"] = "on" if value else ""
        elif value is not None:
            values[f"{kind}.{name}"] = str(value)
    return values


def target_from_form(form: Form, kind: str) -> dict[str, Any] | None:
    """The ``target`` of the chosen broker type (None for HTTP). An empty username or password
    is left out: a new connector has none, an edited one keeps the stored one."""
    if kind not in BROKER_TYPES:
        return None
    target: dict[str, Any] = {}
    for name, _, input_type, _ in TYPE_FIELDS[kind]:
        key = f"{kind}.{name}"
        if input_type == "checkbox":
            target[name] = form.checked(key)
        elif name == "qos":
            target[name] = 0 if form.text(key) == "0" else 1
        elif name in ("username", "password"):
            value = form.raw(key) if name == "password" else form.text(key)
            if value:
                target[name] = value
        else:
            target[name] = form.text(key)
    return target


def type_field_names() -> list[str]:
    """Every type field's name on the form."""
    return ["type", *(f"{kind}.{name}" for kind, fields in TYPE_FIELDS.items()
                      for name, _, _, _ in fields)]


def move_target_errors(errors: FieldErrors, kind: str) -> FieldErrors:
    """The API's ``target.x`` errors under the chosen type's field ``kind.x``; ``target``
    itself under the type select."""
    for name in [n for n in errors.fields if n == "target" or n.startswith("target.")]:
        message = errors.fields.pop(name)
        rest = name.partition(".")[2]
        errors.fields.setdefault(f"{kind}.{rest}" if rest else "type", message)
    return errors
