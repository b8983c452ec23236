"""Connectors (where and how to deliver) and the activation toggle: what the API, console and
CLI call.

Each function opens its own transaction, checks the organization owns the connector, writes
the audit entry in the same transaction, and returns the contract's representation (the
signing secret only from ``create`` and ``rotate_secret``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from hookstream.errors import NotFound
from hookstream.ids import first_id_at, new_id, now_ms
from hookstream.models import Connector
from hookstream.pipeline.deliver.signing import new_secret
from hookstream.pipeline.queue import toggle
from hookstream.services import connector_types
from hookstream.services.audit import audit
from hookstream.services.paging import decode_cursor, page
from hookstream.services.quotas import check_quota
from hookstream.services.runtime import Runtime
from hookstream.services.schemas import (
    Authentication,
    ConnectorCreate,
    ConnectorUpdate,
    RotateSecret,
)
from hookstream.services.targets import check_auth_target, check_target
from hookstream.services.times import rfc3339
from hookstream.settings import Settings
from hookstream.storage.repository import Repository

# The parts of each authentication type that may be shown again; the rest is a secret.
_PUBLIC_AUTH_FIELDS = {
    "none": (),
    "basic": ("username",),
    "bearer": (),
    "api_key": ("header",),
    "oauth2_client_credentials": ("tokenUrl", "clientId", "scope"),
}


def auth_columns(rt: Runtime, auth: Authentication) -> dict[str, Any]:
    full = auth.model_dump(exclude_none=True)
    public = {k: full[k] for k in ("type", *_PUBLIC_AUTH_FIELDS[auth.type]) if k in full}
    return {
        "auth_type": auth.type,
        "auth_public": orjson.dumps(public).decode(),
        "auth_secret_enc": rt.box.encrypt(orjson.dumps(full).decode()) if auth.type != "none"
        else None,
    }


def _policy_columns(rt: Runtime, body: ConnectorCreate | ConnectorUpdate) -> dict[str, Any]:
    """Columns for the optional headers, retry and timeouts fields that ``body`` carries."""
    given = body.model_fields_set
    columns: dict[str, Any] = {}
    if "headers" in given:
        headers = body.headers or {}
        columns["headers_enc"] = rt.box.encrypt(orjson.dumps(headers).decode()) if headers else None
        columns["header_names"] = orjson.dumps(sorted(headers)).decode() if headers else None
    if "retry" in given:
        retry = body.retry
        schedule = retry.schedule if retry is not None else None
        columns["retry_schedule"] = None if schedule is None else orjson.dumps(schedule).decode()
        columns["max_attempts"] = retry.maxAttempts if retry is not None else None
    if "batch" in given:
        columns["batch_max_messages"] = body.batch.maxMessages if body.batch else None
        columns["batch_max_wait_ms"] = body.batch.maxWaitMs if body.batch else None
    if "ordering" in given:
        columns["ordering"] = "per_device" if body.ordering == "per_device" else None
    if "limits" in given:
        columns["max_concurrency"] = body.limits.maxConcurrency if body.limits else None
        columns["rate_limit"] = body.limits.perSecond if body.limits else None
        # A new rate starts with a full bucket.
        columns["rate_tokens"] = None
        columns["rate_updated_at"] = None
    if "transform" in given:
        columns["transform_language"] = body.transform.language if body.transform else None
        columns["transform_expression"] = body.transform.expression if body.transform else None
    if "timeouts" in given:
        columns["connect_timeout"] = body.timeouts.connect if body.timeouts else None
        columns["request_timeout"] = body.timeouts.total if body.timeouts else None
    return columns


def representation(row: Connector, settings: Settings) -> dict[str, Any]:
    """A connector as the API shows it: never a secret, only the public part of its auth."""
    schedule = orjson.loads(row.retry_schedule) if row.retry_schedule else list(
        settings.retry_schedule
    )
    return {
        "id": row.id,
        "name": row.name,
        "baseUrl": row.base_url,
        "routes": {"values": row.route_values, "events": row.route_events,
                   "alarms": row.route_alarms},
        "authentication": orjson.loads(row.auth_public),
        "headerNames": orjson.loads(row.header_names) if row.header_names else [],
        "retry": {"schedule": schedule, "maxAttempts": row.max_attempts or 1 + len(schedule)},
        "ordering": row.ordering or "none",
        "batch": (
            {"maxMessages": row.batch_max_messages, "maxWaitMs": row.batch_max_wait_ms}
            if row.batch_max_messages else None
        ),
        "limits": {
            "maxConcurrency": row.max_concurrency or settings.connector_max_concurrency,
            "perSecond": row.rate_limit,
        },
        "transform": (
            {"language": row.transform_language, "expression": row.transform_expression}
            if row.transform_expression else None
        ),
        "timeouts": {
            "connect": row.connect_timeout or settings.connect_timeout,
            "total": row.request_timeout or settings.request_timeout,
        },
        "secretRotation": (
            {"previousSecretExpiresAt": rfc3339(row.previous_secret_expires_at)}
            if row.previous_secret_expires_at and row.previous_secret_expires_at > now_ms()
            else None
        ),
        "active": bool(row.active),
        "deactivatedReason": row.deactivated_reason,
        "createdAt": rfc3339(row.created_at),
        "updatedAt": rfc3339(row.updated_at),
        **connector_types.shown(row),
    }


def not_found(connector_id: str) -> NotFound:
    return NotFound(f"no connector '{connector_id}'")


async def create(rt: Runtime, org_id: str, body: ConnectorCreate) -> dict[str, Any]:
    """Create a connector; the answer holds its signing secret, shown this once."""
    type_columns = connector_types.create_columns(rt, body)
    if not type_columns:  # an http connector: create_columns checked it has both
        assert body.baseUrl is not None and body.routes is not None
        type_columns = {"base_url": body.baseUrl, "route_values": body.routes.values,
                        "route_events": body.routes.events, "route_alarms": body.routes.alarms}
    check_target(rt.settings, body.baseUrl, "baseUrl")
    check_auth_target(rt.settings, body.authentication)
    connector_id, now = new_id("con"), now_ms()
    secret = body.secret or new_secret()
    async with rt.db.write() as conn:
        repo = Repository(conn)
        check_quota(await repo.count_connectors(org_id), rt.settings.max_connectors_per_org,
                    "connectors", "HOOKSTREAM_MAX_CONNECTORS_PER_ORG")
        await repo.insert_connector(
            id=connector_id, org_id=org_id, name=body.name, **type_columns,
            secret_enc=rt.box.encrypt(secret),
            active=body.active, created_at=now, updated_at=now,
            **auth_columns(rt, body.authentication), **_policy_columns(rt, body),
        )
        await audit(repo, org_id, "connector.created", "connector", connector_id, {
            "name": body.name, "type": body.type, "baseUrl": type_columns["base_url"],
            "active": body.active,
            "authentication": body.authentication.type,
        })
        row = await repo.get_connector(org_id, connector_id)
    assert row is not None  # written in this transaction
    return {**representation(row, rt.settings), "secret": secret}


async def list_(rt: Runtime, org_id: str, *, limit: int, cursor: str | None = None
                ) -> dict[str, Any]:
    """One page of the organization's connectors, oldest first."""
    async with rt.db.read() as conn:
        rows = await Repository(conn).list_connectors(org_id, decode_cursor(cursor), limit)
    return page([representation(r, rt.settings) for r in rows], limit)


