"""The project's targets, next to the figures they apply to: met or not."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

FULL_BACKLOG = 1_000_000
RSS_LIMIT_MB = 256.0


@dataclass(frozen=True)
class Verdict:
    target: str
    met: bool | None  # None: the figure is missing or unreadable

    @property
    def mark(self) -> str:
        return {True: "met", False: "NOT met", None: "?"}[self.met]


def _ok(*conditions: bool) -> bool | None:
    return all(conditions)


def verdict(fig: dict[str, Any]) -> Verdict | None:
    """The target of a figure (``Figure.as_json()``), or None if it has none (the speed
    issue's targets: ratios to references measured in the same run)."""
    bench, name, db = fig["benchmark"], fig["name"], fig["database"]
    value, ratio = fig["value"], fig["ratio"]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if bench == "drain" and ((db == "SQLite" and name == "drain, 1 worker")
                             or (db == "PostgreSQL" and name == "drain, 2 workers")):
        return Verdict("≥1.0× the bare aiohttp client", _ok(ratio >= 1.0))
    if bench == "ingest" and "single messages" in name:
        return Verdict("≥0.6× parse-only", _ok(ratio >= 0.6))
    if bench == "ingest" and "batches of 100" in name:
        return Verdict("≥0.25× parse-only", _ok(ratio >= 0.25))
    if bench == "sustained":
        return Verdict("≥0.3× the bare aiohttp rate", _ok(ratio >= 0.3))
    if bench == "fanout":
        drain = fig["details"].get("drainPerSecond")
        if drain:
            return Verdict("≥0.8× the drain", _ok(value >= 0.8 * drain))
        return None
    if bench == "isolation":
        return Verdict("≥0.9×", _ok(ratio >= 0.9))
    if bench == "backlog":
        size = fig["details"].get("deliveries")
        at = "" if size is None or size >= FULL_BACKLOG else " (set for 1M)"
        if "RSS" in name:
            return Verdict(f"≤{RSS_LIMIT_MB:.0f} MB{at}", _ok(value <= RSS_LIMIT_MB))
        return Verdict(f"≥0.9× the 20,000 drain{at}", _ok(ratio >= 0.9))
    if bench == "mqtt":
        return Verdict("≥0.8× broker → subscriber", _ok(ratio >= 0.8))
    return None


def ratio_target(bench: str, database: str, name: str) -> float | None:
    """The ratio a chart marks for a figure, where its target is a ratio."""
    if bench == "drain" and ((database == "SQLite" and name == "drain, 1 worker")
                             or (database == "PostgreSQL" and name == "drain, 2 workers")):
        return 1.0
    if bench == "isolation":
        return 0.9
    if bench == "backlog" and "RSS" not in name:
        return 0.9
    if bench == "mqtt":
        return 0.8
    return None
