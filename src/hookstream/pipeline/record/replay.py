"""Replaying a connector's deliveries: each becomes a new delivery of the same message.

``replay_connector`` is the one implementation behind ``POST /api/v1/connectors/{id}/replay``
and ``hookstream replay``. It creates, for every delivery of the connector created in
``[since, until)`` with one of the chosen statuses, a new delivery of the same message
(``replay_of`` = that delivery's id), so the receiver sees the same ``webhook-id`` again,
and the new delivery has its own attempt history. It works in batches of ``batch_size``
deliveries, one transaction each (a read of at most that many rows and one multi-row
insert), never one statement per row. New deliveries are ``pending`` while the connector
is switched on and ``held`` while it is off (read again at every batch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hookstream import ids
from hookstream.errors import NotFound, ValidationFailed
from hookstream.models import DeliveryStatus
from hookstream.pipeline.queue.enqueue import enqueue, plan_delivery
from hookstream.storage.database import Database
from hookstream.storage.repository import Repository

STATUSES: tuple[str, ...] = tuple(s.value for s in DeliveryStatus)
# Without a status filter, everything that is finished: what was delivered, what was given
# up on and what was cancelled. Pending and held deliveries are still queued; replaying
# them too takes asking for them by name.
DEFAULT_STATUSES: tuple[str, ...] = (
    DeliveryStatus.DELIVERED.value, DeliveryStatus.FAILED.value, DeliveryStatus.CANCELLED.value,
)
BATCH_SIZE = 1000
# A count past this is as good as "no cap" (a LIMIT needs a number).
_NO_CAP = 2**62


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """How many deliveries were created, and how many of them are held (connector off)."""

    replayed: int
    held: int


class ReplayTooLarge(ValidationFailed):
    """More deliveries match than one call may replay."""

    code = "replay_too_large"


def parse_statuses(value: Any, field: str = "status") -> tuple[str, ...]:
    """A status or a list of statuses, checked; ``None`` gives ``DEFAULT_STATUSES``.

    Raises ValueError with a message naming the valid statuses.
    """
    if value is None:
        return DEFAULT_STATUSES
    items: Iterable[Any] = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(f"'{field}' must be a status or a list of statuses")
    statuses: list[str] = []
    for item in items:
        if not isinstance(item, str) or item not in STATUSES:
            raise ValueError(
                f"'{field}' must be one of {', '.join(STATUSES)} (or a list of them), "
                f"not {item!r}"
            )
        if item not in statuses:
            statuses.append(item)
    if not statuses:
        raise ValueError(f"'{field}' must name at least one status")
    return tuple(statuses)


def check_range(since_ms: int, until_ms: int | None, now_ms: int | None = None) -> int:
    """The end of a replay's range: ``until_ms``, never later than now (the default).

    Raises ValidationFailed when ``until`` is not later than ``since``, or ``since`` is in
    the future.
    """
    now = ids.now_ms() if now_ms is None else now_ms
    if until_ms is not None and until_ms <= since_ms:
        raise ValidationFailed(
            "'until' must be later than 'since'",
            details=[{"field": "until", "message": "not later than 'since'"}],
        )
    until = now if until_ms is None else min(until_ms, now)
    if since_ms >= until:
        raise ValidationFailed(
            "'since' is in the future: nothing can have been created since then",
            details=[{"field": "since", "message": "in the future"}],
        )
    return until


async def ensure_organization(db: Database, org_id: str) -> None:
    """NotFound unless the organization exists (the API knows it from the key; the CLI not)."""
    async with db.read() as conn:
        if await Repository(conn).get_organization(org_id) is None:
            raise NotFound(f"no organization '{org_id}'")


async def replay_connector(
    db: Database,
    org_id: str,
    connector_id: str,
    *,
    since_ms: int,
    until_ms: int | None = None,
    statuses: Iterable[str] = DEFAULT_STATUSES,
    max_rows: int | None = None,
    batch_size: int = BATCH_SIZE,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Replay the connector's deliveries created in ``[since_ms, until_ms)`` (epoch ms).

    ``until_ms`` defaults to now: what the replay itself creates is never in its range.
    With ``max_rows``, a range holding more deliveries is refused (ReplayTooLarge) before
    anything is created. ``on_total`` gets the number of deliveries to replay, and
    ``on_progress`` the size of each batch once committed. Raises NotFound for a connector
    that is not the organization's (or was deleted), ValidationFailed for an empty range.
    The caller wakes its in-process worker; on PostgreSQL each batch notifies workers.
    """
    chosen = list(dict.fromkeys(statuses))
    until = check_range(since_ms, until_ms)

    async with db.read() as conn:
        repo = Repository(conn)
        if await repo.get_connector(org_id, connector_id) is None:
            raise NotFound(f"no connector '{connector_id}'")
        total = await repo.count_replayable(
            org_id, connector_id, chosen, since_ms, until,
            limit=_NO_CAP if max_rows is None else max_rows + 1,
        )
    if max_rows is not None and total > max_rows:
        raise ReplayTooLarge(
            f"more than {max_rows} deliveries match; one replay takes at most {max_rows}: "
            "narrow the range (since/until) or the statuses, or use `hookstream replay`",
            details=[{"field": "since", "message": f"more than {max_rows} deliveries match"}],
        )
    if on_total is not None:
        on_total(total)

    replayed = held = 0
    after = ""
    while max_rows is None or replayed < max_rows:
        limit = batch_size if max_rows is None else min(batch_size, max_rows - replayed)
        now = ids.now_ms()
        async with db.write() as conn:
            repo = Repository(conn)
            connector = await repo.get_connector(org_id, connector_id)
            if connector is None:  # deleted meanwhile: what was created stays, and is cancelled
                raise NotFound(f"no connector '{connector_id}'")
            rows = await repo.replayable_batch(
                org_id, connector_id, chosen, since_ms, until, after=after, limit=limit
            )
            if not rows:
                break
            due = await enqueue(repo, [
                plan_delivery(
                    org_id=org_id, message_id=r.message_id, connector_id=connector_id,
                    kind=r.kind, device_id=r.device_id, now=now, active=bool(connector.active),
                    replay_of=r.id,
                )
                for r in rows
            ])
        replayed += len(rows)
        held += len(rows) - due
        after = rows[-1].id
        if on_progress is not None:
            on_progress(len(rows))
        if len(rows) < limit:
            break
    return ReplayResult(replayed, held)
