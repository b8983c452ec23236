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
    """The target of a figure (``Figure.as_json()``), or None if it has none."""
    bench, name, db = fig["benchmark"], fig["name"], fig["database"]
    value, ratio = fig["value"], fig["ratio"]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if bench == "drain" and db == "SQLite" and name == "drain, 1 worker":
        return Verdict("≥5,000/s and ≥0.6× aiohttp", _ok(value >= 5000, ratio >= 0.6))
    if bench == "drain" and db == "PostgreSQL" and name == "drain, 2 workers":
        return Verdict("≥5,000/s", _ok(value >= 5000))
    if bench == "ingest" and "batches of 100" in name:
        return Verdict("≥20,000 msg/s", _ok(value >= 20_000))
    if bench == "latency" and "1,000 msg/s" in name:
        if name.startswith("latency p50"):
            return Verdict("p50 ≤5 ms", _ok(value <= 5))
        if name.startswith("latency p99"):
            return Verdict("p99 ≤25 ms", _ok(value <= 25))
    if bench == "isolation":
        return Verdict("≥0.9×", _ok(ratio >= 0.9))
    if bench == "backlog":
        size = fig["details"].get("deliveries")
        at = "" if size is None or size >= FULL_BACKLOG else " (set for 1M)"
        if "RSS" in name:
            return Verdict(f"≤{RSS_LIMIT_MB:.0f} MB{at}", _ok(value <= RSS_LIMIT_MB))
        return Verdict(f"≥0.8× (within 20%){at}", _ok(ratio >= 0.8))
    return None


def ratio_target(bench: str, database: str, name: str) -> float | None:
    """The ratio a chart marks for a figure, where its target is a ratio."""
    if bench == "drain" and database == "SQLite" and name == "drain, 1 worker":
        return 0.6
    if bench == "isolation":
        return 0.9
    if bench == "backlog" and "RSS" not in name:
        return 0.8
    return None
