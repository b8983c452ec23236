"""The kinds of message a gateway reports (one route each); imported by every layer."""

from __future__ import annotations

from typing import Literal, get_args

Kind = Literal["values", "events", "alarms"]
KINDS: tuple[str, ...] = get_args(Kind)
