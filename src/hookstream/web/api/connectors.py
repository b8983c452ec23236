"""Connectors (where and how to deliver), their triggers and the activation toggle."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Response

from hookstream.errors import Conflict, NotFound, ValidationFailed
from hookstream.ids import new_id, now_ms
from hookstream.pipeline.deliver.signing import new_secret
from hookstream.services.audit import audit
from hookstream.services.runtime import Runtime
from hookstream.settings import Settings
from hookstream.storage.repository import Repository
from hookstream.web.api.common import (
    Cursor,
    Limit,
    OrgId,
    RuntimeDep,
    decode_cursor,
    page,
    rfc3339,
)
from hookstream.web.api.schemas import (
    Authentication,
    ConnectorCreate,
    ConnectorUpdate,
    RotateSecret,
    TriggerCreate,
)
from hookstream.web.api.targets import check_auth_target, check_target

router = APIRouter(prefix="/api/v1/connectors", tags=["connectors"])

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
    if "timeouts" in given:
        columns["connect_timeout"] = body.timeouts.connect if body.timeouts else None
        columns["request_timeout"] = body.timeouts.total if body.timeouts else None
    return columns


def _connector(row: Any, settings: Settings) -> dict[str, Any]:
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
    }


def _not_found(connector_id: str) -> NotFound:
    return NotFound(f"no connector '{connector_id}'")


@router.post("", status_code=201,
             summary="Create a connector; its signing secret is shown this once")
async def create(body: ConnectorCreate, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    check_target(rt.settings, body.baseUrl, "baseUrl")
    check_auth_target(rt.settings, body.authentication)
    connector_id, now = new_id("con"), now_ms()
    secret = body.secret or new_secret()
    async with rt.db.write() as conn:
        repo = Repository(conn)
        most = rt.settings.max_connectors_per_org
        if await repo.count_connectors(org_id) >= most:
            raise Conflict(
                f"the organization has {most} connectors, the most allowed "
                "(HOOKSTREAM_MAX_CONNECTORS_PER_ORG); delete one first",
                code="limit_reached",
            )
        await repo.insert_connector(
            id=connector_id, org_id=org_id, name=body.name, base_url=body.baseUrl,
            route_values=body.routes.values, route_events=body.routes.events,
            route_alarms=body.routes.alarms, secret_enc=rt.box.encrypt(secret),
            active=body.active, created_at=now, updated_at=now,
            **auth_columns(rt, body.authentication), **_policy_columns(rt, body),
        )
        await audit(repo, org_id, "connector.created", "connector", connector_id, {
            "name": body.name, "baseUrl": body.baseUrl, "active": body.active,
            "authentication": body.authentication.type,
        })
        row = await repo.get_connector(org_id, connector_id)
    return {**_connector(row, rt.settings), "secret": secret}


@router.get("", summary="List connectors")
async def list_(
    org_id: OrgId, rt: RuntimeDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    async with rt.db.read() as conn:
        rows = await Repository(conn).list_connectors(org_id, decode_cursor(cursor), limit)
    return page([_connector(r, rt.settings) for r in rows], limit)


@router.get("/{connector_id}", summary="Get a connector (secrets are never shown again)")
async def get(connector_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.db.read() as conn:
        row = await Repository(conn).get_connector(org_id, connector_id)
    if row is None:
        raise _not_found(connector_id)
    return _connector(row, rt.settings)


@router.patch(
    "/{connector_id}",
    summary="Change a connector; {'active': false} holds its queued deliveries, true resumes them",
)
async def update(
    connector_id: str, body: ConnectorUpdate, org_id: OrgId, rt: RuntimeDep
) -> dict[str, Any]:
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
            raise _not_found(connector_id)
        # Deliveries before the connector row: the order workers lock them in (claims and
        # recorded outcomes), so the two cannot deadlock.
        if "active" in changes and bool(before.active) != changes["active"]:
            if changes["active"]:
                await repo.resume_deliveries(connector_id, now)
                await repo.notify_due()
            else:
                await repo.hold_deliveries(connector_id, now)
        if changes:
            await repo.update_connector(org_id, connector_id, updated_at=now, **changes)
            details: dict[str, Any] = {"fields": sorted(given)}
            if "active" in changes:
                details["active"] = changes["active"]
            if "base_url" in changes:
                details["baseUrl"] = changes["base_url"]
            await audit(repo, org_id, "connector.updated", "connector", connector_id, details)
        row = await repo.get_connector(org_id, connector_id)
    if "active" in changes and changes["active"]:
        rt.wakeup.set()
    return _connector(row, rt.settings)


@router.post(
    "/{connector_id}/rotate-secret",
    summary="Replace the signing secret; the previous one keeps signing for a grace period",
)
async def rotate_secret(
    connector_id: str, org_id: OrgId, rt: RuntimeDep, body: RotateSecret | None = None
) -> dict[str, Any]:
    now = now_ms()
    secret = (body.secret if body else None) or new_secret()
    expires = now + int(rt.settings.secret_grace_seconds * 1000)
    async with rt.db.write() as conn:
        repo = Repository(conn)
        current = await repo.connector_secret(org_id, connector_id)
        if current is None:
            raise _not_found(connector_id)
        await repo.update_connector(
            org_id, connector_id, secret_enc=rt.box.encrypt(secret),
            previous_secret_enc=current, previous_secret_expires_at=expires, updated_at=now,
        )
        await audit(repo, org_id, "connector.secret_rotated", "connector", connector_id)
    return {"id": connector_id, "secret": secret, "previousSecretExpiresAt": rfc3339(expires)}


@router.delete("/{connector_id}", status_code=204,
               summary="Delete a connector; its queued deliveries are cancelled")
async def delete(connector_id: str, org_id: OrgId, rt: RuntimeDep) -> Response:
    now = now_ms()
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if await repo.get_connector(org_id, connector_id) is None:
            raise _not_found(connector_id)
        # Deliveries first, as workers lock them (see update).
        await repo.cancel_open_deliveries(connector_id, now)
        await repo.delete_connector(org_id, connector_id, now)
        await audit(repo, org_id, "connector.deleted", "connector", connector_id)
    return Response(status_code=204)


# --- triggers ---------------------------------------------------------------------------

def _trigger(row: Any, gateway_ids: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"id": row.id, "kinds": row.kinds.split(",")}
    if row.all_gateways:
        body["allGateways"] = True
    else:
        body["gatewayIds"] = gateway_ids
    body["createdAt"] = rfc3339(row.created_at)
    return body


@router.post("/{connector_id}/triggers", status_code=201, tags=["triggers"],
             summary="Add a trigger: which kinds, from which gateways (or all of them)")
async def create_trigger(
    connector_id: str, body: TriggerCreate, org_id: OrgId, rt: RuntimeDep
) -> dict[str, Any]:
    trigger_id, now = new_id("trg"), now_ms()
    gateway_ids = list(dict.fromkeys(body.gatewayIds or []))
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if await repo.get_connector(org_id, connector_id) is None:
            raise _not_found(connector_id)
        if gateway_ids:
            known = await repo.existing_gateway_ids(org_id, gateway_ids)
            unknown = [g for g in gateway_ids if g not in known]
            if unknown:
                raise ValidationFailed(
                    f"unknown gateway '{unknown[0]}'",
                    code="unknown_gateway",
                    details=[{"field": "gatewayIds", "message": f"unknown gateway '{g}'"}
                             for g in unknown],
                )
        most = rt.settings.max_triggers_per_org
        if await repo.count_triggers(org_id) >= most:
            raise Conflict(
                f"the organization has {most} triggers, the most allowed "
                "(HOOKSTREAM_MAX_TRIGGERS_PER_ORG); delete one first",
                code="limit_reached",
            )
        await repo.insert_trigger(
            id=trigger_id, org_id=org_id, connector_id=connector_id,
            kinds=",".join(body.kinds), all_gateways=body.allGateways, created_at=now,
        )
        await repo.insert_trigger_gateways(
            [{"trigger_id": trigger_id, "gateway_id": g} for g in gateway_ids]
        )
        await audit(repo, org_id, "trigger.created", "trigger", trigger_id, {
            "connectorId": connector_id, "kinds": list(body.kinds),
            **({"allGateways": True} if body.allGateways else {"gatewayIds": gateway_ids}),
        })
    result: dict[str, Any] = {"id": trigger_id, "kinds": list(body.kinds)}
    if body.allGateways:
        result["allGateways"] = True
    else:
        result["gatewayIds"] = gateway_ids
    result["createdAt"] = rfc3339(now)
    return result


@router.get("/{connector_id}/triggers", tags=["triggers"], summary="List a connector's triggers")
async def list_triggers(connector_id: str, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.db.read() as conn:
        repo = Repository(conn)
        if await repo.get_connector(org_id, connector_id) is None:
            raise _not_found(connector_id)
        rows = await repo.list_triggers(connector_id)
        links = await repo.trigger_gateway_ids([r.id for r in rows])
    by_trigger: dict[str, list[str]] = {}
    for link in links:
        by_trigger.setdefault(link.trigger_id, []).append(link.gateway_id)
    return {"items": [_trigger(r, by_trigger.get(r.id, [])) for r in rows], "nextCursor": None}


@router.delete("/{connector_id}/triggers/{trigger_id}", status_code=204, tags=["triggers"],
               summary="Remove a trigger")
async def delete_trigger(
    connector_id: str, trigger_id: str, org_id: OrgId, rt: RuntimeDep
) -> Response:
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if await repo.get_connector(org_id, connector_id) is None:
            raise _not_found(connector_id)
        # Scoped to the connector; its gateway links go with it (ON DELETE CASCADE).
        if not await repo.delete_trigger(connector_id, trigger_id):
            raise NotFound(f"no trigger '{trigger_id}'")
        await audit(repo, org_id, "trigger.deleted", "trigger", trigger_id,
                    {"connectorId": connector_id})
    return Response(status_code=204)
