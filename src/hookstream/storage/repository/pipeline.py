"""The repository's pipeline methods: messages, deliveries, replay and cancel, idempotency."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, text

from hookstream.models import Attempt, Delivery, Message
from hookstream.storage import queries as q
from hookstream.storage.database import NOTIFY_CHANNEL
from hookstream.storage.repository._base import Rows, _Base

CLAIM_LOCK = 0x686F6F6C  # any constant; one claim at a time across processes


class PipelineQueries(_Base):
    # --- the queue --------------------------------------------------------------------
    async def queue_depth(self) -> Rows:
        return await self._all(q.queue_depth)

    # --- connector health and the deliveries it holds ---------------------------------
    async def connector_succeeded(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.connector_succeeded, rows)

    async def connector_failed(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.connector_failed, rows)

    async def failing_since_before(self, ids: list[str], cutoff: int) -> Rows:
        return await self._all(q.failing_since_before, {"ids": ids, "cutoff": cutoff})

    async def deactivate_connector(self, connector_id: str, reason: str, now: int) -> int:
        return await self._count(
            q.deactivate_connector, {"b_id": connector_id, "b_reason": reason, "b_now": now}
        )

    async def hold_deliveries(self, connector_id: str, now: int) -> int:
        return await self._count(q.hold_deliveries, {"b_connector_id": connector_id, "b_now": now})

    async def resume_deliveries(self, connector_id: str, now: int) -> int:
        return await self._count(
            q.resume_deliveries, {"b_connector_id": connector_id, "b_now": now}
        )

    async def cancel_open_deliveries(self, connector_id: str, now: int) -> int:
        return await self._count(
            q.cancel_open_deliveries, {"b_connector_id": connector_id, "b_now": now}
        )

    async def hold_queued(self, connector_id: str) -> None:
        await self.conn.execute(q.hold_queued, {"b_connector_id": connector_id})

    async def resume_queued(self, connector_id: str, now: int) -> None:
        await self.conn.execute(q.resume_queued, {"b_connector_id": connector_id, "b_now": now})

    async def cancel_queued(self, connector_id: str) -> None:
        await self.conn.execute(q.cancel_queued, {"b_connector_id": connector_id})

    # --- messages -----------------------------------------------------------------------
    async def insert_messages(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.insert_messages, rows)

    async def add_attempt_counts(self, rows: list[dict[str, Any]]) -> None:
        """Add to connectors' attempt counts (``record.rollup.counted`` rows)."""
        await self._many(q.add_attempt_counts[self.conn.dialect.name], rows)

    async def insert_deliveries(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.insert_deliveries, rows)

    async def insert_queued(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.insert_queued, rows)

    async def get_message(self, org_id: str, message_id: str) -> Message | None:
        row = await self._one(q.get_message, {"org_id": org_id, "id": message_id})
        return None if row is None else Message.from_row(row)

    async def list_messages(self, org_id: str, **filters: Any) -> list[Message]:
        return [Message.from_row(r) for r in await self._all(q.list_messages(org_id, **filters))]

    async def message_bodies(
        self, ids: list[str]
    ) -> dict[str, tuple[bytes, str | None, str | None, str | None]]:
        """Each message's delivered body, the traceparent its deliveries continue, and its
        gateway's id and external id."""
        rows = await self._all(q.message_bodies, {"ids": ids})
        return {r.id: (bytes(r.body), r.traceparent, r.gateway_id, r.external_id) for r in rows}

    # --- deliveries ---------------------------------------------------------------------
    async def deliveries_of_messages(self, message_ids: list[str]) -> list[Delivery]:
        if not message_ids:
            return []
        rows = await self._all(q.deliveries_of_messages, {"message_ids": message_ids})
        return [Delivery.from_row(r) for r in rows]

    async def get_delivery(self, org_id: str, delivery_id: str) -> Delivery | None:
        row = await self._one(q.get_delivery, {"org_id": org_id, "id": delivery_id})
        return None if row is None else Delivery.from_row(row)

    async def list_deliveries(self, org_id: str, **filters: Any) -> list[Delivery]:
        rows = await self._all(q.list_deliveries(org_id, **filters))
        return [Delivery.from_row(r) for r in rows]

    async def list_attempts(self, delivery_id: str) -> list[Attempt]:
        rows = await self._all(q.list_attempts, {"delivery_id": delivery_id})
        return [Attempt.from_row(r) for r in rows]

    async def lock_claims(self) -> None:
        """Serialize claims across processes (PostgreSQL; SQLite's write lock does it)."""
        if self.conn.dialect.name == "postgresql":
            await self.conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CLAIM_LOCK})

    async def due_connectors(self, now: int) -> Rows:
        return await self._all(q.due_connectors, {"now": now})

    async def due_ids(self, shares: dict[str, tuple[int, bool]], now: int) -> list[str]:
        if not shares:
            return []
        params: dict[str, Any] = {"now": now}
        for i, (connector_id, (count, _)) in enumerate(shares.items()):
            params[f"c{i}"], params[f"n{i}"] = connector_id, count
        stmt = q.due_ids(tuple(per_device for _, per_device in shares.values()))
        sql, order, fixed = q.driver_sql(stmt, self.conn.dialect, tuple(params))
        values = tuple(params[k] if k in params else fixed[k] for k in order)
        result = await self.conn.exec_driver_sql(sql, values)
        return [r[0] for r in result]

    async def claim_ids(
        self, ids: list[str], *, now: int, lease_until: int, lease_id: str
    ) -> Rows:
        if not ids:
            return []
        return await self._all(
            q.claim_ids,
            {"ids": ids, "now": now, "lease_until": lease_until, "lease_id": lease_id},
        )

    async def spend_rate_tokens(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.spend_rate_tokens, rows)

    async def due_batches(self, connector_id: str, now: int, limit: int) -> list[str]:
        rows = await self._all(
            q.due_batches, {"connector_id": connector_id, "now": now, "limit": limit}
        )
        return [r.batch_id for r in rows]

    async def unbatched_due(self, connector_id: str, kind: str, now: int, limit: int) -> Rows:
        return await self._all(
            q.unbatched_due,
            {"connector_id": connector_id, "kind": kind, "now": now, "limit": limit},
        )

    async def assign_batch(self, ids: list[str], batch_id: str) -> None:
        await self.conn.execute(q.assign_batch, {"ids": ids, "b_batch_id": batch_id})

    async def assign_batch_deliveries(self, ids: list[str], batch_id: str) -> None:
        await self.conn.execute(q.assign_batch_deliveries, {"ids": ids, "b_batch_id": batch_id})

    async def defer_deliveries(self, ids: list[str], until: int) -> None:
        await self.conn.execute(q.defer_deliveries, {"ids": ids, "b_until": until})

    async def batch_members(self, batch_ids: list[str], now: int) -> list[str]:
        if not batch_ids:
            return []
        rows = await self._all(q.batch_members, {"batch_ids": batch_ids, "now": now})
        return [r.id for r in rows]

    async def next_due_at(self) -> int | None:
        row = await self._one(q.next_due_at)
        return None if row is None or row[0] is None else int(row[0])

    async def record_delivered(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.record_delivered, rows)

    async def record_not_delivered(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.record_not_delivered, rows)

    async def insert_attempts(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.insert_attempts, rows)

    async def release_deliveries(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.release_delivery, rows)

    async def finish_queued(self, rows: list[dict[str, Any]]) -> None:
        """Failed for good: out of the queue, unless held meanwhile (``b_id``, ``b_lease_id``)."""
        await self._many(q.finish_queued, rows)

    async def finish_delivered(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.finish_delivered, rows)

    async def requeue(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.requeue, rows)

    async def release_queued(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.release_queued, rows)

    async def notify_due(self) -> None:
        """Wake listening workers when this transaction commits (PostgreSQL only; a hint)."""
        if self.conn.dialect.name == "postgresql":
            await self.conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))

    # --- replay and cancel --------------------------------------------------------------
    async def get_organization(self, org_id: str) -> Row[Any] | None:
        return await self._one(q.get_organization, {"id": org_id})

    async def count_replayable(
        self, org_id: str, connector_id: str, statuses: list[str], since: int, until: int,
        limit: int,
    ) -> int:
        row = await self._one(q.count_replayable, {
            "org_id": org_id, "connector_id": connector_id, "statuses": statuses,
            "since": since, "until": until, "limit": limit,
        })
        return 0 if row is None else int(row[0])

    async def replayable_batch(
        self, org_id: str, connector_id: str, statuses: list[str], since: int, until: int,
        after: str, limit: int,
    ) -> Rows:
        return await self._all(q.replayable_batch, {
            "org_id": org_id, "connector_id": connector_id, "statuses": statuses,
            "since": since, "until": until, "after": after, "limit": limit,
        })

    async def cancel_delivery(self, org_id: str, delivery_id: str, now: int) -> int:
        return await self._count(
            q.cancel_delivery, {"b_org_id": org_id, "b_id": delivery_id, "b_now": now}
        )

    async def cancel_queued_delivery(self, delivery_id: str) -> None:
        await self.conn.execute(q.cancel_queued_delivery, {"b_id": delivery_id})

    # --- idempotency ------------------------------------------------------------------
    async def get_idempotency_key(self, gateway_id: str, key: str) -> Row[Any] | None:
        return await self._one(q.get_idempotency_key, {"gateway_id": gateway_id, "key": key})

    async def insert_idempotency_key(self, **values: Any) -> None:
        await self.conn.execute(q.insert_idempotency_key, values)

    async def delete_expired_idempotency_key(self, gateway_id: str, key: str, cutoff: int) -> int:
        return await self._count(
            q.delete_expired_idempotency_key,
            {"b_gateway_id": gateway_id, "b_key": key, "b_cutoff": cutoff},
        )
