"""Storing accepted messages and routing them, in one transaction."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hookstream.ids import new_id
from hookstream.ingest.message import DatastreamMessage, to_body
from hookstream.queue.enqueue import enqueue, plan_delivery
from hookstream.route.routing import Trigger, connectors_for
from hookstream.storage.repository import Repository
from hookstream.thermostat.changes import fold_reports


def build_triggers(rows: Any) -> list[Trigger]:
    """Routing rows (one per trigger and scoped gateway) folded into Triggers."""
    grouped: dict[tuple[str, str, bool], set[str]] = {}
    for r in rows:
        key = (r.connector_id, r.kinds, bool(r.all_gateways))
        gateways = grouped.setdefault(key, set())
        if r.gateway_id is not None:
            gateways.add(r.gateway_id)
    return [
        Trigger(cid, frozenset(kinds.split(",")), all_gw, frozenset(gws))
        for (cid, kinds, all_gw), gws in grouped.items()
    ]


async def org_triggers(repo: Repository, org_id: str) -> list[Trigger]:
    """The organization's triggers to active connectors, read in the caller's transaction."""
    return build_triggers(await repo.routing_rows(org_id))


@dataclass(frozen=True, slots=True)
class Planned:
    """The rows one ingest request will insert: its messages and their deliveries."""

    message_rows: list[dict[str, Any]]
    delivery_rows: list[dict[str, Any]]

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.message_rows]


async def plan_messages(
    repo: Repository, *, org_id: str, gateway_id: str, kind: str,
    messages: list[DatastreamMessage], triggers: list[Trigger] | None = None,
) -> Planned:
    """The rows for the messages and one pending delivery per matching active connector.

    Reads the organization's routing in the caller's transaction (unless given ``triggers``
    read in it already); inserts nothing.
    """
    now = int(time.time() * 1000)
    if triggers is None:
        triggers = await org_triggers(repo, org_id)
    targets = connectors_for(kind, gateway_id, triggers)
    message_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    for m in messages:
        message_id = new_id("msg", now)
        message_rows.append({
            "id": message_id, "org_id": org_id, "gateway_id": gateway_id, "kind": kind,
            "device_id": m.deviceId, "body": to_body(m, now), "accepted_at": now,
            "source_digest": None,
        })
        delivery_rows.extend(
            plan_delivery(
                org_id=org_id, message_id=message_id, connector_id=connector_id, kind=kind,
                device_id=m.deviceId, now=now,
            )
            for connector_id in targets
        )
    return Planned(message_rows, delivery_rows)


async def insert_planned(repo: Repository, planned: Planned) -> None:
    """Insert what ``plan_messages`` made; workers are notified when the caller commits
    (the caller wakes its in-process workers after the commit: ``queue.enqueue.wake``)."""
    await repo.insert_messages(planned.message_rows)
    # Thermostat modules linked to these gateways take their measures from the messages,
    # in this transaction (their notifications are queued, and notified, with it).
    notified = await fold_reports(repo, planned.message_rows, int(time.time() * 1000))
    await enqueue(repo, planned.delivery_rows, notify=not notified)