async def get(rt: Runtime, org_id: str, connector_id: str) -> dict[str, Any]:
    async with rt.db.read() as conn:
        row = await Repository(conn).get_connector(org_id, connector_id)
    if row is None:
        raise not_found(connector_id)
    return representation(row, rt.settings)


async def update(rt: Runtime, org_id: str, connector_id: str, body: ConnectorUpdate
                 ) -> dict[str, Any]:
    """Change the fields ``body`` carries; switching off holds the queued deliveries, switching
    on resumes them and wakes the workers."""
    now = now_ms()
    changes: dict[str, Any] = {}
    given = body.model_fields_set
    if "name" in given and body.name is not None:
        changes["name"] = body.name
    if "baseUrl" in given and body.baseUrl is not None:
        check_target(rt.settings, body.baseUrl, "baseUrl")
        changes["base_url"] = body.baseUrl
    if "routes" in given and body.routes is not None:
        changes.update(route_values=body.routes.values, route_events=body.routes.events,
                       route_alarms=body.routes.alarms)
    if "authentication" in given and body.authentication is not None:
        check_auth_target(rt.settings, body.authentication)
        changes.update(auth_columns(rt, body.authentication))
    changes.update(_policy_columns(rt, body))
    if given & {"type", "target", "baseUrl", "routes", "authentication"}:
        changes.update(await _type_changes(rt, org_id, connector_id, body))
    if "active" in given and body.active is not None:
        changes["active"] = body.active
        if body.active:
            # Switched on again: the failing period starts over.
            changes["deactivated_reason"] = None
            changes["failing_since"] = None
    async with rt.db.write() as conn:
        repo = Repository(conn)
        before = await repo.get_connector(org_id, connector_id)
        if before is None:
            raise not_found(connector_id)
        # Deliveries before the connector row: the order workers lock them in (claims and
        # recorded outcomes), so the two cannot deadlock.
        if "active" in changes and bool(before.active) != changes["active"]:
            if changes["active"]:
                await toggle.resume(repo, connector_id, now)
                await repo.notify_due()
            else:
                await toggle.hold(repo, connector_id, now)
        if changes:
            await repo.update_connector(org_id, connector_id, updated_at=now, **changes)
            details: dict[str, Any] = {"fields": sorted(given)}
            if "active" in changes:
                details["active"] = changes["active"]
            if "base_url" in changes:
                details["baseUrl"] = changes["base_url"]
            await audit(repo, org_id, "connector.updated", "connector", connector_id, details)
        row = await repo.get_connector(org_id, connector_id)
    assert row is not None  # read in this transaction, which holds it
    if "active" in changes and changes["active"]:
        rt.wakeup.set()
    return representation(row, rt.settings)


