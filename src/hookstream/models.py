"""The names the pipeline shares: what state a delivery is in and what kind of message it
carries, and the typed records the repository returns (pure, no I/O; imported by every layer).

The enums are ``StrEnum``: a member equals its string, so rows keep storing plain text and
rows read back compare equal to the members. The records are frozen dataclasses named for
what they hold; ``from_row`` is the one place a row turns into one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, Self


class DeliveryStatus(StrEnum):
    """Where a delivery stands. Only ``pending`` ones are claimed by workers."""

    PENDING = "pending"  # queued: sent when ``next_attempt_at`` falls due
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # given up on (attempts used up, or an answer that forbids retrying)
    HELD = "held"  # queued while its connector is switched off; pending again when it is on
    CANCELLED = "cancelled"  # cancelled by hand, or its connector was deleted



class Kind(StrEnum):
    """What a message is, which decides the connector's route it is sent to."""

    VALUES = "values"  # gateway reports: one route each (connector.route_values, ...)
    EVENTS = "events"
    ALARMS = "alarms"
    ALERT = "alert"  # an operational alert, sent to the alerts connector's URL itself
    THERMOSTAT = "thermostat"  # a plant subscription's notification, to its URL itself


# The kinds a gateway reports (``hookstream.kinds.KINDS`` spells the same as a Literal).
GATEWAY_KINDS: tuple[Kind, ...] = (Kind.VALUES, Kind.EVENTS, Kind.ALARMS)


# --- records: what the repository hands back, typed (rows become these at its edge) -------

class _Record:
    """Built from a database row by field name; a record is a plain value, never a live row."""

    __slots__ = ()

    @classmethod
    def from_row(cls, row: Any) -> Self:
        values = row._mapping
        return cls(**{f.name: values[f.name] for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Gateway(_Record):
    """A gateway of an organization (its token hash is never read into one)."""

    id: str
    name: str
    external_id: str | None
    created_at: int


@dataclass(frozen=True, slots=True)
class Connector(_Record):
    """A connector's stored configuration; ``None`` where the deployment's default applies.

    Secrets are not in it: they are read apart, only where a request is signed."""

    id: str
    org_id: str
    name: str
    base_url: str
    route_values: str
    route_events: str
    route_alarms: str
    auth_type: str
    auth_public: str  # JSON: the authentication's parts that may be shown again
    active: bool
    deactivated_reason: str | None
    header_names: str | None  # JSON list
    retry_schedule: str | None  # JSON list of delays in seconds
    max_attempts: int | None
    connect_timeout: float | None
    request_timeout: float | None
    previous_secret_expires_at: int | None
    max_concurrency: int | None
    rate_limit: float | None
    ordering: str | None
    batch_max_messages: int | None
    batch_max_wait_ms: int | None
    created_at: int
    updated_at: int
    transform_language: str | None  # "jsonata", or None: the message is sent as it is
    transform_expression: str | None
    type: str | None = None  # None or "http": base_url and routes; "mqtt", "amqp", "nats"
    target_public: str | None = None  # JSON: a broker target's parts that may be shown

    def __post_init__(self) -> None:
        # SQLite hands booleans back as 0/1.
        object.__setattr__(self, "active", bool(self.active))


@dataclass(frozen=True, slots=True)
class Trigger(_Record):
    """Which kinds go to a connector: from every gateway, or from those linked to it."""

    id: str
    kinds: str  # comma-separated
    all_gateways: bool
    created_at: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "all_gateways", bool(self.all_gateways))

    @property
    def kind_list(self) -> list[str]:
        return self.kinds.split(",")


@dataclass(frozen=True, slots=True)
class Message(_Record):
    """An accepted message as stored: its id is the ``webhook-id`` of every delivery of it."""

    id: str
    gateway_id: str
    kind: str
    device_id: str
    body: bytes
    accepted_at: int


@dataclass(frozen=True, slots=True)
class Delivery(_Record):
    """One message on its way to one connector."""

    id: str
    message_id: str
    connector_id: str
    kind: str
    device_id: str
    status: str  # a DeliveryStatus value
    attempts: int
    next_attempt_at: int | None
    last_status_code: int | None
    last_error: str | None
    replay_of: str | None
    batch_id: str | None
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Attempt(_Record):
    """One POST of a delivery and what came back."""

    id: str
    number: int
    started_at: int
    duration_ms: int
    status_code: int | None
    response_body: str | None
    error: str | None
