"""Matching messages to connectors through their triggers (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Trigger:
    """What makes a connector receive a message: some kinds, from some (or all) gateways."""

    connector_id: str
    kinds: frozenset[str]
    all_gateways: bool
    gateway_ids: frozenset[str]

    def matches(self, kind: str, gateway_id: str) -> bool:
        return kind in self.kinds and (self.all_gateways or gateway_id in self.gateway_ids)


def connectors_for(kind: str, gateway_id: str, triggers: Iterable[Trigger]) -> list[str]:
    """Connector ids that receive a ``kind`` message from ``gateway_id``, each once, in order."""
    seen: dict[str, None] = {}
    for trigger in triggers:
        if trigger.connector_id not in seen and trigger.matches(kind, gateway_id):
            seen[trigger.connector_id] = None
    return list(seen)
