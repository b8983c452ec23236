"""How many due deliveries each connector may have claimed now (pure, no I/O).

Each connector is capped by its concurrency limit (requests in flight across every worker
process) and, when set, a token bucket of requests per second (burst = one second's worth).
The free slots of a claim are shared round-robin, so one busy or hanging connector cannot
take a claim's whole batch while other connectors have due work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Due:
    """A connector with due deliveries, as the claim sees it."""

    connector_id: str
    max_in_flight: int
    in_flight: int
    rate_limit: float | None = None  # requests per second; None: unlimited
    rate_tokens: float | None = None  # None: a full bucket
    rate_updated_at: float | None = None  # epoch seconds


@dataclass(frozen=True, slots=True)
class Share:
    connector_id: str
    count: int
    bucket: float | None  # tokens available before this claim (None: no rate limit)


def available_tokens(due: Due, now: float) -> float | None:
    """Tokens in the bucket now. The bucket holds one second's worth, and at least one
    token, so a rate under one per second still sends (one every 1/rate seconds)."""
    if due.rate_limit is None:
        return None
    capacity = max(due.rate_limit, 1.0)
    if due.rate_tokens is None or due.rate_updated_at is None:
        return capacity
    refill = max(now - due.rate_updated_at, 0.0) * due.rate_limit
    return min(capacity, due.rate_tokens + refill)


def share(connectors: Sequence[Due], limit: int, now: float) -> list[Share]:
    """Split ``limit`` claim slots among ``connectors``; connectors with no room get none."""
    room: dict[str, int] = {}
    tokens: dict[str, float | None] = {}
    # The least busy first: when slots are short, idle connectors are not the ones waiting.
    for c in sorted(connectors, key=lambda c: c.in_flight):
        free = max(c.max_in_flight - c.in_flight, 0)
        bucket = available_tokens(c, now)
        if bucket is not None:
            free = min(free, math.floor(bucket))
        tokens[c.connector_id] = bucket
        if free > 0:
            room[c.connector_id] = free
    counts = dict.fromkeys(room, 0)
    left = limit
    while left > 0 and room:
        for cid in list(room):
            if left == 0:
                break
            counts[cid] += 1
            left -= 1
            room[cid] -= 1
            if room[cid] == 0:
                del room[cid]
    return [Share(cid, count, tokens[cid]) for cid, count in counts.items()]
