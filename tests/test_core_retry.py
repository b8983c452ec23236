"""The retry policy: delivered, retried after the schedule's delays, or given up."""

from __future__ import annotations

import random

import pytest

from hookstream.deliver.retry import Decision, RetryPolicy, Verdict

NOW = 1_700_000_000.0
SCHEDULE = (5.0, 300.0, 1800.0)


def test_success_is_delivered_at_any_attempt() -> None:
    policy = RetryPolicy(SCHEDULE, jitter=0.0)
    for attempt in range(1, policy.max_attempts + 1):
        decision = policy.decide(attempt, True, NOW)
        assert decision == Decision(Verdict.DELIVERED)
        assert decision.retry_at is None


def test_failures_retry_after_each_delay_in_order() -> None:
    policy = RetryPolicy(SCHEDULE, jitter=0.0)
    retry_ats = []
    for attempt in range(1, len(SCHEDULE) + 1):
        decision = policy.decide(attempt, False, NOW)
        assert decision.verdict is Verdict.RETRY
        assert decision.retry_at is not None
        retry_ats.append(decision.retry_at - NOW)
    assert retry_ats == list(SCHEDULE)


def test_gives_up_after_one_plus_len_schedule_attempts() -> None:
    policy = RetryPolicy(SCHEDULE, jitter=0.0)
    assert policy.max_attempts == 4
    assert policy.decide(3, False, NOW).verdict is Verdict.RETRY
    failed = policy.decide(4, False, NOW)
    assert failed.verdict is Verdict.FAILED and failed.retry_at is None
    assert failed.reason == f"gave up after {policy.max_attempts} attempts"
    assert failed.retry_at is None
    assert policy.decide(5, False, NOW).verdict is Verdict.FAILED


def test_walking_the_whole_schedule() -> None:
    """Attempt after attempt fails: the times add up to the schedule, then it gives up."""
    policy = RetryPolicy(SCHEDULE, jitter=0.0)
    now, attempt, times = NOW, 1, []
    while True:
        decision = policy.decide(attempt, False, now)
        if decision.verdict is Verdict.FAILED:
            break
        assert decision.retry_at is not None
        now = decision.retry_at
        times.append(now)
        attempt += 1
    assert attempt == 4
    assert times == [NOW + 5, NOW + 305, NOW + 2105]


def test_empty_schedule_fails_on_first_failure() -> None:
    policy = RetryPolicy((), jitter=0.1)
    assert policy.max_attempts == 1
    assert policy.decide(1, False, NOW).verdict is Verdict.FAILED
    assert policy.decide(1, True, NOW).verdict is Verdict.DELIVERED


def test_zero_jitter_is_exact() -> None:
    policy = RetryPolicy((7.5,), jitter=0.0)
    for seed in range(20):
        assert policy.decide(1, False, NOW, rng=random.Random(seed)).retry_at == NOW + 7.5


@pytest.mark.parametrize("jitter", [0.1, 0.5, 1.0])
def test_jitter_keeps_delay_within_bounds(jitter: float) -> None:
    policy = RetryPolicy(SCHEDULE, jitter=jitter)
    for attempt, base in enumerate(SCHEDULE, start=1):
        delays = set()
        for seed in range(200):
            decision = policy.decide(attempt, False, NOW, rng=random.Random(seed))
            assert decision.verdict is Verdict.RETRY
            assert decision.retry_at is not None
            delay = decision.retry_at - NOW
            assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9
            delays.add(delay)
        # The spread is real: not every seed gives the same delay.
        assert len(delays) > 100
        # And it goes both ways around the nominal delay.
        assert min(delays) < base < max(delays)


def test_jitter_is_reproducible_with_a_seed() -> None:
    policy = RetryPolicy(SCHEDULE, jitter=0.2)
    a = policy.decide(2, False, NOW, rng=random.Random(1234))
    b = policy.decide(2, False, NOW, rng=random.Random(1234))
    assert a == b


def test_jitter_without_rng_stays_within_bounds() -> None:
    policy = RetryPolicy((100.0,), jitter=0.1)
    for _ in range(100):
        retry_at = policy.decide(1, False, NOW).retry_at
        assert retry_at is not None
        assert 90.0 - 1e-9 <= retry_at - NOW <= 110.0 + 1e-9


def test_zero_delay_retries_now_even_with_jitter() -> None:
    policy = RetryPolicy((0.0, 10.0), jitter=0.5)
    assert policy.decide(1, False, NOW, rng=random.Random(3)).retry_at == NOW


def test_retry_at_is_relative_to_now() -> None:
    policy = RetryPolicy(SCHEDULE, jitter=0.0)
    assert policy.decide(1, False, 0.0).retry_at == 5.0
    assert policy.decide(1, False, 1000.0).retry_at == 1005.0


def test_verdicts_have_the_contract_status_names() -> None:
    assert Verdict.DELIVERED.value == "delivered"
    assert Verdict.FAILED.value == "failed"
