"""A connector's attempt counts (``pipeline.record.rollup``): what its charts read.

The pure part (outcomes, rounding, counting) without a database; then, on both databases, that
batches add up, that another organization sees nothing of a connector, and that retention drops
counts older than two days.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hookstream.ids import now_ms
from hookstream.pipeline.record.retention import COUNTS_KEPT_MS, Purger
from hookstream.pipeline.record.rollup import PERIOD_MS, counted, outcome, rounded
from hookstream.services.activity import connector_activity
from hookstream.storage.repository import Repository
from tests.support import Org, Service


def test_outcomes() -> None:
    assert [outcome(s) for s in (200, 204, 299, 300, 404, 500, None)] == [
        "delivered", "delivered", "delivered", "refused", "refused", "refused", "no_answer"]


@pytest.mark.parametrize(("ms", "kept"), [
    (0, 0), (7, 7), (99, 99), (100, 100), (109, 100), (999, 990), (1000, 1000),
    (1099, 1000), (9999, 9900), (10_000, 10_000), (29_999, 29_000),
])
def test_durations_are_rounded_down_to_the_step_of_their_size(ms: int, kept: int) -> None:
    assert rounded(ms) == kept


def test_attempts_alike_are_counted_together() -> None:
    start = 1_700_000_000_000 // PERIOD_MS * PERIOD_MS
    rows = counted([
        ("con_a", start + 1, 200, 12), ("con_a", start + 2, 204, 12),  # one row of 2
        ("con_a", start + 3, 200, 13), ("con_a", start + PERIOD_MS, 200, 12),  # next period
        ("con_a", start + 4, 503, 12), ("con_a", start + 5, None, 30_500),
        ("con_b", start + 1, 200, 12),
    ])
    assert sorted((r["connector_id"], r["period"] - start, r["outcome"], r["duration_ms"],
                   r["attempts"]) for r in rows) == [
        ("con_a", 0, "delivered", 12, 2), ("con_a", 0, "delivered", 13, 1),
        ("con_a", 0, "no_answer", 30_000, 1), ("con_a", 0, "refused", 12, 1),
        ("con_a", PERIOD_MS, "delivered", 12, 1), ("con_b", 0, "delivered", 12, 1),
    ]


@pytest.fixture
async def connector_id(org: Org) -> AsyncIterator[str]:
    con = await org.connector("https://hooks.example.com", active=False)
    yield con["id"]


async def add(service: Service, rows: list[tuple[str, int, int | None, int]]) -> None:
    async with service.runtime.db.write() as conn:
        await Repository(conn).add_attempt_counts(counted(rows))


async def test_batches_add_up_and_another_organization_sees_nothing(
    service: Service, org: Org, connector_id: str
) -> None:
    now = now_ms()
    for _ in range(3):  # the same attempts in three batches: one row, counted three times
        await add(service, [(connector_id, now, 200, 40), (connector_id, now, None, 5000)])
    activity = await connector_activity(service.runtime, org.id, connector_id, until_ms=now)
    assert activity.totals == {"delivered": 3, "refused": 0, "no_answer": 3}
    assert (activity.buckets[-1].p50_ms, activity.buckets[-1].p99_ms) == (40, 5000)
    other = await service.new_org("Globex")
    nothing = await connector_activity(service.runtime, other.id, connector_id, until_ms=now)
    assert nothing.total == 0


async def test_retention_drops_counts_older_than_two_days(
    service: Service, org: Org, connector_id: str
) -> None:
    now = now_ms()
    await add(service, [(connector_id, now, 200, 5),
                        (connector_id, now - COUNTS_KEPT_MS - 2 * PERIOD_MS, 200, 5)])
    purged = await Purger(service.runtime.db, service.settings).purge_once()
    assert purged["attempt_counts"] == 1
    async with service.runtime.db.read() as conn:
        left = await Repository(conn).connector_attempt_histogram(
            org.id, connector_id, since=0, until=now + PERIOD_MS, bucket_ms=PERIOD_MS)
    assert [int(r.attempts) for r in left] == [1]
