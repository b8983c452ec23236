"""A module's state changes (by the set call, or by what its gateway reports) and the
notifications they queue, written in one transaction.

A change is written only on the version of the row it was computed from, so two writers
(an API process and an ingest batch) never lose each other's change; the notifications are
queued in the same transaction, so none is sent for a change that did not land, and none is
lost for one that did. Each subscription is a connector with per-device ordering keyed by
the plant: its notifications arrive one at a time, in the order the changes were made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from hookstream.errors import HookstreamError
from hookstream.ids import new_id
from hookstream.models import Kind
from hookstream.pipeline.queue.enqueue import enqueue, plan_delivery
from hookstream.storage.repository import Repository
from hookstream.thermostat.state import (
    DEFAULT_MAPPING,
    ModuleState,
    apply_report,
    notification_body,
)

THERMOSTAT_KIND: str = Kind.THERMOSTAT.value
_ATTEMPTS = 10


class ModuleGone(HookstreamError):
    """The module was deleted while it was being changed."""


async def queue_notifications(
    repo: Repository, org_id: str, plant_id: str, module_id: str, state: ModuleState, now: int
) -> int:
    """One message and one pending delivery per subscription of the plant; returns how many
    deliveries were queued (workers are notified when the transaction commits)."""
    subscriptions = await repo.subscriptions_of_plant(org_id, plant_id)
    messages, deliveries = [], []
    for sub in subscriptions:
        message_id = new_id("msg", now)
        messages.append(
            {
                "id": message_id,
                "org_id": org_id,
                "gateway_id": "",
                "kind": THERMOSTAT_KIND,
                # The plant is the ordering key: one subscription's events leave in order.
                "device_id": plant_id,
                "body": notification_body(message_id, state, plant_id, module_id, sub.id, now),
                "accepted_at": now,
                "source_digest": None,
            }
        )
        deliveries.append(
            plan_delivery(
                org_id=org_id, message_id=message_id, connector_id=sub.connector_id,
                kind=THERMOSTAT_KIND, device_id=plant_id, now=now,
            )
        )
    if not deliveries:
        return 0
    await repo.insert_messages(messages)
    return await enqueue(repo, deliveries)


async def change_module(
    repo: Repository,
    org_id: str,
    plant_id: str,
    module_id: str,
    change: Callable[[ModuleState], ModuleState],
    now: int | None = None,
) -> ModuleState:
    """Apply ``change`` to the module's state, write it and queue its notifications.

    ``change`` may raise (a refused command); nothing is written then. Raises ModuleGone when
    the module does not exist (or no longer does).
    """
    now = now if now is not None else int(time.time() * 1000)
    for _ in range(_ATTEMPTS):
        row = await repo.get_module(org_id, plant_id, module_id)
        if row is None:
            raise ModuleGone(module_id)
        new = change(ModuleState.from_json(row.state))
        written = await repo.write_module_state(
            module_id, row.state_version, new.to_json().decode(), row.state_version + 1, now
        )
        if written:
            await queue_notifications(repo, org_id, plant_id, module_id, new, now)
            return new
    raise RuntimeError(f"module {module_id} kept changing under {_ATTEMPTS} attempts")


def _mapping(raw: str | None) -> Mapping[str, str]:
    return orjson.loads(raw) if raw else DEFAULT_MAPPING


async def apply_reports(repo: Repository, message_rows: list[dict[str, Any]], now: int) -> int:
    """Fold one gateway's datastream messages into the modules they report for.

    ``message_rows`` are rows about to be inserted, all of one organization and gateway, in
    ingest order. Returns how many notifications were queued (their transaction notifies
    workers when there are any).
    """
    if not message_rows:
        return 0
    gateway_id = message_rows[0]["gateway_id"]
    device_ids = sorted({r["device_id"] for r in message_rows})
    modules = await repo.reported_modules(gateway_id, device_ids)
    if not modules:
        return 0
    by_device: dict[str, list[Any]] = {}
    for m in modules:
        if m.org_id == message_rows[0]["org_id"]:
            by_device.setdefault(m.device_id, []).append(m)
    queued = 0
    for module_rows in by_device.values():
        for module in module_rows:
            reports = [
                orjson.loads(r["body"]) for r in message_rows if r["device_id"] == module.device_id
            ]
            queued += await _apply_module_reports(repo, module, reports, now)
    return queued


async def _apply_module_reports(
    repo: Repository, module: Any, reports: list[dict[str, Any]], now: int
) -> int:
    mapping = _mapping(module.mapping)
    row = module
    for _ in range(_ATTEMPTS):
        state = ModuleState.from_json(row.state)
        changed_states: list[ModuleState] = []
        for report in reports:
            state, changed = apply_report(state, mapping, report, now)
            if changed:
                changed_states.append(state)
        if state == ModuleState.from_json(row.state):
            return 0
        written = await repo.write_module_state(
            row.id, row.state_version, state.to_json().decode(), row.state_version + 1, now
        )
        if written:
            # Every change a subscriber would notice is one notification, in order.
            queued = 0
            for changed_state in changed_states:
                queued += await queue_notifications(
                    repo, module.org_id, module.plant_id, module.id, changed_state, now
                )
            return queued
        row = await repo.get_module(module.org_id, module.plant_id, module.id)
        if row is None:
            return 0
    return 0


class LinkedGateways:
    """Which gateways of an organization report for modules, cached per process.

    Ingest asks for every batch; the answer is kept ``ttl`` seconds (module changes in this
    process forget it at once, other processes see them within ``ttl``).
    """

    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, frozenset[str]]] = {}

    async def of(self, repo: Repository, org_id: str) -> frozenset[str]:
        now = time.monotonic()
        entry = self._entries.get(org_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        linked = frozenset(await repo.linked_gateway_ids(org_id))
        self._entries[org_id] = (now + self.ttl, linked)
        return linked

    def forget(self, org_id: str) -> None:
        self._entries.pop(org_id, None)


linked_gateways = LinkedGateways()


async def fold_reports(repo: Repository, message_rows: list[dict[str, Any]], now: int) -> int:
    """Apply the messages of gateways linked to modules (ingest calls this for every batch).

    Returns how many notifications were queued: when any were, the transaction notifies
    workers already."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in message_rows:
        groups.setdefault((r["org_id"], r["gateway_id"]), []).append(r)
    queued = 0
    for (org_id, gateway_id), rows in groups.items():
        if gateway_id in await linked_gateways.of(repo, org_id):
            queued += await apply_reports(repo, rows, now)
    return queued
