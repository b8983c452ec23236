"""Request bodies of the management API (unknown fields are refused, naming them)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hookstream.errors import InvalidTransform
from hookstream.pipeline.deliver import transform as transforms
from hookstream.pipeline.deliver.signing import InvalidSecret, secret_key
from hookstream.pipeline.message import Kind
from hookstream.pipeline.record.replay import STATUSES, parse_statuses

Name = Annotated[str, Field(min_length=1, max_length=200)]
_HEADER_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_RESERVED_HEADERS = {
    "content-type", "content-length", "host", "webhook-id", "webhook-timestamp",
    "webhook-signature", "transfer-encoding", "connection",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: object) -> object:
        # PostgreSQL cannot store a NUL in text (SQLite can): refuse it alike on both,
        # naming the field, rather than failing with a 500 on one of them.
        if isinstance(data, dict):
            for name, value in data.items():
                values = value if isinstance(value, list) else [value]
                if any(isinstance(v, str) and "\x00" in v for v in values):
                    raise ValueError(f"'{name}' must not contain NUL characters")
        return data


def check_http_url(value: str, what: str) -> str:
    if len(value) > 2048:
        raise ValueError(f"{what} is longer than 2048 characters")
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"{what} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError(f"{what} must not carry credentials; use 'authentication'")
    if parts.fragment:
        raise ValueError(f"{what} must not have a #fragment")
    return value


class OrganizationCreate(Strict):
    name: Name


class GatewayCreate(Strict):
    name: Name
    externalId: str | None = Field(default=None, max_length=200)


class GatewayUpdate(Strict):
    name: Name | None = None
    externalId: str | None = Field(default=None, max_length=200)


class Routes(Strict):
    """The path appended to the base URL for each kind of message."""

    values: str = Field(max_length=1024)
    events: str = Field(max_length=1024)
    alarms: str = Field(max_length=1024)

    @field_validator("values", "events", "alarms")
    @classmethod
    def _path(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise ValueError("a route is a path that starts with '/' (or empty for the base URL)")
        if any(c in value for c in "#\r\n \t"):
            raise ValueError("a route must not contain spaces, line breaks or '#'")
        return value


class AuthNone(Strict):
    type: Literal["none"]


class AuthBasic(Strict):
    type: Literal["basic"]
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(max_length=1000)

    @field_validator("username")
    @classmethod
    def _no_colon(cls, value: str) -> str:
        if ":" in value:
            raise ValueError("a basic-auth username cannot contain ':'")
        return value


class AuthBearer(Strict):
    type: Literal["bearer"]
    token: str = Field(min_length=1, max_length=4000)


class AuthApiKey(Strict):
    type: Literal["api_key"]
    header: str = Field(min_length=1, max_length=100)
    value: str = Field(min_length=1, max_length=4000)

    @field_validator("header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not _HEADER_TOKEN.match(value):
            raise ValueError("not a valid HTTP header name")
        if value.lower() in _RESERVED_HEADERS:
            raise ValueError(f"'{value}' is set by hookstream and cannot carry a key")
        return value


class AuthOAuth2(Strict):
    type: Literal["oauth2_client_credentials"]
    tokenUrl: str
    clientId: str = Field(min_length=1, max_length=500)
    clientSecret: str = Field(min_length=1, max_length=4000)
    scope: str | None = Field(default=None, max_length=1000)

    @field_validator("tokenUrl")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value, "tokenUrl")


Authentication = Annotated[
    AuthNone | AuthBasic | AuthBearer | AuthApiKey | AuthOAuth2, Field(discriminator="type")
]


def _check_value_chars(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value and any(c in value for c in "\r\n\0"):
            raise ValueError(f"'{name}' must not contain line breaks")


MAX_DELAY = 7 * 86400.0


class RetryConfig(Strict):
    """A connector's own retry schedule (seconds between attempts) and attempt limit."""

    schedule: list[float | int] | None = Field(default=None, max_length=100)
    maxAttempts: int | None = Field(default=None, ge=1, le=100)

    @field_validator("schedule")
    @classmethod
    def _delays(cls, value: list[float | int] | None) -> list[float | int] | None:
        if value is not None and any(not 0 <= v <= MAX_DELAY for v in value):
            raise ValueError("each delay is 0 to 604800 seconds (7 days)")
        return value


class Timeouts(Strict):
    """Seconds to connect, and for the whole request, per attempt."""

    connect: float | int | None = Field(default=None, gt=0, le=60)
    total: float | int | None = Field(default=None, gt=0, le=300)


class Limits(Strict):
    """Backpressure for one connector, across every worker process."""

    maxConcurrency: int | None = Field(default=None, ge=1, le=1000)
    perSecond: float | int | None = Field(default=None, gt=0, le=10000)


class Batch(Strict):
    """Send up to maxMessages messages in one POST (a JSON array), waiting at most maxWaitMs
    for a batch to fill."""

    maxMessages: int = Field(ge=1, le=1000)
    maxWaitMs: int = Field(default=1000, ge=0, le=60000)


def check_expression(value: str) -> str:
    """A JSONata expression that parses (the message says where it does not)."""
    try:
        transforms.compile(value)
    except InvalidTransform as exc:
        raise ValueError(exc.message) from None
    return value


def check_transform_language(value: str) -> str:
    try:
        return transforms.check_language(value)
    except InvalidTransform as exc:
        raise ValueError(exc.message) from None


