"""The organization's alerts endpoint: where ``connector.deactivated`` and ``delivery.failed``
events go, signed like every webhook."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Response
from pydantic import Field, field_validator

from hookstream.errors import NotFound
from hookstream.ids import new_id, now_ms
from hookstream.pipeline.deliver.signing import new_secret
from hookstream.pipeline.queue import toggle
from hookstream.services.audit import audit
from hookstream.services.connectors import auth_columns
from hookstream.services.schemas import (
    Authentication,
    AuthNone,
    Strict,
    check_http_url,
    check_secret,
)
from hookstream.services.targets import check_auth_target, check_target
from hookstream.storage.repository import Repository
from hookstream.web.api.common import OrgId, RuntimeDep, rfc3339

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])


class AlertsEndpoint(Strict):
    url: str
    secret: str | None = None
    authentication: Authentication = Field(default_factory=lambda: AuthNone(type="none"))

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value, "url")

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return check_secret(value)


def _alerts(row: Any) -> dict[str, Any]:
    return {
        "connectorId": row.id,
        "url": row.base_url,
        "authentication": orjson.loads(row.auth_public),
        "active": bool(row.active),
        "deactivatedReason": row.deactivated_reason,
        "events": ["connector.deactivated", "delivery.failed"],
        "updatedAt": rfc3339(row.updated_at),
    }


@router.put("", operation_id="setAlerts",
            summary="Set the alerts URL (events: connector.deactivated, delivery.failed)")
async def put(body: AlertsEndpoint, org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    check_target(rt.settings, body.url, "url")
    check_auth_target(rt.settings, body.authentication)
    now = now_ms()
    columns = {
        "base_url": body.url, "updated_at": now, "active": True, "deactivated_reason": None,
        **auth_columns(rt, body.authentication),
    }
    secret = body.secret
    async with rt.db.write() as conn:
        repo = Repository(conn)
        existing = await repo.get_alerts_connector(org_id)
        if existing is None:
            secret = secret or new_secret()
            await repo.insert_connector(
                id=new_id("con"), org_id=org_id, name="alerts", route_values="",
                route_events="", route_alarms="", secret_enc=rt.box.encrypt(secret),
                system="alerts", created_at=now, **columns,
            )
        else:
            if secret is not None:
                columns["secret_enc"] = rt.box.encrypt(secret)
            await toggle.resume(repo, existing.id, now)  # deliveries first, as workers
            await repo.update_alerts_connector(existing.id, **columns)
        row = await repo.get_alerts_connector(org_id)
        assert row is not None  # written just above, in this transaction
        await audit(repo, org_id, "alerts.updated", "connector", row.id, {"url": body.url})
    result = _alerts(row)
    if secret is not None:
        result["secret"] = secret
    return result


@router.get("", operation_id="getAlerts", summary="The alerts endpoint")
async def get(org_id: OrgId, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.db.read() as conn:
        row = await Repository(conn).get_alerts_connector(org_id)
    if row is None:
        raise NotFound("no alerts URL is set")
    return _alerts(row)


@router.delete("", operation_id="deleteAlerts", status_code=204, summary="Stop sending alerts")
async def delete(org_id: OrgId, rt: RuntimeDep) -> Response:
    now = now_ms()
    async with rt.db.write() as conn:
        repo = Repository(conn)
        row = await repo.get_alerts_connector(org_id)
        if row is None:
            raise NotFound("no alerts URL is set")
        await toggle.cancel_open(repo, row.id, now)  # deliveries first, as workers
        await repo.delete_connector(org_id, row.id, now)
        await audit(repo, org_id, "alerts.deleted", "connector", row.id)
    return Response(status_code=204)
