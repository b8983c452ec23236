"""'Edit' on a connector's page: where it points, authentication, static headers, retry,
timeouts, limits, ordering and batching.

The form shows the connector's own values (an empty field is the deployment's default, shown
as the placeholder) and never a secret. On saving, only the parts whose fields changed are
sent, through the same model (``ConnectorUpdate``) and service as the API's PATCH, so the
checks, the errors and the audit entry ("connector.updated" with the fields changed) are the
API's. A credential left empty while the authentication type stays the same keeps its stored
value, as does a static header whose value is left empty.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from fastapi import APIRouter
from pydantic import ValidationError
from starlette.responses import Response

from hookstream.errors import ValidationFailed
from hookstream.models import Connector
from hookstream.services import connectors
from hookstream.web.console.connector_types import (
    SECRET_TYPE_FIELDS,
    TYPE_FIELDS,
    move_target_errors,
    target_from_form,
    type_values_from_form,
    type_values_of,
)
from hookstream.web.console.connectors import (
    AUTH_FIELDS,
    AUTH_TYPES,
    CONNECTORS,
    SECRET_FIELDS,
    authentication_from_form,
)
from hookstream.web.console.pages import redirect
from hookstream.web.console.transforms import transform_of
from hookstream.web.console.web import (
    KINDS,
    FieldErrors,
    Form,
    Page,
    console_page,
    field_errors,
    posted_form,
    render_page,
)

router = APIRouter(include_in_schema=False)

# Room for new static headers on the form (the API allows 20 in all).
NEW_HEADER_ROWS = 3
MAX_HEADERS = 20
# The form's fields of each part of the PATCH body; a part is sent when one of them changed.
SECTIONS: dict[str, tuple[str, ...]] = {
    "name": ("name",),
    "baseUrl": ("baseUrl",),
    "routes": tuple(f"routes.{kind}" for kind in KINDS),
    "retry": ("retry.schedule", "retry.maxAttempts"),
    "timeouts": ("timeouts.connect", "timeouts.total"),
    "limits": ("limits.maxConcurrency", "limits.perSecond"),
    "ordering": ("ordering",),
    "batch": ("batch.maxMessages", "batch.maxWaitMs"),
    "transform": ("transform.expression",),
}


def _number(value: float | int | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _values(con: Connector) -> dict[str, str]:
    """The form's fields for the stored connector (empty where the default applies)."""
    public = orjson.loads(con.auth_public)
    values = {
        "name": con.name, "baseUrl": con.base_url, "routes.values": con.route_values,
        "routes.events": con.route_events, "routes.alarms": con.route_alarms,
        "authentication.type": con.auth_type,
        "retry.schedule": ", ".join(_number(v) for v in orjson.loads(con.retry_schedule))
        if con.retry_schedule else "",
        "retry.maxAttempts": _number(con.max_attempts),
        "timeouts.connect": _number(con.connect_timeout),
        "timeouts.total": _number(con.request_timeout),
        "limits.maxConcurrency": _number(con.max_concurrency),
        "limits.perSecond": _number(con.rate_limit),
        "ordering": con.ordering or "none",
        "batch.maxMessages": _number(con.batch_max_messages),
        "batch.maxWaitMs": _number(con.batch_max_wait_ms) if con.batch_max_messages else "",
        "transform.expression": con.transform_expression or "",
    }
    for name in AUTH_FIELDS.get(con.auth_type, ()):
        if name not in SECRET_FIELDS:
            values[f"authentication.{name}"] = str(public.get(name) or "")
    if con.type in TYPE_FIELDS and con.target_public:
        values.update(type_values_of({"type": con.type,
                                      "target": orjson.loads(con.target_public)}))
    return values


def _broker_changes(form: Form, con: Connector, initial: dict[str, str],
                    values: dict[str, str]) -> dict[str, Any] | None:
    """A broker connector's target when one of its fields changed or a password was typed
    (a password left empty keeps the stored one)."""
    kind = con.type or ""
    fields = TYPE_FIELDS.get(kind, ())
    shown = [f"{kind}.{name}" for name, _, _, _ in fields if name not in SECRET_TYPE_FIELDS]
    typed = any(form.raw(f"{kind}.{name}") for name in SECRET_TYPE_FIELDS
                if any(f[0] == name for f in fields))
    if typed or any(values.get(n, "") != initial.get(n, "") for n in shown):
        return target_from_form(form, kind)
    return None


def _header_names(con: Connector) -> list[str]:
    return list(orjson.loads(con.header_names)) if con.header_names else []


