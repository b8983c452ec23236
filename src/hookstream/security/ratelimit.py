"""Token buckets per key (pure: the caller passes the time)."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    # Whole seconds until one request is allowed again (0 when allowed): the Retry-After value.
    retry_after: int = 0


class RateLimiter:
    """``capacity`` requests per ``period`` seconds per key, refilled continuously.

    Buckets live in this process: with N API processes a key may send up to N times the
    rate. Idle keys are forgotten past ``max_keys`` (a forgotten bucket starts full again).
    """

    def __init__(self, capacity: int, period: float, max_keys: int = 100_000) -> None:
        if capacity < 1 or period <= 0:
            raise ValueError("capacity must be >= 1 and period > 0")
        self.capacity = capacity
        self.rate = capacity / period  # tokens per second
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> Decision:
        """Spend one token of ``key``'s bucket at time ``now`` (seconds, monotonic)."""
        tokens, updated = self._buckets.pop(key, (float(self.capacity), now))
        tokens = min(float(self.capacity), tokens + max(0.0, now - updated) * self.rate)
        if tokens >= 1.0:
            self._remember(key, tokens - 1.0, now)
            return Decision(True)
        self._remember(key, tokens, now)
        return Decision(False, max(1, math.ceil((1.0 - tokens) / self.rate)))

    def _remember(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