async def _type_changes(rt: Runtime, org_id: str, connector_id: str, body: ConnectorUpdate
                        ) -> dict[str, Any]:
    """The type and target columns a PATCH changes (a broker's credentials not resent are
    kept)."""
    async with rt.db.read() as conn:
        row = await Repository(conn).connector_credentials(org_id, connector_id)
    if row is None:
        raise not_found(connector_id)
    secret = (orjson.loads(rt.box.decrypt(row.target_secret_enc)) if row.target_secret_enc
              else None)
    return connector_types.update_columns(rt, body, row.type, secret)


async def stored(rt: Runtime, org_id: str, connector_id: str) -> Connector:
    """The connector's own configuration: None where the deployment's default applies."""
    async with rt.db.read() as conn:
        row = await Repository(conn).get_connector(org_id, connector_id)
    if row is None:
        raise not_found(connector_id)
    return row


async def update_keeping_secrets(rt: Runtime, org_id: str, connector_id: str,
                                 body: dict[str, Any]) -> dict[str, Any]:
    """``update`` from a form that never shows secrets: a credential of the stored
    authentication type left out (or empty) keeps its stored value, and so does a static
    header whose value is None. Then the same model and checks as the API's PATCH
    (pydantic's ValidationError, or the service's errors)."""
    body = dict(body)
    auth = body.get("authentication")
    headers = body.get("headers")
    if isinstance(auth, dict) or isinstance(headers, dict):
        async with rt.db.read() as conn:
            row = await Repository(conn).connector_credentials(org_id, connector_id)
        if row is None:
            raise not_found(connector_id)
        if isinstance(auth, dict) and row.auth_secret_enc and auth.get("type") == row.auth_type:
            current = orjson.loads(rt.box.decrypt(row.auth_secret_enc))
            secret_names = set(current) - {"type", *_PUBLIC_AUTH_FIELDS.get(row.auth_type, ())}
            body["authentication"] = {
                **auth,
                **{k: current[k] for k in secret_names if auth.get(k) in (None, "")},
            }
        if isinstance(headers, dict):
            current_headers = orjson.loads(rt.box.decrypt(row.headers_enc)) if row.headers_enc \
                else {}
            body["headers"] = {
                name: current_headers.get(name) if value is None else value
                for name, value in headers.items()
            }
    return await update(rt, org_id, connector_id, ConnectorUpdate.model_validate(body))


