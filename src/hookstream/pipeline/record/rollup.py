"""A connector's attempts counted for its charts (pure): per 10 minutes, outcome and duration.

Outcomes: ``delivered`` (a 2xx), ``refused`` (an answer with another status) and ``no_answer``
(a timeout, a connection error, a refused target). Durations are rounded down to 1 ms below
100 ms, 10 ms below 1 s, 100 ms below 10 s and 1 s above: a few hundred values at most,
whatever the traffic, and percentiles read from them are exact to that step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

PERIOD_MS = 10 * 60 * 1000
OUTCOMES = ("delivered", "refused", "no_answer")


def outcome(status_code: int | None) -> str:
    """What an attempt's answer counts as."""
    if status_code is None:
        return "no_answer"
    return "delivered" if 200 <= status_code < 300 else "refused"


def rounded(duration_ms: int) -> int:
    """A duration rounded down to the step of its size."""
    if duration_ms < 100:
        return max(0, duration_ms)
    for step, below in ((10, 1000), (100, 10_000)):
        if duration_ms < below:
            return duration_ms // step * step
    return duration_ms // 1000 * 1000


def counted(attempts: Iterable[tuple[str, int, int | None, int]]) -> list[dict[str, Any]]:
    """Rows to add for ``(connector_id, started_at ms, status code, duration ms)`` attempts."""
    counts = Counter(
        (connector_id, started // PERIOD_MS * PERIOD_MS, outcome(status), rounded(duration))
        for connector_id, started, status, duration in attempts
    )
    return [
        {"connector_id": c, "period": p, "outcome": o, "duration_ms": d, "attempts": n}
        for (c, p, o, d), n in counts.items()
    ]
