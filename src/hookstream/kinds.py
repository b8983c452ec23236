"""The kinds of message a gateway reports (one route each); imported by every layer.

``Kind`` is the ``Literal`` the API validates and documents; ``hookstream.models.Kind`` is
the enum of every kind (these three plus the internal ``alert`` and ``thermostat``).
"""

from __future__ import annotations

from typing import Literal, get_args

from hookstream.models import GATEWAY_KINDS

Kind = Literal["values", "events", "alarms"]
KINDS: tuple[str, ...] = get_args(Kind)

if KINDS != GATEWAY_KINDS:  # pragma: no cover - a mismatch is a bug caught at import
    raise ImportError(f"hookstream.kinds.Kind {KINDS} differs from models {GATEWAY_KINDS}")
