"""The message log and the delivery log, with their filters, a delivery's attempts, and the
replay and cancel buttons."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from hookstream.errors import NotFound, ValidationFailed
from hookstream.pipeline.record.replay import STATUSES
from hookstream.services import logs, replay
from hookstream.services.times import parse_time
from hookstream.web.console.overview import all_connectors, all_gateways
from hookstream.web.console.pages import redirect
from hookstream.web.console.web import (
    KINDS,
    FieldErrors,
    Page,
    console_page,
    field_errors,
    filter_time,
    posted_form,
    render_page,
)

router = APIRouter(include_in_schema=False)

MESSAGES = "/console/messages"
DELIVERIES = "/console/deliveries"
PAGE_SIZE = 50


def _filters(page: Page, names: tuple[str, ...]) -> dict[str, str]:
    query = page.request.query_params
    return {name: query.get(name, "").strip() for name in names}


def _older(path: str, filters: dict[str, str], cursor: str | None) -> str | None:
    """The next page's address: the same filters, after ``cursor``."""
    if not cursor:
        return None
    kept = {k: v for k, v in filters.items() if v}
    return f"{path}?{urlencode({**kept, 'cursor': cursor})}"


def _check_choice(errors: FieldErrors, filters: dict[str, str], name: str,
                  allowed: tuple[str, ...]) -> str | None:
    value = filters[name]
    if value and value not in allowed:
        errors.add(name, f"not one of: {', '.join(allowed)}")
        return None
    return value or None


@router.get(MESSAGES)
@console_page
async def messages_page(page: Page) -> Response:
    filters = _filters(page, ("gatewayId", "deviceId", "kind", "since", "until"))
    errors = FieldErrors()
    kind = _check_choice(errors, filters, "kind", KINDS)
    listing: dict[str, Any] = {"items": [], "nextCursor": None}
    if not errors:
        try:
            listing = await logs.list_messages(
                page.rt, page.org_id, gateway_id=filters["gatewayId"] or None,
                device_id=filters["deviceId"] or None, kind=kind,
                since_ms=parse_time(filter_time(filters["since"]), "since"),
                until_ms=parse_time(filter_time(filters["until"]), "until"),
                limit=PAGE_SIZE, cursor=page.request.query_params.get("cursor") or None,
            )
        except ValidationFailed as exc:
            errors = field_errors(exc).only(*filters)
    gws = await all_gateways(page)
    cons = await all_connectors(page)
    items = [{**m, "pretty": orjson.dumps(m["message"], option=orjson.OPT_INDENT_2).decode()}
             for m in listing["items"]]
    return render_page(
        page, "messages.html", nav="messages", status=422 if errors else 200, messages=items,
        filters=filters, errors=errors, gateways=gws, kinds=KINDS,
        gateway_names={g["id"]: g["name"] for g in gws},
        connector_names={c["id"]: c["name"] for c in cons},
        older=_older(MESSAGES, filters, listing["nextCursor"]),
        filtered=any(filters.values()),
    )


@router.get(DELIVERIES)
@console_page
async def deliveries_page(page: Page) -> Response:
    filters = _filters(page, ("connectorId", "status", "deviceId", "since", "until"))
    errors = FieldErrors()
    status = _check_choice(errors, filters, "status", STATUSES)
    listing: dict[str, Any] = {"items": [], "nextCursor": None}
    if not errors:
        try:
            listing = await logs.list_deliveries(
                page.rt, page.org_id, connector_id=filters["connectorId"] or None,
                status=status, device_id=filters["deviceId"] or None,
                since_ms=parse_time(filter_time(filters["since"]), "since"),
                until_ms=parse_time(filter_time(filters["until"]), "until"),
                limit=PAGE_SIZE, cursor=page.request.query_params.get("cursor") or None,
            )
        except ValidationFailed as exc:
            errors = field_errors(exc).only(*filters)
    cons = await all_connectors(page)
    return render_page(
        page, "deliveries.html", nav="deliveries", status=422 if errors else 200,
        deliveries=listing["items"], filters=filters, errors=errors, connectors=cons,
        statuses=STATUSES, connector_names={c["id"]: c["name"] for c in cons},
        older=_older(DELIVERIES, filters, listing["nextCursor"]),
        filtered=any(filters.values()),
    )


@router.get(DELIVERIES + "/{delivery_id}")
@console_page
async def delivery_page(page: Page, delivery_id: str) -> Response:
    delivery = await logs.get_delivery(page.rt, page.org_id, delivery_id)
    message: dict[str, Any] | None
    try:
        message = await logs.get_message(page.rt, page.org_id, delivery["messageId"])
    except NotFound:  # purged by retention, or an alert
        message = None
    cons = await all_connectors(page)
    names = {c["id"]: c["name"] for c in cons}
    pretty = (orjson.dumps(message["message"], option=orjson.OPT_INDENT_2).decode()
              if message else None)
    return render_page(
        page, "delivery.html", nav="deliveries", delivery=delivery, message=message,
        pretty=pretty, connector_name=names.get(delivery["connectorId"]),
        attempts=list(reversed(delivery["attempts"])),
    )


@router.post(DELIVERIES + "/{delivery_id}/replay")
@console_page
async def replay_delivery(page: Page, delivery_id: str) -> Response:
    await posted_form(page)
    created = await replay.replay_delivery(page.rt, page.org_id, delivery_id)
    return redirect(f"{DELIVERIES}/{created['id']}?done=replayed")


@router.post(DELIVERIES + "/{delivery_id}/cancel")
@console_page
async def cancel_delivery(page: Page, delivery_id: str) -> Response:
    await posted_form(page)
    await replay.cancel_delivery(page.rt, page.org_id, delivery_id)
    return redirect(f"{DELIVERIES}/{delivery_id}?done=cancelled")
