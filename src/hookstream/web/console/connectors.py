"""Connectors in the console: the list with health and the toggle, 'Add a connector', and a
connector's page (triggers, test button, replay of a range, secret rotation, deletion)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.responses import Response

from hookstream.errors import Conflict, ValidationFailed
from hookstream.ids import first_id_at, now_ms
from hookstream.pipeline.record.replay import STATUSES
from hookstream.services.runtime import Runtime
from hookstream.storage.repository import Repository
from hookstream.web.api import connectors, logs, replay
from hookstream.web.api.schemas import ConnectorCreate, ConnectorUpdate, TriggerCreate
from hookstream.web.console.overview import all_connectors, all_gateways
from hookstream.web.console.pages import redirect
from hookstream.web.console.web import (
    KINDS,
    FieldErrors,
    Form,
    Page,
    console_page,
    field_errors,
    filter_time,
    posted_form,
    render_page,
    secret_page,
    when,
)

router = APIRouter(include_in_schema=False)

CONNECTORS = "/console/connectors"
NEW = CONNECTORS + "/new"
# Health: the success rate over this window, and the last error looked for over a longer one.
HEALTH_WINDOW_MS = 3600 * 1000
LAST_ERROR_WINDOW_MS = 7 * 86400 * 1000

AUTH_TYPES = (
    ("none", "None"),
    ("basic", "Basic: username and password"),
    ("bearer", "Bearer token"),
    ("api_key", "API key in a header"),
    ("oauth2_client_credentials", "OAuth2 client credentials"),
)
# Each type's fields, in the form's order; which are secrets (never sent back to the page).
AUTH_FIELDS: dict[str, tuple[str, ...]] = {
    "none": (),
    "basic": ("username", "password"),
    "bearer": ("token",),
    "api_key": ("header", "value"),
    "oauth2_client_credentials": ("tokenUrl", "clientId", "clientSecret", "scope"),
}
SECRET_FIELDS = {"password", "token", "value", "clientSecret"}


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


# --- the list ------------------------------------------------------------------------------

@router.get(CONNECTORS)
@console_page
async def connectors_page(page: Page) -> Response:
    cons = await all_connectors(page)
    health = await health_by_connector(page.rt, page.org_id)
    failures = {c["id"]: await last_failure(page.rt, page.org_id, c["id"]) for c in cons}
    return render_page(page, "connectors.html", nav="connectors", connectors=cons,
                       health=health, failures=failures, no_health=Health())


@router.post(CONNECTORS + "/{connector_id}/active")
@console_page
async def toggle(page: Page, connector_id: str) -> Response:
    form = await posted_form(page)
    active = form.text("active") == "true"
    await connectors.update(connector_id, ConnectorUpdate(active=active), page.org_id, page.rt)
    back = CONNECTORS if form.text("back") == "list" else f"{CONNECTORS}/{connector_id}"
    return redirect(f"{back}?done={'switched-on' if active else 'switched-off'}")


# --- 'Add a connector' -------------------------------------------------------------------------

def _blank_connector() -> dict[str, str]:
    return {"name": "", "baseUrl": "", "routes.values": "", "routes.events": "",
            "routes.alarms": "", "authentication.type": "none"}


def _connector_form(page: Page, *, values: dict[str, str], errors: FieldErrors | None = None,
                    status: int = 200) -> Response:
    return render_page(page, "connector_form.html", nav="connectors", status=status,
                       values=values, errors=errors, auth_types=AUTH_TYPES,
                       auth_fields=AUTH_FIELDS, secret_fields=SECRET_FIELDS)


@router.get(NEW)
@console_page
async def new_connector(page: Page) -> Response:
    return _connector_form(page, values=_blank_connector())


def _authentication(form: Form, auth_type: str) -> dict[str, Any]:
    """The authentication object of the chosen type from its fields (the others are ignored:
    without JavaScript every type's fields are on the page)."""
    auth: dict[str, Any] = {"type": auth_type}
    for name in AUTH_FIELDS.get(auth_type, ()):
        key = f"authentication.{name}"
        # A password may begin or end with a space; nothing else here should.
        auth[name] = form.raw(key) if name == "password" else form.text(key)
    if auth_type == "oauth2_client_credentials" and not auth.get("scope"):
        auth.pop("scope")
    return auth


@router.post(NEW)
@console_page
async def create_connector(page: Page) -> Response:
    form = await posted_form(page)
    auth_type = form.text("authentication.type") or "none"
    values = {key: form.text(key) for key in _blank_connector()}
    for name in AUTH_FIELDS.get(auth_type, ()):
        if name not in SECRET_FIELDS:
            values[f"authentication.{name}"] = form.text(f"authentication.{name}")
    try:
        body = ConnectorCreate.model_validate({
            "name": values["name"],
            "baseUrl": values["baseUrl"],
            "routes": {kind: values[f"routes.{kind}"] for kind in KINDS},
            "secret": form.text("secret") or None,
            "authentication": _authentication(form, auth_type),
        })
        created = await connectors.create(body, page.org_id, page.rt)
    except (ValidationError, ValidationFailed, Conflict) as exc:
        errors = field_errors(exc)
        if "authentication" in errors.fields:  # an unknown type
            errors.fields["authentication.type"] = errors.fields.pop("authentication")
        errors.only(*values, "secret",
                    *(f"authentication.{name}" for name in AUTH_FIELDS.get(auth_type, ())))
        return _connector_form(page, values=values, errors=errors, status=422)
    detail = f"{CONNECTORS}/{created['id']}"
    return secret_page(
        page, nav="connectors", title=f"Connector “{created['name']}” added",
        lead="Its signing secret is shown this once. Your server checks each webhook's "
             "webhook-signature header with it (Standard Webhooks); hookstream keeps it "
             "encrypted and never shows it again.",
        label="Signing secret", secret=created["secret"],
        extra=[("Connector id", created["id"]), ("Base URL", created["baseUrl"])],
        next_url=detail + "#triggers", next_text="Next: create a trigger",
        other_url=CONNECTORS, other_text="All connectors",
    )


# --- a connector's page ---------------------------------------------------------------------

def _trigger_defaults() -> dict[str, Any]:
    return {"kinds": list(KINDS), "gatewayIds": [], "allGateways": False}


async def _detail(
    page: Page, connector_id: str, *, status: int = 200,
    trigger_values: dict[str, Any] | None = None, trigger_errors: FieldErrors | None = None,
    test_result: dict[str, Any] | None = None, test_kind: str = "values",
    replay_values: dict[str, str] | None = None, replay_errors: FieldErrors | None = None,
) -> Response:
    rt, org_id = page.rt, page.org_id
    connector = await connectors.get(connector_id, org_id, rt)
    triggers = (await connectors.list_triggers(connector_id, org_id, rt))["items"]
    gws = await all_gateways(page)
    health = (await health_by_connector(rt, org_id)).get(connector_id, Health())
    recent = (await logs.list_deliveries(org_id, rt, connectorId=connector_id, limit=5))["items"]
    return render_page(
        page, "connector.html", nav="connectors", status=status, connector=connector,
        triggers=triggers, gateways=gws, gateway_names={g["id"]: g["name"] for g in gws},
        health=health, failure=await last_failure(rt, org_id, connector_id), recent=recent,
        kinds=KINDS, statuses=STATUSES,
        trigger_values=trigger_values or _trigger_defaults(), trigger_errors=trigger_errors,
        open_trigger_form=bool(trigger_errors) or not triggers,
        test_result=test_result, test_kind=test_kind,
        replay_values=replay_values or {"since": "", "until": "", "status": ""},
        replay_errors=replay_errors, auth_labels=dict(AUTH_TYPES),
    )


@router.get(CONNECTORS + "/{connector_id}")
@console_page
async def connector_page(page: Page, connector_id: str) -> Response:
    return await _detail(page, connector_id)


@router.post(CONNECTORS + "/{connector_id}/triggers")
@console_page
async def create_trigger(page: Page, connector_id: str) -> Response:
    form = await posted_form(page)
    kinds = form.values("kinds")
    gateway_ids = form.values("gatewayIds")
    all_gateways_ = form.checked("allGateways")
    values = {"kinds": kinds, "gatewayIds": gateway_ids, "allGateways": all_gateways_}
    errors = FieldErrors()
    # Said here in the page's words; the API refuses the same with its own.
    if not kinds:
        errors.add("kinds", "pick at least one kind of message")
    if not all_gateways_ and not gateway_ids:
        errors.add("gatewayIds", "pick at least one gateway, or all gateways")
    if not errors:
        scope: dict[str, Any] = (
            {"allGateways": True} if all_gateways_ else {"gatewayIds": gateway_ids}
        )
        try:
            body = TriggerCreate.model_validate({"kinds": kinds, **scope})
            await connectors.create_trigger(connector_id, body, page.org_id, page.rt)
        except (ValidationError, ValidationFailed, Conflict) as exc:
            errors = field_errors(exc).only("kinds", "gatewayIds")
    if errors:
        return await _detail(page, connector_id, status=422, trigger_values=values,
                             trigger_errors=errors)
    return redirect(f"{CONNECTORS}/{connector_id}?done=trigger-created#triggers")


@router.post(CONNECTORS + "/{connector_id}/triggers/{trigger_id}/delete")
@console_page
async def delete_trigger(page: Page, connector_id: str, trigger_id: str) -> Response:
    await posted_form(page)
    await connectors.delete_trigger(connector_id, trigger_id, page.org_id, page.rt)
    return redirect(f"{CONNECTORS}/{connector_id}?done=trigger-deleted#triggers")


@router.post(CONNECTORS + "/{connector_id}/test")
@console_page
async def test_connector(page: Page, connector_id: str) -> Response:
    form = await posted_form(page)
    kind = form.text("kind")
    if kind not in KINDS:
        kind = "values"
    result = await replay.test_connector(
        connector_id, replay.ConnectorTest(kind=kind), page.org_id, page.rt  # type: ignore[arg-type]
    )
    return await _detail(page, connector_id, test_result=result, test_kind=kind)


@router.post(CONNECTORS + "/{connector_id}/replay")
@console_page
async def replay_range(page: Page, connector_id: str) -> Response:
    form = await posted_form(page)
    values = {"since": form.text("since"), "until": form.text("until"),
              "status": form.text("status")}
    errors = FieldErrors()
    since = filter_time(values["since"])
    if since is None:
        errors.add("since", "required: when the replay starts")
    replayed = 0
    if not errors:
        body: dict[str, Any] = {"since": since}
        if values["until"]:
            body["until"] = filter_time(values["until"])
        if values["status"]:
            body["status"] = values["status"]
        try:
            result = await replay.replay_range(
                connector_id, replay.ConnectorReplay.model_validate(body), page.org_id, page.rt
            )
            replayed = int(result["replayed"])
        except (ValidationError, ValidationFailed) as exc:
            errors = field_errors(exc).only("since", "until", "status")
        if not errors and not replayed:
            errors.add("", "no delivery of this connector matches that range and status")
    if errors:
        return await _detail(page, connector_id, status=422, replay_values=values,
                             replay_errors=errors)
    return redirect(
        f"/console/deliveries?connectorId={connector_id}&done=replayed-range&n={replayed}"
    )


@router.post(CONNECTORS + "/{connector_id}/rotate-secret")
@console_page
async def rotate_secret(page: Page, connector_id: str) -> Response:
    await posted_form(page)
    rotated = await connectors.rotate_secret(connector_id, page.org_id, page.rt, None)
    connector = await connectors.get(connector_id, page.org_id, page.rt)
    return secret_page(
        page, nav="connectors", title=f"New signing secret for “{connector['name']}”",
        lead="The new secret is shown this once. Until "
             f"{when(rotated['previousSecretExpiresAt'])} UTC every webhook carries two "
             "signatures, one with each secret, so your server can switch at its pace.",
        label="Signing secret", secret=rotated["secret"],
        next_url=f"{CONNECTORS}/{connector_id}", next_text="Back to the connector",
    )


@router.post(CONNECTORS + "/{connector_id}/delete")
@console_page
async def delete_connector(page: Page, connector_id: str) -> Response:
    await posted_form(page)
    await connectors.delete(connector_id, page.org_id, page.rt)
    return redirect(f"{CONNECTORS}?done=connector-deleted")
