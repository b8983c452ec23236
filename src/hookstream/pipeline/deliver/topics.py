"""Broker topics, routing keys and subjects from a connector's template (pure, no I/O).

A template such as ``sites/{gatewayId}/{kind}/{deviceId}`` names placeholders; each value put
in its place is escaped for the protocol so that no value adds a level, a wildcard or a
separator: the protocol's special characters, ``%`` itself, NUL, control characters (and, for
NATS, whitespace) become ``%XX`` per UTF-8 byte, as in a URL. A subscriber decodes a level with
any URL-decoding function.

Values a delivery does not have (a gateway without an external id, a message without a
property) become ``_``; in a batch, a placeholder whose value differs between the messages
becomes ``_mixed`` (a batch holds one kind, so ``{kind}`` is always its own).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

PLACEHOLDERS: tuple[str, ...] = (
    "gatewayId", "gatewayExternalId", "kind", "deviceId", "property",
)
ABSENT = "_"
MIXED = "_mixed"

_CONTROL = {chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))}
# What each protocol gives a meaning to in a topic, routing key or subject.
SPECIAL: dict[str, frozenset[str]] = {
    "mqtt": frozenset({"/", "+", "#", "%", *_CONTROL}),
    "amqp": frozenset({".", "*", "#", "%", *_CONTROL}),
    "nats": frozenset({".", "*", ">", "%", *_CONTROL}),
}
_TOKEN = re.compile(r"\{([^{}]*)\}")
MAX_LENGTH = {"mqtt": 65535, "amqp": 255, "nats": 65535}  # bytes, UTF-8


@dataclass(frozen=True, slots=True)
class Source:
    """What the placeholders of one delivery stand for (None: the message has no such value)."""

    kind: str
    gateway_id: str | None = None
    gateway_external_id: str | None = None
    device_id: str | None = None
    property: str | None = None

    def value(self, name: str) -> str | None:
        return {
            "gatewayId": self.gateway_id, "gatewayExternalId": self.gateway_external_id,
            "kind": self.kind, "deviceId": self.device_id, "property": self.property,
        }[name]


def merge(sources: Iterable[Source]) -> Source:
    """A batch's source: each value the messages share, else ``_mixed``."""
    items = list(sources)
    if not items:
        raise ValueError("a batch has at least one message")

    def common(values: list[str | None]) -> str | None:
        first = values[0]
        return first if all(v == first for v in values) else MIXED

    return Source(
        kind=items[0].kind,
        gateway_id=common([s.gateway_id for s in items]),
        gateway_external_id=common([s.gateway_external_id for s in items]),
        device_id=common([s.device_id for s in items]),
        property=common([s.property for s in items]),
    )


def escape(value: str, protocol: str) -> str:
    """``value`` as one level of a topic (routing key, subject): special characters as %XX."""
    special = SPECIAL[protocol]
    if protocol == "nats":
        special = special | {c for c in value if c.isspace()}
    if not any(c in special for c in value):
        return value
    return "".join(
        "".join(f"%{b:02X}" for b in c.encode()) if c in special else c for c in value
    )


def placeholders(template: str) -> list[str]:
    """The placeholder names a template uses, in order."""
    return _TOKEN.findall(template)


def template_problem(template: str, protocol: str) -> str | None:
    """Why ``template`` cannot be a topic (routing key, subject) of ``protocol``, or None."""
    for name in placeholders(template):
        if name not in PLACEHOLDERS:
            return (f"unknown placeholder '{{{name}}}'; the placeholders are "
                    + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS))
    literal = _TOKEN.sub("x", template)
    if "{" in literal or "}" in literal:
        return "a '{' or '}' outside a placeholder"
    if any(c in _CONTROL for c in literal):
        return "control characters (NUL, line breaks...) are not allowed"
    if len(literal.encode()) > MAX_LENGTH[protocol]:
        return f"longer than {MAX_LENGTH[protocol]} bytes"
    if protocol == "mqtt":
        if not template:
            return "an MQTT topic cannot be empty"
        if "+" in literal or "#" in literal:
            return "'+' and '#' are subscription wildcards, not allowed in a published topic"
    elif protocol == "nats":
        if not template:
            return "a NATS subject cannot be empty"
        if any(c.isspace() for c in literal):
            return "a NATS subject cannot contain whitespace"
        if "*" in literal or ">" in literal:
            return "'*' and '>' are subscription wildcards, not allowed in a published subject"
        if any(token == "" for token in literal.split(".")):
            return "a NATS subject cannot have an empty token (a leading, trailing or double '.')"
    return None


def render(template: str, source: Source, protocol: str) -> str:
    """The topic (routing key, subject) of one delivery: each placeholder escaped."""

    def value(match: re.Match[str]) -> str:
        raw = source.value(match.group(1))
        return ABSENT if not raw else escape(raw, protocol)

    return _TOKEN.sub(value, template)
