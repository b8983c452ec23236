"""The repository: one method per named query of ``queries.py``, on one connection.

Open a transaction with ``Database.write()`` (or ``read()``) and wrap its connection::

    async with db.write() as conn:
        repo = Repository(conn)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from hookstream.storage import queries as q
from hookstream.storage.database import NOTIFY_CHANNEL

Rows = Sequence[Row[Any]]
CLAIM_LOCK = 0x686F6F6C  # any constant; one claim at a time across processes


class Repository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def _one(self, stmt: Any, params: dict[str, Any] | None = None) -> Row[Any] | None:
        return (await self.conn.execute(stmt, params or {})).first()

    async def _all(self, stmt: Any, params: dict[str, Any] | None = None) -> Rows:
        return (await self.conn.execute(stmt, params or {})).all()

    async def _many(self, stmt: Any, rows: list[dict[str, Any]]) -> None:
        """``stmt`` once per row, through the driver's executemany (rows share their keys)."""
        if not rows:
            return
        sql, order, fixed = q.driver_sql(stmt, self.conn.dialect, tuple(rows[0]))
        params = [tuple(r[k] if k in r else fixed[k] for k in order) for r in rows]
        await self.conn.exec_driver_sql(sql, params)

    async def _count(self, stmt: Any, params: dict[str, Any]) -> int:
        return (await self.conn.execute(stmt, params)).rowcount

    # --- meta ---------------------------------------------------------------------------
    async def get_meta(self, key: str) -> str | None:
        row = await self._one(q.get_meta, {"key": key})
        return None if row is None else str(row[0])

    async def insert_meta(self, key: str, value: str) -> None:
        await self.conn.execute(q.insert_meta, {"key": key, "value": value})

    # --- organizations ------------------------------------------------------------------
    async def insert_organization(self, **values: Any) -> None:
        await self.conn.execute(q.insert_organization, values)

    async def organization_by_key_hash(self, key_hash: str, now: int) -> Row[Any] | None:
        return await self._one(q.organization_by_key_hash, {"key_hash": key_hash, "now": now})

    async def rotate_organization_key(self, org_id: str, new_hash: str, until: int) -> int:
        return await self._count(
            q.rotate_organization_key, {"b_id": org_id, "b_new_hash": new_hash, "b_until": until}
        )

    async def list_organizations(self, after: str | None, limit: int) -> Rows:
        return await self._all(q.list_organizations(after, limit))

    # --- gateways -----------------------------------------------------------------------
    async def insert_gateway(self, **values: Any) -> None:
        await self.conn.execute(q.insert_gateway, values)

    async def gateway_by_token_hash(self, token_hash: str, now: int) -> Row[Any] | None:
        return await self._one(q.gateway_by_token_hash, {"token_hash": token_hash, "now": now})

    async def rotate_gateway_token(
        self, org_id: str, gateway_id: str, new_hash: str, until: int
    ) -> int:
        return await self._count(q.rotate_gateway_token, {
            "b_org_id": org_id, "b_id": gateway_id, "b_new_hash": new_hash, "b_until": until,
        })

    async def get_gateway(self, org_id: str, gateway_id: str) -> Row[Any] | None:
        return await self._one(q.get_gateway, {"org_id": org_id, "id": gateway_id})

    async def list_gateways(self, org_id: str, after: str | None, limit: int) -> Rows:
        return await self._all(q.list_gateways(org_id, after, limit))

    async def update_gateway(self, org_id: str, gateway_id: str, **values: Any) -> int:
        return await self._count(
            q.update_gateway.values(**values), {"b_org_id": org_id, "b_id": gateway_id}
        )

    async def delete_gateway(self, org_id: str, gateway_id: str, now: int) -> int:
        return await self._count(
            q.delete_gateway, {"b_org_id": org_id, "b_id": gateway_id, "b_now": now}
        )

    async def unlink_gateway_from_triggers(self, gateway_id: str) -> None:
        await self.conn.execute(q.unlink_gateway_from_triggers, {"id": gateway_id})

    async def known_gateways(self, ids: list[str]) -> dict[str, str]:
        """Gateway id -> organization id, for the ids that name a gateway that exists."""
        if not ids:
            return {}
        return {r.id: r.org_id for r in await self._all(q.known_gateways, {"ids": ids})}

    async def seen_digests(
        self, gateway_ids: list[str], digests: list[str], cutoff: int
    ) -> set[str]:
        """Which of ``digests`` belong to messages of these gateways accepted since ``cutoff``."""
        if not digests:
            return set()
        rows = await self._all(
            q.seen_digests, {"gateway_ids": gateway_ids, "digests": digests, "cutoff": cutoff}
        )
        return {r.source_digest for r in rows}

    async def queue_depth(self) -> Rows:
        return await self._all(q.queue_depth)

    async def existing_gateway_ids(self, org_id: str, ids: list[str]) -> set[str]:
        rows = await self._all(q.existing_gateway_ids, {"org_id": org_id, "ids": ids})
        return {r[0] for r in rows}

    # --- connectors ---------------------------------------------------------------------
    async def insert_connector(self, **values: Any) -> None:
        await self.conn.execute(q.insert_connector, values)

    async def get_connector(self, org_id: str, connector_id: str) -> Row[Any] | None:
        return await self._one(q.get_connector, {"org_id": org_id, "id": connector_id})

    async def get_alerts_connector(self, org_id: str) -> Row[Any] | None:
        return await self._one(q.get_alerts_connector, {"org_id": org_id})

    async def alert_targets(self, connector_ids: list[str]) -> Rows:
        if not connector_ids:
            return []
        return await self._all(q.alert_targets, {"ids": connector_ids})

    async def list_connectors(self, org_id: str, after: str | None, limit: int) -> Rows:
        return await self._all(q.list_connectors(org_id, after, limit))

    async def update_connector(self, org_id: str, connector_id: str, **values: Any) -> int:
        return await self._count(
            q.update_connector(values), {"b_org_id": org_id, "b_id": connector_id}
        )

    async def update_alerts_connector(self, connector_id: str, **values: Any) -> int:
        return await self._count(q.update_alerts_connector(values), {"b_id": connector_id})

    async def delete_connector(self, org_id: str, connector_id: str, now: int) -> int:
        return await self._count(
            q.delete_connector, {"b_org_id": org_id, "b_id": connector_id, "b_now": now}
        )

    async def connector_secret(self, org_id: str, connector_id: str) -> str | None:
        row = await self._one(q.connector_secret, {"org_id": org_id, "id": connector_id})
        return None if row is None else str(row.secret_enc)

    async def connector_for_sending(self, ids: list[str]) -> Rows:
        return await self._all(q.connector_for_sending, {"ids": ids})

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

    # --- triggers -----------------------------------------------------------------------
    async def insert_trigger(self, **values: Any) -> None:
        await self.conn.execute(q.insert_trigger, values)

    async def insert_trigger_gateways(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.insert_trigger_gateways, rows)

    async def list_triggers(self, connector_id: str) -> Rows:
        return await self._all(q.list_triggers, {"connector_id": connector_id})

    async def trigger_gateway_ids(self, trigger_ids: list[str]) -> Rows:
        if not trigger_ids:
            return []
        return await self._all(q.trigger_gateway_ids, {"trigger_ids": trigger_ids})

    async def delete_trigger(self, connector_id: str, trigger_id: str) -> int:
        return await self._count(
            q.delete_trigger, {"connector_id": connector_id, "trigger_id": trigger_id}
        )

    async def routing_rows(self, org_id: str) -> Rows:
        return await self._all(q.routing_rows, {"org_id": org_id})

    # --- messages -----------------------------------------------------------------------
    async def insert_messages(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.insert_messages, rows)

    async def insert_deliveries(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.insert_deliveries, rows)

    async def get_message(self, org_id: str, message_id: str) -> Row[Any] | None:
        return await self._one(q.get_message, {"org_id": org_id, "id": message_id})

    async def list_messages(self, org_id: str, **filters: Any) -> Rows:
        return await self._all(q.list_messages(org_id, **filters))

    async def message_bodies(self, ids: list[str]) -> dict[str, bytes]:
        rows = await self._all(q.message_bodies, {"ids": ids})
        return {r.id: bytes(r.body) for r in rows}

    # --- deliveries ---------------------------------------------------------------------
    async def deliveries_of_messages(self, message_ids: list[str]) -> Rows:
        if not message_ids:
            return []
        return await self._all(q.deliveries_of_messages, {"message_ids": message_ids})

    async def get_delivery(self, org_id: str, delivery_id: str) -> Row[Any] | None:
        return await self._one(q.get_delivery, {"org_id": org_id, "id": delivery_id})

    async def list_deliveries(self, org_id: str, **filters: Any) -> Rows:
        return await self._all(q.list_deliveries(org_id, **filters))

    async def list_attempts(self, delivery_id: str) -> Rows:
        return await self._all(q.list_attempts, {"delivery_id": delivery_id})

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

    # --- idempotency and retention ------------------------------------------------------
    async def get_idempotency_key(self, gateway_id: str, key: str) -> Row[Any] | None:
        return await self._one(q.get_idempotency_key, {"gateway_id": gateway_id, "key": key})

    async def insert_idempotency_key(self, **values: Any) -> None:
        await self.conn.execute(q.insert_idempotency_key, values)

    async def delete_expired_idempotency_key(self, gateway_id: str, key: str, cutoff: int) -> int:
        return await self._count(
            q.delete_expired_idempotency_key,
            {"b_gateway_id": gateway_id, "b_key": key, "b_cutoff": cutoff},
        )

    async def purge_attempts(self, cutoff: int, cutoff_id: str, limit: int) -> int:
        return await self._count(
            q.purge_attempts, {"cutoff": cutoff, "cutoff_id": cutoff_id, "limit": limit}
        )

    async def purge_deliveries(self, cutoff: int, cutoff_id: str, limit: int) -> int:
        return await self._count(
            q.purge_deliveries, {"cutoff": cutoff, "cutoff_id": cutoff_id, "limit": limit}
        )

    async def purge_messages(self, cutoff: int, cutoff_id: str, limit: int) -> int:
        return await self._count(
            q.purge_messages, {"cutoff": cutoff, "cutoff_id": cutoff_id, "limit": limit}
        )

    async def purge_idempotency_keys(self, cutoff: int, limit: int) -> int:
        return await self._count(q.purge_idempotency_keys, {"cutoff": cutoff, "limit": limit})

    # --- plants and modules -------------------------------------------------------------
    async def insert_plant(self, **values: Any) -> None:
        await self.conn.execute(q.insert_plant, values)

    async def get_plant(self, org_id: str, plant_id: str) -> Row[Any] | None:
        return await self._one(q.get_plant, {"org_id": org_id, "id": plant_id})

    async def list_plants(self, org_id: str, after: str | None, limit: int) -> Rows:
        return await self._all(q.list_plants(org_id, after, limit))

    async def update_plant(self, org_id: str, plant_id: str, **values: Any) -> int:
        return await self._count(
            q.update_plant.values(**values), {"b_org_id": org_id, "b_id": plant_id}
        )

    async def delete_plant(self, org_id: str, plant_id: str, now: int) -> int:
        return await self._count(
            q.delete_plant, {"b_org_id": org_id, "b_id": plant_id, "b_now": now}
        )

    async def delete_plant_modules(self, plant_id: str, now: int) -> int:
        return await self._count(q.delete_plant_modules, {"b_plant_id": plant_id, "b_now": now})

    async def insert_module(self, **values: Any) -> None:
        await self.conn.execute(q.insert_module, values)

    async def get_module(self, org_id: str, plant_id: str, module_id: str) -> Row[Any] | None:
        return await self._one(
            q.get_module, {"org_id": org_id, "plant_id": plant_id, "id": module_id}
        )

    async def list_modules(
        self, org_id: str, plant_id: str, after: str | None, limit: int
    ) -> Rows:
        return await self._all(q.list_modules(org_id, plant_id, after, limit))

    async def update_module(
        self, org_id: str, plant_id: str, module_id: str, **values: Any
    ) -> int:
        return await self._count(
            q.update_module.values(**values),
            {"b_org_id": org_id, "b_plant_id": plant_id, "b_id": module_id},
        )

    async def delete_module(self, org_id: str, plant_id: str, module_id: str, now: int) -> int:
        return await self._count(q.delete_module, {
            "b_org_id": org_id, "b_plant_id": plant_id, "b_id": module_id, "b_now": now,
        })

    async def write_module_state(
        self, module_id: str, version: int, state: str, new_version: int, now: int
    ) -> int:
        return await self._count(q.write_module_state, {
            "b_id": module_id, "b_version": version, "b_state": state,
            "b_new_version": new_version, "b_now": now,
        })

    async def reported_modules(self, gateway_id: str, device_ids: list[str]) -> Rows:
        return await self._all(
            q.reported_modules, {"gateway_id": gateway_id, "device_ids": device_ids}
        )

    async def linked_gateway_ids(self, org_id: str) -> list[str]:
        return [str(r[0]) for r in await self._all(q.linked_gateway_ids, {"org_id": org_id})]

    # --- plant subscriptions ------------------------------------------------------------
    async def insert_plant_subscription(self, **values: Any) -> None:
        await self.conn.execute(q.insert_plant_subscription, values)

    async def subscriptions_of_plant(self, org_id: str, plant_id: str) -> Rows:
        return await self._all(q.subscriptions_of_plant, {"org_id": org_id, "plant_id": plant_id})

    async def subscriptions_of_client(self, org_id: str, client_id: str) -> Rows:
        return await self._all(
            q.subscriptions_of_client, {"org_id": org_id, "client_id": client_id}
        )

    async def get_plant_subscription(
        self, org_id: str, plant_id: str, subscription_id: str
    ) -> Row[Any] | None:
        return await self._one(
            q.get_plant_subscription,
            {"org_id": org_id, "plant_id": plant_id, "id": subscription_id},
        )

    async def delete_plant_subscription(self, subscription_id: str, now: int) -> int:
        return await self._count(
            q.delete_plant_subscription, {"b_id": subscription_id, "b_now": now}
        )

    async def subscriptions_to_end(
        self, org_id: str, *, plant_id: str | None = None, client_id: str | None = None
    ) -> Rows:
        return await self._all(
            q.subscriptions_to_end,
            {"org_id": org_id, "plant_id": plant_id, "client_id": client_id},
        )

    # --- subscription keys --------------------------------------------------------------
    async def insert_subscription_key(self, **values: Any) -> None:
        await self.conn.execute(q.insert_subscription_key, values)

    async def subscription_key_by_hash(self, key_hash: str, now: int) -> Row[Any] | None:
        return await self._one(q.subscription_key_by_hash, {"key_hash": key_hash, "now": now})

    async def rotate_subscription_key(
        self, org_id: str, key_id: str, new_hash: str, until: int
    ) -> int:
        return await self._count(q.rotate_subscription_key, {
            "b_org_id": org_id, "b_id": key_id, "b_new_hash": new_hash, "b_until": until,
        })

    async def list_subscription_keys(self, org_id: str, after: str | None, limit: int) -> Rows:
        return await self._all(q.list_subscription_keys(org_id, after, limit))

    async def delete_subscription_key(self, org_id: str, key_id: str, now: int) -> int:
        return await self._count(
            q.delete_subscription_key, {"b_org_id": org_id, "b_id": key_id, "b_now": now}
        )

    # --- console users and sessions -----------------------------------------------------
    async def insert_user(self, **values: Any) -> None:
        await self.conn.execute(q.insert_user, values)

    async def user_by_email(self, email: str) -> Row[Any] | None:
        return await self._one(q.user_by_email, {"email": email})

    async def get_user(self, user_id: str) -> Row[Any] | None:
        return await self._one(q.get_user, {"id": user_id})

    async def insert_console_session(self, **values: Any) -> None:
        await self.conn.execute(q.insert_console_session, values)

    async def console_session_by_hash(self, token_hash: str, now: int) -> Row[Any] | None:
        return await self._one(
            q.console_session_by_hash, {"token_hash": token_hash, "now": now}
        )

    async def delete_console_session(self, token_hash: str) -> int:
        return await self._count(q.delete_console_session, {"token_hash": token_hash})

    async def delete_expired_console_sessions(self, now: int) -> int:
        return await self._count(q.delete_expired_console_sessions, {"now": now})

    # --- OAuth2 -------------------------------------------------------------------------
    async def insert_oauth_client(self, **values: Any) -> None:
        await self.conn.execute(q.insert_oauth_client, values)

    async def oauth_client_by_id(self, client_id: str) -> Row[Any] | None:
        return await self._one(q.oauth_client_by_id, {"id": client_id})

    async def list_oauth_clients(self, org_id: str, after: str | None, limit: int) -> Rows:
        return await self._all(q.list_oauth_clients(org_id, after, limit))

    async def delete_oauth_client(self, org_id: str, client_id: str, now: int) -> int:
        return await self._count(
            q.delete_oauth_client, {"b_org_id": org_id, "b_id": client_id, "b_now": now}
        )

    async def revoke_client_tokens(self, client_id: str, now: int) -> int:
        return await self._count(
            q.revoke_client_tokens, {"b_client_id": client_id, "b_now": now}
        )

    async def insert_oauth_code(self, **values: Any) -> None:
        await self.conn.execute(q.insert_oauth_code, values)

    async def oauth_code_by_hash(self, code_hash: str) -> Row[Any] | None:
        return await self._one(q.oauth_code_by_hash, {"code_hash": code_hash})

    async def use_oauth_code(self, code_hash: str, now: int) -> int:
        return await self._count(q.use_oauth_code, {"b_code_hash": code_hash, "b_now": now})

    async def delete_expired_oauth_codes(self, before: int) -> int:
        return await self._count(q.delete_expired_oauth_codes, {"before": before})

    async def insert_oauth_token(self, **values: Any) -> None:
        await self.conn.execute(q.insert_oauth_token, values)

    async def oauth_token_by_access_hash(self, token_hash: str) -> Row[Any] | None:
        return await self._one(q.oauth_token_by_access_hash, {"hash": token_hash})

    async def oauth_token_by_refresh_hash(self, token_hash: str) -> Row[Any] | None:
        return await self._one(q.oauth_token_by_refresh_hash, {"hash": token_hash})

    async def use_refresh_token(self, token_id: str, now: int) -> int:
        return await self._count(q.use_refresh_token, {"b_id": token_id, "b_now": now})

    async def revoke_token_family(self, family_id: str, now: int) -> int:
        return await self._count(
            q.revoke_token_family, {"b_family_id": family_id, "b_now": now}
        )

    async def purge_expired_oauth_tokens(self, before: int) -> int:
        return await self._count(q.purge_expired_oauth_tokens, {"before": before})

    # --- the audit log ------------------------------------------------------------------
    async def insert_audit_event(self, **values: Any) -> None:
        await self.conn.execute(q.insert_audit_event, values)

    async def list_audit_events(
        self,
        org_id: str,
        *,
        target_id: str | None = None,
        action: str | None = None,
        since: int | None = None,
        until: int | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> Rows:
        return await self._all(q.list_audit_events(
            org_id, target_id=target_id, action=action, since=since, until=until, after=after,
            limit=limit,
        ))

    # --- limits per organization ----------------------------------------------------------
    async def count_connectors(self, org_id: str) -> int:
        return int((await self.conn.execute(q.count_connectors, {"org_id": org_id})).scalar_one())

    async def count_triggers(self, org_id: str) -> int:
        return int((await self.conn.execute(q.count_triggers, {"org_id": org_id})).scalar_one())

    # --- secrets at rest: re-encryption under a new key ---------------------------------------
    async def encrypted_values(self, table: str, after: str, limit: int) -> Rows:
        """Up to ``limit`` rows of ``table`` after id ``after``: id and encrypted columns."""
        return await self._all(q.encrypted_values(table, after, limit))

    async def update_encrypted_values(
        self, table: str, row_id: str, values: dict[str, str]
    ) -> int:
        """Set some encrypted columns of one row (``values``: column -> ciphertext)."""
        columns = tuple(sorted(values))
        return await self._count(
            q.update_encrypted_values(table, columns),
            {"b_id": row_id, **{f"b_{name}": values[name] for name in columns}},
        )

    # --- the console: a connector's health ----------------------------------------------------
    async def connector_attempt_counts(self, org_id: str, first_id: str, since: int) -> Rows:
        """Per connector of ``org_id``: attempts started since ``since``, and how many got a
        2xx (``first_id``: ``ids.first_id_at("att", since)``, which bounds the scan)."""
        return await self._all(
            q.connector_attempt_counts, {"org_id": org_id, "first_id": first_id, "since": since}
        )

    async def connector_last_failure(
        self, org_id: str, connector_id: str, first_id: str
    ) -> Row[Any] | None:
        """The connector's latest attempt that got no 2xx, among attempts from ``first_id`` on."""
        return await self._one(q.connector_last_failure, {
            "org_id": org_id, "connector_id": connector_id, "first_id": first_id,
        })
