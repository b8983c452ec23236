"""The retry policy: given an attempt's outcome, what happens next (pure, no I/O)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum

from hookstream.models import DeliveryStatus

MAX_RETRY_AFTER = 86400.0  # a receiver cannot push a retry further than a day away
ABORT_HEADER_VALUE = "abort-message"


class Verdict(StrEnum):
    """What an attempt leads to; but for RETRY (pending again), the delivery's new status."""

    DELIVERED = DeliveryStatus.DELIVERED.value
    RETRY = "retry"
    FAILED = DeliveryStatus.FAILED.value
    HELD = DeliveryStatus.HELD.value  # the connector is switched off by this answer (410 Gone)


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt got back, as far as the policy cares."""

    status_code: int | None  # None: timeout or connection error
    retry_after: str | None = None
    abort: bool = False  # the receiver sent webhook-delivery: abort-message
    refused: bool = False  # the target may not be reached (SSRF guard): retrying cannot help
    # The connector's transform failed on this message: the same message and expression
    # would fail again, so it fails at once (replayable once the expression is fixed).
    transform_failed: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    retry_at: float | None = None  # epoch seconds, set for RETRY
    reason: str | None = None  # why the delivery failed, was held, or the connector stopped
    deactivate: bool = False  # switch the connector off (410 Gone)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry after each delay of ``schedule`` in turn (+/- ``jitter``), then give up.

    ``max_attempts`` defaults to ``1 + len(schedule)``; when larger, the last delay repeats.
    """

    schedule: Sequence[float]
    jitter: float = 0.1
    max_attempts_: int | None = None

    @property
    def max_attempts(self) -> int:
        if self.max_attempts_ is not None:
            return self.max_attempts_
        return 1 + len(self.schedule)

    def delay_after(self, attempt: int) -> float:
        if not self.schedule:
            return 0.0
        return float(self.schedule[min(attempt - 1, len(self.schedule) - 1)])

    def decide(
        self,
        attempt: int,
        succeeded: bool,
        now: float,
        *,
        answer: Answer | None = None,
        rng: random.Random | None = None,
    ) -> Decision:
        """What follows attempt number ``attempt`` (1-based) that ended at ``now``."""
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        if succeeded:
            return Decision(Verdict.DELIVERED)
        answer = answer or Answer(None)
        if answer.transform_failed:
            return Decision(Verdict.FAILED, reason="the transform failed; not retried (fix "
                                                   "the expression, then replay)")
        if answer.status_code == 410:
            return Decision(Verdict.HELD, reason="the receiver answered 410 Gone",
                            deactivate=True)
        if answer.abort:
            return Decision(Verdict.FAILED,
                            reason="the receiver asked to stop (webhook-delivery: abort-message)")
        if answer.refused:
            return Decision(Verdict.FAILED,
                            reason="the target is refused; not retried")
        if attempt >= self.max_attempts:
            return Decision(Verdict.FAILED, reason=f"gave up after {attempt} attempts")
        if answer.status_code in (429, 503):
            waited = parse_retry_after(answer.retry_after, now)
            if waited is not None:
                return Decision(Verdict.RETRY, retry_at=now + waited)
        delay = self.delay_after(attempt)
        if self.jitter and delay:
            delay *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        return Decision(Verdict.RETRY, retry_at=now + delay)