async def rotate_secret(rt: Runtime, org_id: str, connector_id: str,
                        body: RotateSecret | None = None) -> dict[str, Any]:
    """A new signing secret (shown this once); the previous one keeps signing for a grace
    period."""
    now = now_ms()
    secret = (body.secret if body else None) or new_secret()
    expires = now + int(rt.settings.secret_grace_seconds * 1000)
    async with rt.db.write() as conn:
        repo = Repository(conn)
        current = await repo.connector_secret(org_id, connector_id)
        if current is None:
            raise not_found(connector_id)
        await repo.update_connector(
            org_id, connector_id, secret_enc=rt.box.encrypt(secret),
            previous_secret_enc=current, previous_secret_expires_at=expires, updated_at=now,
        )
        await audit(repo, org_id, "connector.secret_rotated", "connector", connector_id)
    return {"id": connector_id, "secret": secret, "previousSecretExpiresAt": rfc3339(expires)}


async def delete(rt: Runtime, org_id: str, connector_id: str) -> None:
    """Delete a connector; its queued deliveries are cancelled."""
    now = now_ms()
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if await repo.get_connector(org_id, connector_id) is None:
            raise not_found(connector_id)
        # Deliveries first, as workers lock them (see update).
        await toggle.cancel_open(repo, connector_id, now)
        await repo.delete_connector(org_id, connector_id, now)
        await audit(repo, org_id, "connector.deleted", "connector", connector_id)


async def exists(rt: Runtime, org_id: str, connector_id: str) -> None:
    """NotFound unless the organization has this connector."""
    async with rt.db.read() as conn:
        if await Repository(conn).get_connector(org_id, connector_id) is None:
            raise not_found(connector_id)


# --- health: what the console shows beside each connector ------------------------------

# The success rate over this window, and the last error looked for over a longer one.
HEALTH_WINDOW_MS = 3600 * 1000
LAST_ERROR_WINDOW_MS = 7 * 86400 * 1000


@dataclass
class Health:
    """A connector's attempts over the last hour."""

    attempts: int = 0
    succeeded: int = 0

    @property
    def rate(self) -> float:
        return 100.0 * self.succeeded / self.attempts if self.attempts else 100.0

    @property
    def rate_text(self) -> str:
        rate = self.rate
        if rate in (0.0, 100.0):
            return f"{rate:.0f}%"
        # Never round a failure away (99.96 is not 100%) nor a success (0.04 is not 0%).
        return f"{min(max(rate, 0.1), 99.9):.1f}%"


async def health_by_connector(rt: Runtime, org_id: str) -> dict[str, Health]:
    """Every connector's attempts of the last hour, by connector id."""
    since = now_ms() - HEALTH_WINDOW_MS
    async with rt.db.read() as conn:
        rows = await Repository(conn).connector_attempt_counts(
            org_id, first_id_at("att", since), since
        )
    return {r.connector_id: Health(int(r.attempts), int(r.succeeded or 0)) for r in rows}


async def last_failure(rt: Runtime, org_id: str, connector_id: str) -> dict[str, Any] | None:
    """The connector's latest failed attempt of the last 7 days, or None."""
    since = now_ms() - LAST_ERROR_WINDOW_MS
    async with rt.db.read() as conn:
        row = await Repository(conn).connector_last_failure(
            org_id, connector_id, first_id_at("att", since)
        )
    if row is None:
        return None
    what = row.error or (f"HTTP {row.status_code}" if row.status_code is not None else "failed")
    if row.error and row.status_code is not None:
        what = f"HTTP {row.status_code}: {row.error}"
    return {"deliveryId": row.delivery_id, "at": row.started_at, "what": what,
            "response": (row.response_body or "")[:200]}
