"""The datastream message format of the gateway vendor's document (pure, no I/O).

Fields and types, ``?`` meaning nullable::

    deviceId: String, property: String, timestamp: Long, payload: Any, receivedAt: Long?,
    scaledPayload: Number?, name: String?, unit: String?, externalId: String?,
    propertyId: String?, equipmentId: String?, gatewayInterfaceId: String?, slug: String?,
    isOutOfService: Boolean?, tags: Map<String, String>
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

# Re-exported: the message format is where callers look for them.
from hookstream.errors import MalformedJson as MalformedJson
from hookstream.errors import MessageFormatError as MessageFormatError
from hookstream.kinds import KINDS as KINDS
from hookstream.kinds import Kind as Kind

MAX_BATCH = 1000
MAX_BODY_BYTES = 1024 * 1024

# The order of the document; delivered bodies keep it.
FIELDS: tuple[str, ...] = (
    "deviceId", "property", "timestamp", "payload", "receivedAt", "scaledPayload", "name",
    "unit", "externalId", "propertyId", "equipmentId", "gatewayInterfaceId", "slug",
    "isOutOfService", "tags",
)
_LONG_MAX = 2**63 - 1


class DatastreamMessage(BaseModel):
    """One value, event or alarm as a gateway reports it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    deviceId: str = Field(min_length=1, max_length=256)
    property: str = Field(min_length=1, max_length=256)
    timestamp: int = Field(ge=0, le=_LONG_MAX)
    payload: Any
    receivedAt: int | None = Field(default=None, ge=0, le=_LONG_MAX)
    # Any number, kept as sent (an int stays an int); checked below so that a wrong value
    # gets one error naming this field, not one per member of a union.
    scaledPayload: Any = Field(default=None, json_schema_extra={"type": ["number", "null"]})
    name: str | None = None
    unit: str | None = None
    externalId: str | None = None
    propertyId: str | None = None
    equipmentId: str | None = None
    gatewayInterfaceId: str | None = None
    slug: str | None = None
    isOutOfService: bool | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("deviceId", "property")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        # deviceId is stored in a text column, where PostgreSQL refuses NUL (SQLite takes
        # it): refuse it on both rather than answer 500 on one. property goes with it.
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    @field_validator("scaledPayload")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError("must be a number or null")
        return value

    @field_validator("payload")
    @classmethod
    def _payload_present(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("payload must not be null")
        return value


def _describe(err: Any, index: int | None) -> dict[str, Any]:
    loc = [str(p) for p in err["loc"]]
    field = ".".join(loc)
    if err["type"] == "extra_forbidden":
        text = f"'{field}' is not a field of the datastream message format"
    elif err["type"] == "missing":
        text = f"'{field}' is required"
    else:
        text = f"'{field}': {err['msg'].removeprefix('Value error, ')}"
    detail: dict[str, Any] = {"field": field, "message": text}
    if index is not None:
        detail["index"] = index
    return detail


_MANY = TypeAdapter(list[DatastreamMessage])


@dataclass(frozen=True, slots=True)
class MessageLimits:
    """What one message may hold beyond the format (``HOOKSTREAM_MESSAGE_MAX_*``)."""

    max_tags: int = 64
    max_string_length: int = 1024  # name, unit, ids, slug, and each tag's key and value


DEFAULT_LIMITS = MessageLimits()
_LIMITED_FIELDS = (
    "name", "unit", "externalId", "propertyId", "equipmentId", "gatewayInterfaceId", "slug",
)


def _over_limits(
    message: DatastreamMessage, limits: MessageLimits, index: int | None
) -> list[dict[str, Any]]:
    problems: list[tuple[str, str]] = []
    longest = limits.max_string_length
    for name in _LIMITED_FIELDS:
        value = getattr(message, name)
        if value is not None and len(value) > longest:
            problems.append((name, f"'{name}' is longer than {longest} characters"))
    if len(message.tags) > limits.max_tags:
        problems.append(("tags", f"'tags' has {len(message.tags)} entries; at most "
                                 f"{limits.max_tags} are accepted"))
    for key, value in message.tags.items():
        if len(key) > longest or len(value) > longest:
            problems.append(("tags", f"a tag's key or value is longer than {longest} characters"))
            break
    details = []
    for field, text in problems:
        detail: dict[str, Any] = {"field": field, "message": text}
        if index is not None:
            detail["index"] = index
        details.append(detail)
    return details


def _check_limits(
    messages: list[DatastreamMessage], is_batch: bool, limits: MessageLimits
) -> list[DatastreamMessage]:
    details: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        details += _over_limits(m, limits, i if is_batch else None)
    if details:
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        raise MessageFormatError(f"invalid message: {details[0]['message']}{more}",
                                 details[:100])
    return messages


def parse_messages(
    raw: bytes, limits: MessageLimits = DEFAULT_LIMITS
) -> tuple[list[DatastreamMessage], bool]:
    """Parse a request body: one message or an array of 1 to 1000. Returns (messages, is_batch)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"body is not valid JSON: {exc}") from exc
    if isinstance(data, dict):
        items, is_batch = [data], False
    elif isinstance(data, list):
        if not data:
            raise MessageFormatError("the array is empty: send 1 to 1000 messages")
        if len(data) > MAX_BATCH:
            raise MessageFormatError(
                f"the array holds {len(data)} messages; at most {MAX_BATCH} are accepted"
            )
        items, is_batch = data, True
    else:
        raise MessageFormatError("body must be a JSON object or an array of objects")

    try:  # the common case in one call into pydantic-core; errors are described one by one
        return _check_limits(_MANY.validate_python(items), is_batch, limits), is_batch
    except ValidationError:
        pass
    messages: list[DatastreamMessage] = []
    details: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        index = i if is_batch else None
        if not isinstance(item, dict):
            details.append({"index": i, "field": "", "message": "each message must be an object"})
            continue
        try:
            messages.append(DatastreamMessage.model_validate(item))
        except ValidationError as exc:
            details.extend(_describe(err, index) for err in exc.errors())
    if details:
        first = details[0]["message"]
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        raise MessageFormatError(f"invalid message: {first}{more}", details[:100])
    return _check_limits(messages, is_batch, limits), is_batch


def to_body(message: DatastreamMessage, received_at_ms: int) -> bytes:
    """The delivered JSON: exactly the 15 fields, in the document's order, nulls present."""
    # The fields are declared in the document's order, and strict validation kept each value
    # as parsed: the model's own dict is the body (model_dump copied it, at 4x the cost).
    doc = dict(message.__dict__)
    if doc["receivedAt"] is None:
        doc["receivedAt"] = received_at_ms
    return orjson.dumps(doc)
