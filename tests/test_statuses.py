"""The HTTP status of each refusal lives in web.statuses, not on the domain's errors."""

from __future__ import annotations

import pytest

from hookstream import errors
from hookstream.errors import NotFound, Refused, TooManyRequests
from hookstream.pipeline.ingest.idempotency import IdempotencyKeyReused
from hookstream.pipeline.record.replay import ReplayTooLarge
from hookstream.web.console.sessions import CsrfRejected
from hookstream.web.statuses import STATUS, status_for


@pytest.mark.parametrize(("name", "status"), [
    ("Refused", 400), ("BadRequest", 400), ("Unauthorized", 401), ("Forbidden", 403),
    ("NotFound", 404), ("Conflict", 409), ("PayloadTooLarge", 413), ("ValidationFailed", 422),
])
def test_each_refusal_has_its_status(name: str, status: int) -> None:
    kind = getattr(errors, name)
    assert status_for(kind("no")) == status
    assert not hasattr(kind, "status_code")


def test_too_many_requests_is_429_with_retry_after() -> None:
    exc = TooManyRequests("slow down", retry_after=3)
    assert status_for(exc) == 429 and exc.headers == {"Retry-After": "3"}


def test_a_subclass_maps_by_its_nearest_base() -> None:
    class PlantGone(NotFound):  # as a plug-in would define it
        code = "plant_gone"

    assert status_for(PlantGone("gone")) == 404
    assert status_for(CsrfRejected("expired")) == 403
    assert status_for(ReplayTooLarge("too many")) == 422
    assert status_for(IdempotencyKeyReused("reused")) == 422


def test_every_refusal_in_errors_is_mapped() -> None:
    refusals = {v for v in vars(errors).values()
                if isinstance(v, type) and issubclass(v, Refused)}
    assert refusals == set(STATUS)
