"""The retry policy: given an attempt's outcome, what happens next (pure, no I/O)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    retry_at: float | None = None  # epoch seconds, set for RETRY


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry after each delay of ``schedule`` in turn, with +/- ``jitter`` spread; then give up.

    A delivery therefore gets ``1 + len(schedule)`` attempts at most.
    """

    schedule: Sequence[float]
    jitter: float = 0.1

    @property
    def max_attempts(self) -> int:
        return 1 + len(self.schedule)

    def decide(
        self,
        attempt: int,
        succeeded: bool,
        now: float,
        *,
        rng: random.Random | None = None,
    ) -> Decision:
        """What follows attempt number ``attempt`` (1-based) that ended at ``now``."""
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        if succeeded:
            return Decision(Verdict.DELIVERED)
        if attempt >= self.max_attempts:
            return Decision(Verdict.FAILED)
        delay = self.schedule[attempt - 1]
        if self.jitter and delay:
            spread = (rng or random).uniform(-self.jitter, self.jitter)
            delay *= 1 + spread
        return Decision(Verdict.RETRY, retry_at=now + delay)