def _form_values(form: Form, auth_type: str, header_rows: int) -> dict[str, str]:
    """What was posted, as the form shows it again (never a secret)."""
    values = {name: form.text(name) for fields in SECTIONS.values() for name in fields}
    values.update(type_values_from_form(form))
    values["authentication.type"] = auth_type
    for name in AUTH_FIELDS.get(auth_type, ()):
        if name not in SECRET_FIELDS:
            values[f"authentication.{name}"] = form.text(f"authentication.{name}")
    for i in range(header_rows):
        values[f"headers.{i}.name"] = form.text(f"headers.{i}.name")
        if form.checked(f"headers.{i}.remove"):
            values[f"headers.{i}.remove"] = "on"
    return values


class _Parsed:
    """The PATCH body built from the form's changed parts, and the form's own errors (what
    a form cannot say in JSON: a number that is not one)."""

    def __init__(self) -> None:
        self.body: dict[str, Any] = {}
        self.errors = FieldErrors()

    def number(self, form: Form, name: str, *, whole: bool) -> float | int | None:
        text = form.text(name)
        if not text:
            return None
        try:
            value: float | int = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if whole or not math.isfinite(value):
                self.errors.add(name, "must be a whole number" if whole else "must be a number")
                return None
        return value


def _parse(form: Form, con: Connector, initial: dict[str, str], values: dict[str, str],
           header_rows: int) -> _Parsed:
    parsed = _Parsed()
    body = parsed.body
    changed = {part for part, names in SECTIONS.items()
               if any(values[n] != initial[n] for n in names)}
    if con.type in TYPE_FIELDS:  # a broker: no base URL, routes nor authentication here
        changed -= {"baseUrl", "routes"}
        target = _broker_changes(form, con, initial, values)
        if target is not None:
            body["target"] = target
    if "name" in changed:
        body["name"] = values["name"]
    if "baseUrl" in changed:
        body["baseUrl"] = values["baseUrl"]
    if "routes" in changed:
        body["routes"] = {kind: values[f"routes.{kind}"] for kind in KINDS}
    if "retry" in changed:
        text = values["retry.schedule"]
        schedule: list[float | int] | None = None
        if text:
            schedule = []
            for item in text.replace(";", ",").split(","):
                item = item.strip()
                try:
                    delay: float | int = int(item)
                except ValueError:
                    try:
                        delay = float(item)
                    except ValueError:
                        delay = math.nan
                if not math.isfinite(delay):
                    parsed.errors.add("retry.schedule",
                                      "give seconds separated by commas, e.g. 5, 60, 300")
                    break
                schedule.append(delay)
        attempts = parsed.number(form, "retry.maxAttempts", whole=True)
        body["retry"] = (None if schedule is None and attempts is None
                         else {"schedule": schedule, "maxAttempts": attempts})
    if "timeouts" in changed:
        connect = parsed.number(form, "timeouts.connect", whole=False)
        total = parsed.number(form, "timeouts.total", whole=False)
        body["timeouts"] = (None if connect is None and total is None
                            else {"connect": connect, "total": total})
    if "limits" in changed:
        concurrency = parsed.number(form, "limits.maxConcurrency", whole=True)
        rate = parsed.number(form, "limits.perSecond", whole=False)
        body["limits"] = (None if concurrency is None and rate is None
                          else {"maxConcurrency": concurrency, "perSecond": rate})
    if "ordering" in changed:
        body["ordering"] = values["ordering"]
    if "batch" in changed:
        size = parsed.number(form, "batch.maxMessages", whole=True)
        wait = parsed.number(form, "batch.maxWaitMs", whole=True)
        if size is None and wait is None:
            body["batch"] = None
        else:
            batch: dict[str, Any] = {} if size is None else {"maxMessages": size}
            if wait is not None:
                batch["maxWaitMs"] = wait
            body["batch"] = batch
    if "transform" in changed:
        body["transform"] = transform_of(values["transform.expression"])

    # Authentication: sent when its type or a shown field changed, or a credential was typed.
    auth_type = values["authentication.type"]
    auth = authentication_from_form(form, auth_type)
    typed_secret = any(auth.get(n) for n in AUTH_FIELDS.get(auth_type, ()) if n in SECRET_FIELDS)
    shown = [f"authentication.{n}" for n in AUTH_FIELDS.get(auth_type, ())
             if n not in SECRET_FIELDS]
    if con.type not in TYPE_FIELDS and (
            auth_type != con.auth_type or typed_secret
            or any(values[n] != initial.get(n, "") for n in shown)):
        body["authentication"] = auth

    # Static headers: the stored ones (kept, renamed, given a new value or removed) and new ones.
    stored = _header_names(con)
    headers: dict[str, str | None] = {}
    headers_changed = False
    for i in range(header_rows):
        name = values[f"headers.{i}.name"]
        value = form.raw(f"headers.{i}.value")
        was = stored[i] if i < len(stored) else ""
        if values.get(f"headers.{i}.remove") or (not name and not value):
            headers_changed |= bool(was)
            continue
        if not name:
            parsed.errors.add(f"headers.{i}.name", "give the header's name")
            continue
        if name in headers:
            parsed.errors.add(f"headers.{i}.name", "this header is given twice")
            continue
        if not value and name not in stored:
            # An empty value keeps a stored header's; a new header has none to keep.
            parsed.errors.add(f"headers.{i}.value", "give the header's value")
            continue
        headers[name] = value or None
        headers_changed |= name != was or bool(value)
    if headers_changed:
        body["headers"] = headers
    return parsed


