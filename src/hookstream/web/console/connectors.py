"""Connectors in the console: the list with health and the toggle, 'Add a connector', and a
connector's page (triggers, test button, replay of a range, secret rotation, deletion)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.responses import Response

from hookstream.errors import Conflict, ValidationFailed
from hookstream.pipeline.record.replay import STATUSES, parse_statuses
from hookstream.services import connectors, logs, replay, triggers
from hookstream.services.activity import OUTCOMES, connector_activity
from hookstream.services.connectors import Health, health_by_connector, last_failure
from hookstream.services.schemas import (
    ConnectorCreate,
    ConnectorReplay,
    ConnectorUpdate,
    TriggerCreate,
)
from hookstream.services.times import parse_time
from hookstream.web.console.charts import LABELS, attempts_chart, latency_chart, ms_text, span
from hookstream.web.console.connector_types import (
    SECRET_TYPE_FIELDS,
    TYPE_FIELDS,
    TYPES,
    blank_type_values,
    move_target_errors,
    target_from_form,
    type_field_names,
    type_values_from_form,
)
from hookstream.web.console.overview import all_connectors, all_gateways
from hookstream.web.console.pages import redirect
from hookstream.web.console.transforms import transform_of
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
    await connectors.update(page.rt, page.org_id, connector_id, ConnectorUpdate(active=active))
    back = CONNECTORS if form.text("back") == "list" else f"{CONNECTORS}/{connector_id}"
    return redirect(f"{back}?done={'switched-on' if active else 'switched-off'}")


# --- 'Add a connector' -------------------------------------------------------------------------

def _blank_connector() -> dict[str, str]:
    return {"name": "", "baseUrl": "", "routes.values": "", "routes.events": "",
            "routes.alarms": "", "authentication.type": "none", "transform.expression": ""}


def _connector_form(page: Page, *, values: dict[str, str], errors: FieldErrors | None = None,
                    status: int = 200) -> Response:
    return render_page(page, "connector_form.html", nav="connectors", status=status,
                       values={**blank_type_values(), **values}, errors=errors,
                       auth_types=AUTH_TYPES, auth_fields=AUTH_FIELDS,
                       secret_fields=SECRET_FIELDS, types=TYPES, type_fields=TYPE_FIELDS,
                       secret_type_fields=SECRET_TYPE_FIELDS)


@router.get(NEW)
@console_page
async def new_connector(page: Page) -> Response:
    return _connector_form(page, values=_blank_connector())


def authentication_from_form(form: Form, auth_type: str) -> dict[str, Any]:
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
    values.update(type_values_from_form(form))
    connector_type = values["type"]
    target = target_from_form(form, connector_type)
    fields: dict[str, Any] = {"name": values["name"], "secret": form.text("secret") or None}
    if target is None:
        fields.update({
            "type": connector_type,
            "baseUrl": values["baseUrl"],
            "routes": {kind: values[f"routes.{kind}"] for kind in KINDS},
            "authentication": authentication_from_form(form, auth_type),
            "transform": transform_of(values["transform.expression"]),
        })
    else:  # a broker: the HTTP fields on the page are not its own
        fields.update({"type": connector_type, "target": target})
    try:
        body = ConnectorCreate.model_validate(fields)
        created = await connectors.create(page.rt, page.org_id, body)
    except (ValidationError, ValidationFailed, Conflict) as exc:
        errors = move_target_errors(field_errors(exc), connector_type)
        if "authentication" in errors.fields:  # an unknown type
            errors.fields["authentication.type"] = errors.fields.pop("authentication")
        errors.only(*values, "secret", *type_field_names(),
                    *(f"authentication.{name}" for name in AUTH_FIELDS.get(auth_type, ())))
        return _connector_form(page, values=values, errors=errors, status=422)
    detail = f"{CONNECTORS}/{created['id']}"
    return secret_page(
        page, nav="connectors", title=f"Connector “{created['name']}” added",
        lead="Its signing secret is shown this once. Your server checks each webhook's "
             "webhook-signature header with it (Standard Webhooks); hookstream keeps it "
             "encrypted and never shows it again.",
        label="Signing secret", secret=created["secret"],
        extra=[("Connector id", created["id"]),
               ("Broker URL" if created.get("target") else "Base URL", created["baseUrl"])],
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
    connector = await connectors.get(rt, org_id, connector_id)
    trigger_list = (await triggers.list_(rt, org_id, connector_id))["items"]
    gws = await all_gateways(page)
    health = (await health_by_connector(rt, org_id)).get(connector_id, Health())
    recent = (await logs.list_deliveries(rt, org_id, connector_id=connector_id, limit=5))["items"]
    activity = await connector_activity(rt, org_id, connector_id)
    return render_page(
        page, "connector.html", nav="connectors", status=status, connector=connector,
        triggers=trigger_list, gateways=gws, gateway_names={g["id"]: g["name"] for g in gws},
        health=health, failure=await last_failure(rt, org_id, connector_id), recent=recent,
        kinds=KINDS, statuses=STATUSES,
        trigger_values=trigger_values or _trigger_defaults(), trigger_errors=trigger_errors,
        open_trigger_form=bool(trigger_errors) or not trigger_list,
        test_result=test_result, test_kind=test_kind,
        replay_values=replay_values or {"since": "", "until": "", "status": ""},
        replay_errors=replay_errors, auth_labels=dict(AUTH_TYPES),
        activity=activity, attempts_chart=attempts_chart(activity),
        latency_chart=latency_chart(activity), outcomes=OUTCOMES, outcome_labels=LABELS,
        ms_text=ms_text, span=span,
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
            await triggers.create(page.rt, page.org_id, connector_id, body)
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
    await triggers.delete(page.rt, page.org_id, connector_id, trigger_id)
    return redirect(f"{CONNECTORS}/{connector_id}?done=trigger-deleted#triggers")


@router.post(CONNECTORS + "/{connector_id}/test")
@console_page
async def test_connector(page: Page, connector_id: str) -> Response:
    form = await posted_form(page)
    kind = form.text("kind")
    if kind not in KINDS:
        kind = "values"
    result = await replay.test_connector(page.rt, page.org_id, connector_id, kind)
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
            asked = ConnectorReplay.model_validate(body)
            since_ms = parse_time(asked.since, "since")
            assert since_ms is not None
            replayed = await replay.replay_range(
                page.rt, page.org_id, connector_id, since_ms=since_ms,
                until_ms=parse_time(asked.until, "until"),
                statuses=asked.status or parse_statuses(None),
            )
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
    rotated = await connectors.rotate_secret(page.rt, page.org_id, connector_id)
    connector = await connectors.get(page.rt, page.org_id, connector_id)
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
    await connectors.delete(page.rt, page.org_id, connector_id)
    return redirect(f"{CONNECTORS}?done=connector-deleted")
