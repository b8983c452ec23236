"""The names the pipeline shares: what state a delivery is in and what kind of message it
carries (pure, no I/O; imported by every layer).

Both are ``StrEnum``: a member equals its string, so rows keep storing plain text and rows
read back compare equal to the members.
"""

from __future__ import annotations

from enum import StrEnum


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
