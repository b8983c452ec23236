"""How a claim's free slots are shared among connectors (pure: no database, no server)."""

from __future__ import annotations

import math
import random

import pytest

from hookstream.pipeline.queue.fairness import Due, Share, available_tokens, share

NOW = 1_700_000_000.0


def counts(shares: list[Share]) -> dict[str, int]:
    return {s.connector_id: s.count for s in shares}


def due(
    cid: str,
    max_in_flight: int = 64,
    in_flight: int = 0,
    *,
    rate_limit: float | None = None,
    rate_tokens: float | None = None,
    rate_updated_at: float | None = None,
) -> Due:
    return Due(cid, max_in_flight, in_flight, rate_limit, rate_tokens, rate_updated_at)


def room_of(c: Due, now: float) -> int:
    """What a connector may still claim: its free concurrency, capped by whole tokens."""
    room = max(c.max_in_flight - c.in_flight, 0)
    bucket = available_tokens(c, now)
    return room if bucket is None else min(room, math.floor(bucket))


# --- available_tokens -------------------------------------------------------------------

def test_no_rate_limit_has_no_bucket() -> None:
    assert available_tokens(due("a"), NOW) is None
    assert available_tokens(due("a", rate_tokens=0.0, rate_updated_at=NOW), NOW) is None


@pytest.mark.parametrize(("tokens", "updated_at"), [(None, None), (None, NOW), (0.0, None)])
def test_unknown_bucket_is_full(tokens: float | None, updated_at: float | None) -> None:
    d = due("a", rate_limit=5.0, rate_tokens=tokens, rate_updated_at=updated_at)
    assert available_tokens(d, NOW) == 5.0


def test_bucket_refills_by_elapsed_times_rate() -> None:
    d = due("a", rate_limit=10.0, rate_tokens=2.0, rate_updated_at=NOW)
    assert available_tokens(d, NOW) == 2.0
    assert available_tokens(d, NOW + 0.25) == pytest.approx(4.5)
    assert available_tokens(d, NOW + 0.5) == pytest.approx(7.0)


def test_refill_is_capped_at_the_rate() -> None:
    d = due("a", rate_limit=10.0, rate_tokens=2.0, rate_updated_at=NOW)
    assert available_tokens(d, NOW + 1) == 10.0  # 2 + 10 would be 12
    assert available_tokens(d, NOW + 3600) == 10.0


def test_a_clock_that_went_back_does_not_drain_the_bucket() -> None:
    d = due("a", rate_limit=10.0, rate_tokens=3.0, rate_updated_at=NOW)
    assert available_tokens(d, NOW - 5) == 3.0


def test_fractional_tokens_are_kept() -> None:
    d = due("a", rate_limit=4.0, rate_tokens=0.5, rate_updated_at=NOW)
    assert available_tokens(d, NOW + 0.1) == pytest.approx(0.9)


# --- share ------------------------------------------------------------------------------

def test_empty_list_shares_nothing() -> None:
    assert share([], 100, NOW) == []


def test_limit_zero_claims_nothing() -> None:
    shares = share([due("a"), due("b")], 0, NOW)
    assert sum(s.count for s in shares) == 0


def test_round_robin_split_among_connectors() -> None:
    shares = counts(share([due("a"), due("b"), due("c")], 9, NOW))
    assert shares == {"a": 3, "b": 3, "c": 3}


def test_uneven_split_differs_by_at_most_one() -> None:
    shares = counts(share([due(c) for c in "abcd"], 10, NOW))
    assert sum(shares.values()) == 10
    assert max(shares.values()) - min(shares.values()) == 1


def test_room_larger_than_limit_fills_the_limit() -> None:
    assert counts(share([due("a", 1000)], 7, NOW)) == {"a": 7}


def test_connector_at_its_max_in_flight_gets_nothing() -> None:
    shares = counts(share([due("full", 5, 5), due("idle", 5, 0)], 10, NOW))
    assert shares.get("full", 0) == 0
    assert shares["idle"] == 5


def test_over_its_max_in_flight_gets_nothing() -> None:
    # The limit may have been lowered while requests were in flight.
    shares = counts(share([due("a", 2, 7)], 10, NOW))
    assert shares.get("a", 0) == 0


def test_room_caps_the_share_and_the_rest_goes_to_others() -> None:
    shares = counts(share([due("a", 10, 8), due("b", 100, 0)], 20, NOW))
    assert shares == {"a": 2, "b": 18}


