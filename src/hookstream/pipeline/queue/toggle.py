"""Holding, resuming and cancelling a connector's open deliveries: its record and its queue rows.

A delivery's status (what the logs show) is on its ``deliveries`` row; whether and when a
worker may claim it is on its ``queue`` row. Each step changes both, in the caller's
transaction, records first (they find the connector's deliveries through the queue rows).
"""

from __future__ import annotations

from hookstream.storage.repository import Repository


async def hold(repo: Repository, connector_id: str, now: int) -> int:
    """The connector is off: its pending deliveries are held, never due until resumed."""
    held = await repo.hold_deliveries(connector_id, now)
    await repo.hold_queued(connector_id)
    return held


async def resume(repo: Repository, connector_id: str, now: int) -> int:
    """The connector is on again: its held deliveries are pending and due at once."""
    resumed = await repo.resume_deliveries(connector_id, now)
    await repo.resume_queued(connector_id, now)
    return resumed


async def cancel_open(repo: Repository, connector_id: str, now: int) -> int:
    """The connector is gone: its open deliveries are cancelled and leave the queue."""
    cancelled = await repo.cancel_open_deliveries(connector_id, now)
    await repo.cancel_queued(connector_id)
    return cancelled
