"""The Organization tab: what the organization has, what to do next, and its gateways."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.responses import Response

from hookstream.errors import ValidationFailed
from hookstream.services import connectors, gateways, logs, triggers
from hookstream.services.schemas import GatewayCreate, Rotation
from hookstream.web.console.pages import HOME, redirect
from hookstream.web.console.web import (
    FieldErrors,
    Page,
    console_page,
    field_errors,
    posted_form,
    render_page,
    secret_page,
    when,
)

router = APIRouter(include_in_schema=False)

GATEWAYS = "/console/gateways"
# The console lists at most this many of a kind on one page (the API's largest page).
MOST = 1000


async def all_gateways(page: Page) -> list[dict[str, Any]]:
    """The organization's gateways (the first thousand), oldest first."""
    return list((await gateways.list_(page.rt, page.org_id, limit=MOST))["items"])


async def all_connectors(page: Page) -> list[dict[str, Any]]:
    """The organization's connectors (the first thousand), oldest first."""
    return list((await connectors.list_(page.rt, page.org_id, limit=MOST))["items"])


@router.get(HOME)
@console_page
async def overview(page: Page) -> Response:
    gws = await all_gateways(page)
    cons = await all_connectors(page)
    trigger_count = await triggers.count(page.rt, page.org_id)
    recent = (await logs.list_deliveries(page.rt, page.org_id, limit=5))["items"]
    has_message = bool((await logs.list_messages(page.rt, page.org_id, limit=1))["items"])
    names = {c["id"]: c["name"] for c in cons}
    steps = [
        ("Add a gateway", "Each gateway (a Tower) gets an ingest token to send its data with.",
         GATEWAYS, bool(gws)),
        ("Add a connector", "Where your web server is: base URL, a route per kind, a secret and "
         "authentication.", "/console/connectors/new", bool(cons)),
        ("Create a trigger", "Which kinds of message, from which gateways, go to the connector.",
         "/console/connectors", trigger_count > 0),
        ("Switch the connector on", "Messages are routed to a connector only while its toggle "
         "is on.", "/console/connectors", any(c["active"] for c in cons)),
        ("Send a value", "Post a value with a gateway's ingest token; it shows in the message "
         "log and the delivery log.", "/console/messages", has_message),
    ]
    return render_page(
        page, "overview.html", nav="overview", gateways=gws, connectors=cons, steps=steps,
        all_done=all(done for *_, done in steps), trigger_count=trigger_count,
        recent=recent, connector_names=names, base_url=str(page.request.base_url).rstrip("/"),
    )


async def _gateways_page(page: Page, *, status: int = 200, errors: FieldErrors | None = None,
                         values: dict[str, str] | None = None) -> Response:
    return render_page(page, "gateways.html", nav="gateways", status=status,
                       gateways=await all_gateways(page), errors=errors,
                       values=values or {"name": "", "externalId": ""})


@router.get(GATEWAYS)
@console_page
async def gateways_page(page: Page) -> Response:
    return await _gateways_page(page)


@router.post(GATEWAYS)
@console_page
async def create_gateway(page: Page) -> Response:
    form = await posted_form(page)
    values = {"name": form.text("name"), "externalId": form.text("externalId")}
    try:
        body = GatewayCreate.model_validate(
            {"name": values["name"], "externalId": values["externalId"] or None}
        )
        created = await gateways.create(page.rt, page.org_id, body)
    except (ValidationError, ValidationFailed) as exc:
        return await _gateways_page(page, status=422, errors=field_errors(exc), values=values)
    return secret_page(
        page, nav="gateways", title=f"Gateway “{created['name']}” added",
        lead="Its ingest token is shown this once: copy it into the gateway now. hookstream "
             "keeps only its hash.",
        label="Ingest token", secret=created["ingestToken"],
        example=_ingest_example(page, created["ingestToken"]),
        next_url=GATEWAYS, next_text="Back to the gateways",
    )


def _ingest_example(page: Page, token: str) -> str:
    base = str(page.request.base_url).rstrip("/")
    return (
        f"curl -X POST {base}/ingest/v1/values \\\n"
        f"  -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n"
        """  -d '{"deviceId": "boiler-1", "property": "temperature", """
        """"timestamp": 1767225600000, "payload": 642}'"""
    )


@router.post(GATEWAYS + "/{gateway_id}/rotate-token")
@console_page
async def rotate_token(page: Page, gateway_id: str) -> Response:
    form = await posted_form(page)
    body = Rotation(overlapSeconds=0) if form.checked("revokeNow") else None
    rotated = await gateways.rotate_token(page.rt, page.org_id, gateway_id, body)
    gateway = await gateways.get(page.rt, page.org_id, gateway_id)
    previous = ("The previous token stopped working."
                if body is not None else
                f"The previous token keeps working until "
                f"{when(rotated['previousTokenExpiresAt'])} UTC, "
                "so you can roll the new one out.")
    return secret_page(
        page, nav="gateways",
        title=f"New ingest token for “{gateway['name']}”",
        lead="The new token is shown this once: copy it into the gateway now. " + previous,
        label="Ingest token", secret=rotated["ingestToken"],
        example=_ingest_example(page, rotated["ingestToken"]),
        next_url=GATEWAYS, next_text="Back to the gateways",
    )


@router.post(GATEWAYS + "/{gateway_id}/delete")
@console_page
async def delete_gateway(page: Page, gateway_id: str) -> Response:
    await posted_form(page)
    await gateways.delete(page.rt, page.org_id, gateway_id)
    return redirect(GATEWAYS + "?done=gateway-deleted")
