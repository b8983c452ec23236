"""Enqueueing deliveries: the one place that builds a delivery row, inserts it and wakes the
workers for it.

Every producer (ingest routing, thermostat notifications, alerts, replays of a range and of
one delivery) goes through the same three steps (a delivery is a row of ``deliveries``, its
record, and while open a row of ``queue``, what workers claim):

1. ``plan_delivery`` builds each row (pure): a new ``dlv_`` id, ``pending`` (``held`` when its
   connector is switched off), no attempts yet, due at once; ``device_id`` is the ordering
   key (per-device ordering) and ``replay_of`` names the delivery a replay repeats.
2. ``enqueue`` inserts them in the caller's transaction and, when any is due, asks the
   repository to NOTIFY workers on PostgreSQL (delivered at commit, so never before the rows
   can be seen); it returns how many are due.
3. After the commit, ``wake`` sets this process's ``Wakeup`` when something became due (the
   in-process worker does not hear NOTIFY from its own process in time on SQLite).

Wake-ups are hints: workers also poll, so a lost one delays a delivery by at most one poll
interval and never loses it.
"""

from __future__ import annotations

from typing import Any

from hookstream.ids import new_id
from hookstream.models import DeliveryStatus
from hookstream.pipeline.queue.wakeup import Wakeup
from hookstream.storage.repository import Repository
from hookstream.storage.tables import QUEUE_HELD


def plan_delivery(
    *, org_id: str, message_id: str, connector_id: str, kind: str, device_id: str, now: int,
    active: bool = True, replay_of: str | None = None,
) -> dict[str, Any]:
    """One delivery row of ``message_id`` to ``connector_id``, created at ``now`` (epoch ms).

    ``pending`` and due at ``now``, or ``held`` when the connector is not ``active`` (it is
    made pending when the connector is switched on). Inserts nothing.
    """
    row: dict[str, Any] = {
        "id": new_id("dlv", now), "org_id": org_id, "message_id": message_id,
        "connector_id": connector_id, "kind": kind, "device_id": device_id,
        "status": DeliveryStatus.PENDING.value if active else DeliveryStatus.HELD.value,
        "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now,
    }
    if replay_of is not None:
        row["replay_of"] = replay_of
    return row


def queued(row: dict[str, Any]) -> dict[str, Any]:
    """The queue row of a ``plan_delivery`` row: due at once, or never while held."""
    held = row["status"] == DeliveryStatus.HELD
    return {
        "delivery_id": row["id"], "connector_id": row["connector_id"],
        "device_id": row["device_id"], "message_id": row["message_id"], "kind": row["kind"],
        "due_at": QUEUE_HELD if held else row["next_attempt_at"], "attempts": 0,
        "created_at": row["created_at"],
    }


def due_count(rows: list[dict[str, Any]]) -> int:
    """How many of ``rows`` workers may claim (pending ones)."""
    return sum(1 for r in rows if r["status"] == DeliveryStatus.PENDING)


async def enqueue(repo: Repository, rows: list[dict[str, Any]], *, notify: bool = True) -> int:
    """Insert ``plan_delivery`` rows in the caller's transaction; returns how many are due.

    When any is due (and ``notify``), listening workers are notified when the transaction
    commits (PostgreSQL; a no-op elsewhere). ``notify=False`` is for a caller whose
    transaction notifies already (one NOTIFY per transaction is enough).
    """
    if not rows:
        return 0
    await repo.insert_deliveries(rows)
    await repo.insert_queued([queued(r) for r in rows])
    due = due_count(rows)
    if due and notify:
        await repo.notify_due()
    return due


def wake(wakeup: Wakeup | None, due: int) -> None:
    """After the commit that enqueued ``due`` deliveries: wake this process's workers."""
    if due and wakeup is not None:
        wakeup.set()
