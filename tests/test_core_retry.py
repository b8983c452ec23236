"""The retry policy: delivered, retried after the schedule's delays, or given up."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from hookstream.pipeline.deliver.retry import (
    MAX_RETRY_AFTER,
    Answer,
    Decision,
    RetryPolicy,
    Verdict,
    parse_retry_after,
)

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


# --- Retry-After, 410, abort and per-connector limits -----------------------------------

def http_date(epoch: float) -> str:
    return format_datetime(datetime.fromtimestamp(epoch, UTC), usegmt=True)


@pytest.mark.parametrize(("header", "seconds"), [
    ("0", 0.0), ("2", 2.0), ("120", 120.0), (" 30 ", 30.0), ("86400", 86400.0),
])
def test_retry_after_delta_seconds(header: str, seconds: float) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_retry_after_http_date_in_the_future() -> None:
    assert parse_retry_after(http_date(NOW + 90), NOW) == pytest.approx(90.0)
    assert parse_retry_after("Tue, 14 Nov 2023 22:46:40 GMT", NOW) == pytest.approx(2000.0)


def test_retry_after_http_date_in_the_past_is_now() -> None:
    assert parse_retry_after(http_date(NOW - 3600), NOW) == 0.0


@pytest.mark.parametrize("header", [
    None, "", "   ", "soon", "-5", "1.5", "5s", "0x10", "Wed, 99 Foo 2015 07:28:00 GMT",
])
def test_retry_after_garbage_is_none(header: str | None) -> None:
    assert parse_retry_after(header, NOW) is None


def test_retry_after_unicode_digit_is_none_not_an_exception() -> None:
    assert parse_retry_after("²", NOW) is None


def test_retry_after_is_capped_at_a_day() -> None:
    assert MAX_RETRY_AFTER == 86400.0
    assert parse_retry_after("86401", NOW) == MAX_RETRY_AFTER
    assert parse_retry_after("99999999999999999999", NOW) == MAX_RETRY_AFTER
    assert parse_retry_after(http_date(NOW + 30 * 86400), NOW) == MAX_RETRY_AFTER


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_on_429_and_503_sets_the_retry_time_without_jitter(status: int) -> None:
    policy = RetryPolicy(SCHEDULE, jitter=0.5)
    for seed in range(20):
        decision = policy.decide(1, False, NOW, answer=Answer(status, "2"),
                                 rng=random.Random(seed))
        assert decision == Decision(Verdict.RETRY, retry_at=NOW + 2)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_as_an_http_date(status: int) -> None:
    policy = RetryPolicy(SCHEDULE, jitter=0.0)
    decision = policy.decide(2, False, NOW, answer=Answer(status, http_date(NOW + 600)))
    assert decision.verdict is Verdict.RETRY
    assert decision.retry_at == pytest.approx(NOW + 600)


def test_retry_after_may_be_longer_than_the_schedule_but_not_than_a_day() -> None:
    policy = RetryPolicy(SCHEDULE, jitter=0.0)
    decision = policy.decide(1, False, NOW, answer=Answer(429, "1000000"))
    assert decision.retry_at == NOW + MAX_RETRY_AFTER


@pytest.mark.parametrize("retry_after", [None, "", "later"])
def test_429_without_a_usable_retry_after_follows_the_schedule(retry_after: str | None) -> None:
    policy = RetryPolicy(SCHEDULE, jitter=0.0)
    decision = policy.decide(2, False, NOW, answer=Answer(429, retry_after))
    assert decision == Decision(Verdict.RETRY, retry_at=NOW + SCHEDULE[1])


@pytest.mark.parametrize("status", [500, 502, 404, 408, None])
def test_retry_after_on_other_answers_is_ignored(status: int | None) -> None:
    policy = RetryPolicy(SCHEDULE, jitter=0.0)
    decision = policy.decide(1, False, NOW, answer=Answer(status, "3600"))
    assert decision == Decision(Verdict.RETRY, retry_at=NOW + SCHEDULE[0])


def test_retry_after_does_not_extend_the_attempt_limit() -> None:
    policy = RetryPolicy(SCHEDULE, jitter=0.0)
    decision = policy.decide(policy.max_attempts, False, NOW, answer=Answer(503, "5"))
    assert decision.verdict is Verdict.FAILED


@pytest.mark.parametrize("attempt", [1, 2, 4, 10])
def test_410_holds_and_deactivates(attempt: int) -> None:
    policy = RetryPolicy(SCHEDULE, jitter=0.0)
    decision = policy.decide(attempt, False, NOW, answer=Answer(410))
    assert decision.verdict is Verdict.HELD
    assert decision.deactivate is True
    assert decision.retry_at is None
    assert decision.reason is not None and "410" in decision.reason


def test_only_410_deactivates() -> None:
    policy = RetryPolicy(SCHEDULE, jitter=0.0)
    for status in (None, 400, 401, 403, 404, 429, 500, 503):
        assert policy.decide(1, False, NOW, answer=Answer(status)).deactivate is False
        assert policy.decide(4, False, NOW, answer=Answer(status)).deactivate is False


@pytest.mark.parametrize("attempt", [1, 2, 3])
@pytest.mark.parametrize("status", [400, 429, 500, 503, None])
def test_abort_message_fails_at_once(attempt: int, status: int | None) -> None:
    policy = RetryPolicy(SCHEDULE, jitter=0.0)
    decision = policy.decide(attempt, False, NOW, answer=Answer(status, "5", abort=True))
    assert decision.verdict is Verdict.FAILED
    assert decision.retry_at is None
    assert decision.deactivate is False
    assert decision.reason is not None and "abort-message" in decision.reason


def test_abort_on_a_2xx_is_still_delivered() -> None:
    policy = RetryPolicy(SCHEDULE, jitter=0.0)
    decision = policy.decide(1, True, NOW, answer=Answer(200, abort=True))
    assert decision == Decision(Verdict.DELIVERED)


def test_more_attempts_than_the_schedule_repeat_the_last_delay() -> None:
    policy = RetryPolicy((1.0, 10.0), jitter=0.0, max_attempts_=6)
    assert policy.max_attempts == 6
    delays = []
    for attempt in range(1, 6):
        decision = policy.decide(attempt, False, NOW)
        assert decision.verdict is Verdict.RETRY and decision.retry_at is not None
        delays.append(decision.retry_at - NOW)
    assert delays == [1.0, 10.0, 10.0, 10.0, 10.0]
    failed = policy.decide(6, False, NOW)
    assert failed.verdict is Verdict.FAILED
    assert failed.reason == "gave up after 6 attempts"


def test_fewer_attempts_than_the_schedule_stop_early() -> None:
    policy = RetryPolicy(SCHEDULE, jitter=0.0, max_attempts_=2)
    assert policy.decide(1, False, NOW).verdict is Verdict.RETRY
    assert policy.decide(2, False, NOW).verdict is Verdict.FAILED


def test_empty_schedule_with_one_attempt_fails_at_once() -> None:
    policy = RetryPolicy((), jitter=0.0, max_attempts_=1)
    decision = policy.decide(1, False, NOW, answer=Answer(500))
    assert decision.verdict is Verdict.FAILED
    assert decision.reason == "gave up after 1 attempts"


def test_empty_schedule_with_more_attempts_retries_at_once() -> None:
    policy = RetryPolicy((), jitter=0.5, max_attempts_=3)
    assert policy.decide(1, False, NOW) == Decision(Verdict.RETRY, retry_at=NOW)
    assert policy.decide(3, False, NOW).verdict is Verdict.FAILED


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_are_numbered_from_one(attempt: int) -> None:
    policy = RetryPolicy(SCHEDULE)
    with pytest.raises(ValueError, match="from 1"):
        policy.decide(attempt, False, NOW)
    with pytest.raises(ValueError):
        policy.decide(attempt, True, NOW)
