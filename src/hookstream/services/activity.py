"""A connector's recent activity for the console's charts: its delivery attempts by outcome and
their latency (p50, p99), in buckets over the last 24 hours.

Read from the attempt counts the recorder keeps (``pipeline.record.rollup``: outcomes
``delivered``, ``refused``, ``no_answer``; durations rounded down to 1 ms below 100 ms, 10 ms
below 1 s, 100 ms below 10 s and 1 s above), not from every attempt. A percentile is the
nearest-rank one (the smallest duration that at least that share of the attempts did not
exceed).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from hookstream.ids import now_ms
from hookstream.pipeline.record.rollup import OUTCOMES as OUTCOMES
from hookstream.pipeline.record.rollup import PERIOD_MS
from hookstream.services.runtime import Runtime
from hookstream.storage.repository import Repository

WINDOW_MS = 24 * 3600 * 1000
BUCKET_MS = PERIOD_MS  # a chart's bucket is a period of the counts


def percentile(histogram: dict[int, int], fraction: float) -> int | None:
    """The nearest-rank percentile of a histogram {duration: count} (None when empty)."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for duration in sorted(histogram):
        seen += histogram[duration]
        if seen >= rank:
            return duration
    raise AssertionError("unreachable: the ranks add up to the total")


@dataclass(frozen=True)
class Bucket:
    """The attempts that started in [start_ms, start_ms + bucket_ms)."""

    start_ms: int
    counts: dict[str, int]
    p50_ms: int | None
    p99_ms: int | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Activity:
    since_ms: int
    until_ms: int
    bucket_ms: int
    buckets: list[Bucket]
    totals: dict[str, int] = field(default_factory=dict)
    p50_ms: int | None = None
    p99_ms: int | None = None

    @property
    def total(self) -> int:
        return sum(self.totals.values())


async def connector_activity(
    rt: Runtime, org_id: str, connector_id: str, *, until_ms: int | None = None,
    window_ms: int = WINDOW_MS, bucket_ms: int = BUCKET_MS,
) -> Activity:
    """The connector's attempts of the window ending with the bucket that holds ``until_ms``
    (now by default), bucket by bucket; nothing for another organization's connector.
    ``bucket_ms`` is a multiple of the counts' period."""
    if bucket_ms % PERIOD_MS or window_ms % bucket_ms:
        raise ValueError("bucket_ms must be a multiple of the counts' 10 minutes")
    now = now_ms() if until_ms is None else until_ms
    until = (now // bucket_ms + 1) * bucket_ms  # the current bucket ends the chart
    since = until - window_ms
    async with rt.db.read() as conn:
        rows = await Repository(conn).connector_attempt_histogram(
            org_id, connector_id, since=since, until=until, bucket_ms=bucket_ms)
    count = window_ms // bucket_ms
    counts: list[dict[str, int]] = [dict.fromkeys(OUTCOMES, 0) for _ in range(count)]
    histograms: list[dict[int, int]] = [defaultdict(int) for _ in range(count)]
    overall: dict[int, int] = defaultdict(int)
    for row in rows:
        i, n, duration = int(row.bucket), int(row.attempts), int(row.duration_ms)
        counts[i][str(row.outcome)] += n
        histograms[i][duration] += n
        overall[duration] += n
    buckets = [
        Bucket(since + i * bucket_ms, counts[i], percentile(histograms[i], 0.5),
               percentile(histograms[i], 0.99))
        for i in range(count)
    ]
    totals = {name: sum(b.counts[name] for b in buckets) for name in OUTCOMES}
    return Activity(since, until, bucket_ms, buckets, totals, percentile(overall, 0.5),
                    percentile(overall, 0.99))
