"""The audit log page: who changed what in the organization, newest first, filtered by the kind
of thing changed, its id, the action, the actor and a time range (UTC)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from hookstream.errors import ValidationFailed
from hookstream.services import audit
from hookstream.services.times import parse_time
from hookstream.web.console.logs import _check_choice, _filters, _older
from hookstream.web.console.web import (
    FieldErrors,
    Page,
    console_page,
    field_errors,
    filter_time,
    render_page,
)

router = APIRouter(include_in_schema=False)

AUDIT = "/console/audit"
PAGE_SIZE = 50
# What the services audit (services/*.py and the thermostat plug-in), for the filters' lists.
TARGET_TYPES = ("connector", "trigger", "gateway", "organization", "subscription",
                "subscription_key", "oauth_client")
ACTIONS = (
    "connector.created", "connector.updated", "connector.secret_rotated", "connector.deleted",
    "trigger.created", "trigger.deleted",
    "gateway.created", "gateway.updated", "gateway.token_rotated", "gateway.deleted",
    "alerts.updated", "alerts.deleted", "api_key.rotated",
    "subscription_key.created", "subscription_key.rotated", "subscription_key.deleted",
    "oauth_client.created", "oauth_client.deleted",
    "subscription.created", "subscription.deleted",
)
FILTERS = ("targetType", "targetId", "action", "actor", "since", "until")


@router.get(AUDIT)
@console_page
async def audit_page(page: Page) -> Response:
    filters = _filters(page, FILTERS)
    errors = FieldErrors()
    target_type = _check_choice(errors, filters, "targetType", TARGET_TYPES)
    for name in ("targetId", "action", "actor"):
        if len(filters[name]) > 200:
            errors.add(name, "at most 200 characters")
    listing: dict[str, Any] = {"items": [], "nextCursor": None}
    if not errors:
        try:
            listing = await audit.list_events(
                page.rt, page.org_id, target_type=target_type,
                target_id=filters["targetId"] or None, action=filters["action"] or None,
                actor=filters["actor"] or None,
                since_ms=parse_time(filter_time(filters["since"]), "since"),
                until_ms=parse_time(filter_time(filters["until"]), "until"),
                limit=PAGE_SIZE, cursor=page.request.query_params.get("cursor") or None,
                newest_first=True,
            )
        except ValidationFailed as exc:
            errors = field_errors(exc).only(*filters)
    return render_page(
        page, "audit.html", nav="audit", status=422 if errors else 200,
        events=listing["items"], filters=filters, errors=errors, target_types=TARGET_TYPES,
        actions=sorted({*ACTIONS, *([filters["action"]] if filters["action"] else [])}),
        older=_older(AUDIT, filters, listing["nextCursor"]), filtered=any(filters.values()),
    )
