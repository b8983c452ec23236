"""The repository's tenancy methods: organizations, gateways, connectors, console, audit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from hookstream.models import Connector, Gateway, Trigger
from hookstream.storage import queries as q
from hookstream.storage.repository._base import Rows, _Base


class TenancyQueries(_Base):
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

    async def get_gateway(self, org_id: str, gateway_id: str) -> Gateway | None:
        row = await self._one(q.get_gateway, {"org_id": org_id, "id": gateway_id})
        return None if row is None else Gateway.from_row(row)

    async def list_gateways(self, org_id: str, after: str | None, limit: int) -> list[Gateway]:
        return [Gateway.from_row(r) for r in await self._all(q.list_gateways(org_id, after, limit))]

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

    async def existing_gateway_ids(self, org_id: str, ids: list[str]) -> set[str]:
        rows = await self._all(q.existing_gateway_ids, {"org_id": org_id, "ids": ids})
        return {r[0] for r in rows}

    # --- connectors ---------------------------------------------------------------------
    async def insert_connector(self, **values: Any) -> None:
        await self.conn.execute(q.insert_connector, values)

    async def get_connector(self, org_id: str, connector_id: str) -> Connector | None:
        row = await self._one(q.get_connector, {"org_id": org_id, "id": connector_id})
        return None if row is None else Connector.from_row(row)

    async def get_alerts_connector(self, org_id: str) -> Connector | None:
        row = await self._one(q.get_alerts_connector, {"org_id": org_id})
        return None if row is None else Connector.from_row(row)

    async def alert_targets(self, connector_ids: list[str]) -> Rows:
        if not connector_ids:
            return []
        return await self._all(q.alert_targets, {"ids": connector_ids})

    async def list_connectors(self, org_id: str, after: str | None, limit: int
                              ) -> list[Connector]:
        rows = await self._all(q.list_connectors(org_id, after, limit))
        return [Connector.from_row(r) for r in rows]

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

    async def connector_credentials(self, org_id: str, connector_id: str) -> Row[Any] | None:
        """The connector's auth type, encrypted credentials and encrypted static headers."""
        return await self._one(q.connector_credentials, {"org_id": org_id, "id": connector_id})

    async def connector_for_sending(self, ids: list[str]) -> Rows:
        return await self._all(q.connector_for_sending, {"ids": ids})

    # --- triggers -----------------------------------------------------------------------
    async def insert_trigger(self, **values: Any) -> None:
        await self.conn.execute(q.insert_trigger, values)

    async def insert_trigger_gateways(self, rows: list[dict[str, Any]]) -> None:
        await self._many(q.insert_trigger_gateways, rows)

    async def list_triggers(self, connector_id: str) -> list[Trigger]:
        rows = await self._all(q.list_triggers, {"connector_id": connector_id})
        return [Trigger.from_row(r) for r in rows]

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

    # --- the audit log ------------------------------------------------------------------
    async def insert_audit_event(self, **values: Any) -> None:
        await self.conn.execute(q.insert_audit_event, values)

    async def list_audit_events(self, org_id: str, **filters: Any) -> Rows:
        """The organization's audit events (``queries.list_audit_events``: filters, order)."""
        return await self._all(q.list_audit_events(org_id, limit=filters.pop("limit", 50),
                                                   **filters))

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

    async def connector_attempt_histogram(
        self, org_id: str, connector_id: str, *, since: int, until: int, bucket_ms: int,
    ) -> Rows:
        """The connector's attempt counts of [since, until) by bucket (0 from ``since``,
        ``bucket_ms`` wide, a multiple of ``record.rollup.PERIOD_MS``), outcome and rounded
        duration; nothing for another organization's connector."""
        return await self._all(q.connector_attempt_histogram, {
            "org_id": org_id, "connector_id": connector_id, "since": since, "until": until,
            "bucket_ms": bucket_ms})