def test_unlimited_rate_share_has_no_bucket() -> None:
    (s,) = share([due("a")], 3, NOW)
    assert s == Share("a", 3, None)


def test_full_bucket_caps_the_share_at_the_rate() -> None:
    (s,) = share([due("a", rate_limit=5.0)], 50, NOW)
    assert s.count == 5
    assert s.bucket == 5.0


def test_floor_of_tokens_caps_the_share() -> None:
    d = due("a", rate_limit=10.0, rate_tokens=2.7, rate_updated_at=NOW)
    (s,) = share([d], 50, NOW)
    assert s.count == 2
    assert s.bucket == pytest.approx(2.7)


def test_refilled_tokens_count() -> None:
    d = due("a", rate_limit=10.0, rate_tokens=0.0, rate_updated_at=NOW)
    assert counts(share([d], 50, NOW + 0.35)) == {"a": 3}


def test_less_than_one_token_claims_nothing() -> None:
    d = due("a", rate_limit=10.0, rate_tokens=0.4, rate_updated_at=NOW)
    assert counts(share([d], 50, NOW)).get("a", 0) == 0


def test_rate_and_concurrency_both_cap() -> None:
    by_rate = due("r", 100, 0, rate_limit=3.0)
    by_room = due("c", 4, 2, rate_limit=50.0)
    assert counts(share([by_rate, by_room], 100, NOW)) == {"r": 3, "c": 2}


def test_least_busy_are_served_first_when_slots_are_short() -> None:
    connectors = [due("busy", 64, 40), due("idle", 64, 0), due("some", 64, 10)]
    assert counts(share(connectors, 1, NOW)) == {"idle": 1, "some": 0, "busy": 0}
    assert counts(share(connectors, 2, NOW)) == {"idle": 1, "some": 1, "busy": 0}
    assert counts(share(connectors, 3, NOW)) == {"idle": 1, "some": 1, "busy": 1}


def test_a_hanging_connector_cannot_take_the_whole_claim() -> None:
    # One connector with a huge backlog and room, ten others with a little due work each.
    hanging = due("hanging", 1000, 0)
    others = [due(f"ok{i}", 64, 0) for i in range(10)]
    shares = counts(share([hanging, *others], 22, NOW))
    assert shares["hanging"] == 2
    assert all(shares[f"ok{i}"] == 2 for i in range(10))


def test_a_rate_below_one_per_second_still_delivers() -> None:
    # Limits.perSecond accepts any value > 0, e.g. 0.5 (one request every two seconds).
    fresh = due("slow", rate_limit=0.5)
    later = due("slow", rate_limit=0.5, rate_tokens=0.0, rate_updated_at=NOW - 3600)
    assert counts(share([fresh], 10, NOW)).get("slow", 0) == 1
    assert counts(share([later], 10, NOW)).get("slow", 0) == 1


def test_random_cases_never_exceed_the_limit_or_any_room() -> None:
    rng = random.Random(20260131)
    for _ in range(500):
        connectors = []
        for i in range(rng.randint(0, 12)):
            max_in_flight = rng.randint(1, 20)
            rated = rng.random() < 0.5
            updated = rng.choice([None, NOW - rng.uniform(0, 3)])
            connectors.append(Due(
                f"c{i}", max_in_flight, rng.randint(0, 25),
                rng.choice([0.5, 1.0, 2.5, 10.0, 100.0]) if rated else None,
                rng.uniform(0, 5) if rated and updated is not None else None,
                updated,
            ))
        limit = rng.randint(0, 60)
        shares = share(connectors, limit, NOW)
        total = sum(s.count for s in shares)
        assert total <= limit
        by_id = {c.connector_id: c for c in connectors}
        assert len({s.connector_id for s in shares}) == len(shares)
        for s in shares:
            c = by_id[s.connector_id]
            assert 0 <= s.count <= max(c.max_in_flight - c.in_flight, 0)
            assert s.count <= room_of(c, NOW)
            assert s.bucket == available_tokens(c, NOW)
        # Work-conserving: slots are left over only when every connector is at its cap.
        assert total == min(limit, sum(room_of(c, NOW) for c in connectors))
        # Round robin: no connector has more than one over any connector not at its cap.
        counted = counts(shares)
        uncapped = [n for cid, n in counted.items() if n < room_of(by_id[cid], NOW)]
        if uncapped:
            assert max(counted.values()) <= min(uncapped) + 1