class Transform(Strict):
    """What the body sent is made of: a JSONata expression over the message (over the JSON
    array of a batch)."""

    language: str = Field(default="jsonata", description="The one supported is 'jsonata'")
    expression: str = Field(max_length=transforms.MAX_EXPRESSION_LENGTH,
                            description="A JSONata expression")

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        return check_transform_language(value)

    @field_validator("expression")
    @classmethod
    def _expression(cls, value: str) -> str:
        return check_expression(value)


class TransformPreview(Transform):
    """An expression and a message (or an array of them, as a batch) to apply it to."""

    message: Any = Field(description="The JSON the expression is applied to: a message as "
                                     "delivered, or an array of them (a batch)")


def check_headers(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > 20:
        raise ValueError("at most 20 headers")
    for name, text in value.items():
        if not _HEADER_TOKEN.match(name):
            raise ValueError(f"'{name}' is not a valid HTTP header name")
        if name.lower() in _RESERVED_HEADERS | {"authorization", "user-agent"}:
            raise ValueError(f"'{name}' is set by hookstream and cannot be a static header")
        if any(c in text for c in "\r\n\0") or len(text) > 4000:
            raise ValueError(f"the value of '{name}' has a line break or is too long")
    return value


def check_secret(value: str | None) -> str | None:
    """A given signing secret must be whsec_ + base64 of 24 to 64 bytes."""
    if value is not None:
        try:
            secret_key(value)
        except InvalidSecret as exc:
            raise ValueError(f"{exc} (whsec_ + base64 of 24 to 64 bytes)") from None
    return value


class ConnectorOptions(Strict):
    """What a connector may set when created and change later, besides where it points."""

    authentication: Authentication | None = None
    headers: dict[str, str] | None = None
    retry: RetryConfig | None = None
    timeouts: Timeouts | None = None
    limits: Limits | None = None
    ordering: Literal["none", "per_device"] | None = None
    batch: Batch | None = None
    transform: Transform | None = None

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_headers(value)

    @model_validator(mode="after")
    def _auth_values(self) -> ConnectorOptions:
        # Credentials travel in headers: no line breaks.
        if self.authentication is not None:
            auth = self.authentication.model_dump()
            _check_value_chars({k: v for k, v in auth.items() if isinstance(v, str)})
        return self


ConnectorType = Literal["http", "mqtt", "amqp", "nats"]


class ConnectorCreate(ConnectorOptions):
    name: Name
    # "http" (the default): baseUrl and routes; a broker type: target (its fields are checked
    # by services.connector_types, which names them: target.url, target.topic...).
    type: ConnectorType = "http"
    baseUrl: str | None = None
    routes: Routes | None = None
    target: dict[str, Any] | None = None
    secret: str | None = None
    authentication: Authentication = Field(default_factory=lambda: AuthNone(type="none"))
    active: bool = False

    @field_validator("baseUrl")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value, "baseUrl")

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return check_secret(value)


class ConnectorUpdate(ConnectorOptions):
    name: Name | None = None
    type: ConnectorType | None = None
    baseUrl: str | None = None
    routes: Routes | None = None
    target: dict[str, Any] | None = None
    active: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_secret(cls, data: object) -> object:
        if isinstance(data, dict) and "secret" in data:
            raise ValueError(
                "the signing secret cannot be changed here; "
                "POST /api/v1/connectors/{id}/rotate-secret"
            )
        return data

    @field_validator("baseUrl")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value, "baseUrl")


class RotateSecret(Strict):
    secret: str | None = None

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return check_secret(value)


class TriggerCreate(Strict):
    kinds: list[Kind] = Field(min_length=1, max_length=3)
    gatewayIds: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=1000
    )
    allGateways: bool = False

    @model_validator(mode="after")
    def _scope(self) -> TriggerCreate:
        if len(set(self.kinds)) != len(self.kinds):
            raise ValueError("'kinds' lists a kind twice")
        if self.allGateways and self.gatewayIds is not None:
            raise ValueError("give either 'gatewayIds' or 'allGateways': true, not both")
        if not self.allGateways and not self.gatewayIds:
            raise ValueError("give a non-empty 'gatewayIds' list or 'allGateways': true")
        return self


class Rotation(Strict):
    """How long the previous key keeps working after a rotation; 0 revokes it at once."""

    overlapSeconds: int | None = Field(default=None, ge=0, le=30 * 86400)


def overlap_of(body: Rotation | None, default_seconds: int) -> int:
    """The overlap a rotation asked for, or the deployment's default."""
    if body is not None and body.overlapSeconds is not None:
        return body.overlapSeconds
    return default_seconds


_STATUS_SCHEMA: dict[str, Any] = {"type": "string", "enum": list(STATUSES)}


class ConnectorReplay(Strict):
    since: str = Field(description="RFC 3339: replay deliveries created from this time (inclusive)")
    until: str | None = Field(
        default=None, description="RFC 3339: ... and before this time (default: now)"
    )
    status: Any = Field(
        default=None,
        description="A status or a list of them (default: delivered, failed and cancelled)",
        json_schema_extra={"anyOf": [_STATUS_SCHEMA, {"type": "array", "items": _STATUS_SCHEMA,
                                                      "minItems": 1}]},
    )

    @field_validator("status")
    @classmethod
    def _statuses(cls, value: Any) -> tuple[str, ...] | None:
        return None if value is None else parse_statuses(value)


class ConnectorTest(Strict):
    kind: Kind = Field(description="Which route of the connector receives the sample message")