def _edit_form(page: Page, con: Connector, *, values: dict[str, str], header_rows: int,
               errors: FieldErrors | None = None, status: int = 200) -> Response:
    settings = page.rt.settings
    defaults = {
        "retry.schedule": ", ".join(_number(v) for v in settings.retry_schedule),
        "retry.maxAttempts": str(1 + len(settings.retry_schedule)),
        "timeouts.connect": _number(settings.connect_timeout),
        "timeouts.total": _number(settings.request_timeout),
        "limits.maxConcurrency": str(settings.connector_max_concurrency),
        "limits.perSecond": "no limit",
        "batch.maxMessages": "off",
        "batch.maxWaitMs": "1000",
    }
    return render_page(
        page, "connector_edit.html", nav="connectors", status=status, connector_id=con.id,
        connector_name=con.name, values=values, errors=errors, defaults=defaults,
        auth_types=AUTH_TYPES, auth_fields=AUTH_FIELDS, secret_fields=SECRET_FIELDS,
        stored_auth_type=con.auth_type, stored_headers=_header_names(con),
        header_rows=header_rows, kinds=KINDS,
        broker_type=con.type if con.type in TYPE_FIELDS else None, type_fields=TYPE_FIELDS,
        secret_type_fields=SECRET_TYPE_FIELDS,
    )


def _rows(con: Connector) -> int:
    return min(len(_header_names(con)) + NEW_HEADER_ROWS, MAX_HEADERS + NEW_HEADER_ROWS)


@router.get(CONNECTORS + "/{connector_id}/edit")
@console_page
async def edit_connector(page: Page, connector_id: str) -> Response:
    con = await connectors.stored(page.rt, page.org_id, connector_id)
    values = _values(con)
    for i, name in enumerate(_header_names(con)):
        values[f"headers.{i}.name"] = name
    return _edit_form(page, con, values=values, header_rows=_rows(con))


def _where(errors: FieldErrors, sections: dict[str, tuple[str, ...]]) -> FieldErrors:
    """The API's error fields as the form's: a header's errors go with the headers; one of
    a whole part of the body (say "batch") to its first field."""
    for name in list(errors.fields):
        if name.startswith("headers."):
            errors.fields.setdefault("headers", errors.fields.pop(name))
        elif name in sections and sections[name][0] != name:
            errors.fields.setdefault(sections[name][0], errors.fields.pop(name))
    if "authentication" in errors.fields:  # an unknown type
        errors.fields["authentication.type"] = errors.fields.pop("authentication")
    return errors


@router.post(CONNECTORS + "/{connector_id}/edit")
@console_page
async def save_connector(page: Page, connector_id: str) -> Response:
    form = await posted_form(page)
    con = await connectors.stored(page.rt, page.org_id, connector_id)
    rows = _rows(con)
    auth_type = form.text("authentication.type") or "none"
    values = _form_values(form, auth_type, rows)
    parsed = _parse(form, con, _values(con), values, rows)
    errors = parsed.errors
    if not errors:
        try:
            await connectors.update_keeping_secrets(page.rt, page.org_id, connector_id,
                                                    parsed.body)
        except (ValidationError, ValidationFailed) as exc:
            errors = move_target_errors(_where(field_errors(exc), SECTIONS), con.type or "")
    if errors:
        names = {n for fields in SECTIONS.values() for n in fields} | set(values) | {
            f"authentication.{n}" for n in AUTH_FIELDS.get(auth_type, ())} | {
            f"headers.{i}.value" for i in range(rows)} | {
            f"{con.type}.{n}" for n, _, _, _ in TYPE_FIELDS.get(con.type or "", ())}
        return _edit_form(page, con, values=values, header_rows=rows,
                          errors=errors.only(*names, "headers"), status=422)
    return redirect(f"{CONNECTORS}/{connector_id}?done=connector-saved")
