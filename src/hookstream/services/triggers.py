"""Triggers: which kinds of message, from which gateways (or all), go to a connector."""

from __future__ import annotations

from typing import Any

from hookstream.errors import NotFound, ValidationFailed
from hookstream.ids import new_id, now_ms
from hookstream.services.audit import audit
from hookstream.services.connectors import not_found
from hookstream.services.quotas import check_quota
from hookstream.services.runtime import Runtime
from hookstream.services.schemas import TriggerCreate
from hookstream.services.times import rfc3339
from hookstream.storage.repository import Repository


def representation(trigger_id: str, kinds: list[str], all_gateways: bool,
                   gateway_ids: list[str], created_at: int) -> dict[str, Any]:
    """A trigger as the API shows it: ``allGateways`` or its ``gatewayIds``, never both."""
    body: dict[str, Any] = {"id": trigger_id, "kinds": kinds}
    if all_gateways:
        body["allGateways"] = True
    else:
        body["gatewayIds"] = gateway_ids
    body["createdAt"] = rfc3339(created_at)
    return body


async def create(rt: Runtime, org_id: str, connector_id: str, body: TriggerCreate
                 ) -> dict[str, Any]:
    """Add a trigger to a connector; every gateway it names must be the organization's."""
    trigger_id, now = new_id("trg"), now_ms()
    gateway_ids = list(dict.fromkeys(body.gatewayIds or []))
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if await repo.get_connector(org_id, connector_id) is None:
            raise not_found(connector_id)
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
        check_quota(await repo.count_triggers(org_id), rt.settings.max_triggers_per_org,
                    "triggers", "HOOKSTREAM_MAX_TRIGGERS_PER_ORG")
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
    return representation(trigger_id, list(body.kinds), body.allGateways, gateway_ids, now)


async def list_(rt: Runtime, org_id: str, connector_id: str) -> dict[str, Any]:
    """Every trigger of a connector (one page: a connector has few)."""
    async with rt.db.read() as conn:
        repo = Repository(conn)
        if await repo.get_connector(org_id, connector_id) is None:
            raise not_found(connector_id)
        rows = await repo.list_triggers(connector_id)
        links = await repo.trigger_gateway_ids([r.id for r in rows])
    by_trigger: dict[str, list[str]] = {}
    for link in links:
        by_trigger.setdefault(link.trigger_id, []).append(link.gateway_id)
    items = [representation(r.id, r.kind_list, r.all_gateways,
                            by_trigger.get(r.id, []), r.created_at) for r in rows]
    return {"items": items, "nextCursor": None}


async def count(rt: Runtime, org_id: str) -> int:
    """How many triggers the organization has."""
    async with rt.db.read() as conn:
        return int(await Repository(conn).count_triggers(org_id))


async def delete(rt: Runtime, org_id: str, connector_id: str, trigger_id: str) -> None:
    """Remove a trigger of the connector; its gateway links go with it (ON DELETE CASCADE)."""
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if await repo.get_connector(org_id, connector_id) is None:
            raise not_found(connector_id)
        if not await repo.delete_trigger(connector_id, trigger_id):
            raise NotFound(f"no trigger '{trigger_id}'")
        await audit(repo, org_id, "trigger.deleted", "trigger", trigger_id,
                    {"connectorId": connector_id})
