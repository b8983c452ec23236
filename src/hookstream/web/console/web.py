"""What every signed-in console page shares: the page decorator, forms, errors, rendering.

A console page is a route wrapped in ``console_page``: it sends a visitor without a session to
the sign-in page, sets the audit actor to ``user:<email>``, and turns the management API's
errors into pages (NotFound: a 404 page; another organization's ids are just unknown ids).
Pages call the management API's route functions directly, with the user's organization, so
validation, limits, target checks and the audit log are the API's own. Every POST reads its
form with ``posted_form``, which checks the Origin and the session's CSRF token first.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Concatenate, ParamSpec
from urllib.parse import urlsplit

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from hookstream.errors import NotFound, Refused
from hookstream.pipeline.message import Kind
from hookstream.services.audit import set_actor
from hookstream.services.runtime import Runtime
from hookstream.storage.repository import Repository
from hookstream.web.console.pages import (
    HOME,
    redirect,
    render,
    security_headers,
    sign_in_url,
    templates,
)
from hookstream.web.console.sessions import (
    CSRF_FIELD,
    ConsoleUser,
    CsrfRejected,
    check_csrf,
    check_origin,
    current_user,
    own_origin,
)
from hookstream.web.forms import FormError, first, read_form
from hookstream.web.params import reject_nul_params
from hookstream.web.statuses import status_for

router = APIRouter(include_in_schema=False)

P = ParamSpec("P")
# A trigger form lists every gateway of the organization: room for a thousand of them.
MAX_FORM_FIELDS = 2100
KINDS: tuple[str, ...] = typing.get_args(Kind)


@dataclass(frozen=True)
class Page:
    """Who is looking, at what: what every signed-in template needs."""

    request: Request
    user: ConsoleUser
    org_name: str

    @property
    def rt(self) -> Runtime:
        rt: Runtime = self.request.app.state.runtime
        return rt

    @property
    def org_id(self) -> str:
        return self.user.org_id


def console_page(
    handler: Callable[Concatenate[Page, P], Awaitable[Response]],
) -> Callable[Concatenate[Request, P], Awaitable[Response]]:
    """Wrap a page handler: sign-in, audit actor, and API errors shown as pages."""

    @functools.wraps(handler)
    async def wrapper(request: Request, *args: P.args, **kwargs: P.kwargs) -> Response:
        user = await current_user(request)
        if user is None:
            return redirect(sign_in_url(_come_back_to(request)))
        set_actor(f"user:{user.email}")
        async with request.app.state.runtime.db.read() as conn:
            org = await Repository(conn).get_organization(user.org_id)
        page = Page(request, user, str(org.name) if org is not None else "")
        try:
            reject_nul_params(request)
            return await handler(page, *args, **kwargs)
        except CsrfRejected:
            raise
        except NotFound:
            return render_page(page, "console_message.html", nav="", status=404,
                               title="Not found",
                               message="There is nothing here, or it was deleted.")
        except Refused as exc:
            return render_page(page, "console_message.html", nav="", status=status_for(exc),
                               title="That did not work", message=sentence(exc.message))

    # FastAPI reads the signature: the route takes the request where the handler takes a page.
    wrapper.__signature__ = _request_signature(handler)  # type: ignore[attr-defined]
    return typing.cast(Callable[Concatenate[Request, P], Awaitable[Response]], wrapper)


def _come_back_to(request: Request) -> str:
    """Where to go after signing in: this page, or for a form (whose session ended) the page
    it was posted from, when that is one of ours."""
    if request.method == "GET":
        return request.url.path + (f"?{request.url.query}" if request.url.query else "")
    parts = urlsplit(request.headers.get("referer", ""))
    if f"{parts.scheme}://{parts.netloc}" == own_origin(request) and parts.path:
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return HOME


def _request_signature(handler: Callable[..., Any]) -> inspect.Signature:
    """``handler``'s signature with its first parameter (the page) replaced by the request,
    annotations resolved in the handler's own module."""
    hints = typing.get_type_hints(handler, include_extras=True)
    params = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in list(inspect.signature(handler).parameters.values())[1:]
    ]
    request = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=Request)
    return inspect.Signature([request, *params], return_annotation=Response)


def render_page(page: Page, template: str, *, nav: str, status: int = 200,
                **context: Any) -> Response:
    """A signed-in page: the layout's navigation, the user and the CSRF token for its forms."""
    query = page.request.query_params
    notice = NOTICES.get(query.get("done", ""))
    if notice and "{n}" in notice:
        count = query.get("n", "")
        ok = count.isdigit() and len(count) < 10
        notice = notice.format(n=int(count), ies="y" if count == "1" else "ies") if ok else None
    context.setdefault("notice", notice)
    return render(template, status=status, user=page.user, org_name=page.org_name,
                  csrf_token=page.user.csrf_token, nav=nav, static=static_url,
                  plugin_nav=[list(link) for plugin in page.rt.plugins
                              for link in plugin.console_links], **context)


def sentence(message: str) -> str:
    """An API message as a sentence: capitalized, with a full stop."""
    message = message.strip()
    if not message:
        return message
    first_word = message.split(" ", 1)[0].rstrip(":,;.")
    if first_word.isalpha() and first_word.islower():  # not a field name such as "baseUrl"
        message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


# What a redirect after a successful POST says on the next page (?done=...): fixed texts,
# so nothing from the URL is ever echoed into the page.
NOTICES = {
    "trigger-created": "The trigger was created.",
    "trigger-deleted": "The trigger was removed.",
    "switched-on": "The connector is on: matching messages are delivered.",
    "switched-off": "The connector is off: new messages are not routed to it, queued "
                    "deliveries are held.",
    "connector-saved": "The connector was saved; workers use the new configuration within a "
                       "few seconds.",
    "connector-deleted": "The connector was deleted; its queued deliveries were cancelled.",
    "gateway-deleted": "The gateway was deleted; its ingest token no longer works.",
    "replayed": "Replayed: this is the new delivery, with the same webhook-id.",
    "replayed-range": "Replayed {n} deliver{ies}, listed at the top.",
    "cancelled": "The delivery was cancelled.",
    "plant-created": "The plant was created.",
    "plant-deleted": "The plant, its modules and its subscriptions were deleted.",
    "module-created": "The module was added.",
    "module-deleted": "The module was removed.",
    "client-deleted": "The OAuth2 client was deleted; its tokens no longer work.",
    "key-deleted": "The subscription key was revoked.",
}


# --- forms ---------------------------------------------------------------------------------

class Form:
    """A posted form's fields."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = fields

    def text(self, name: str) -> str:
        """The field, trimmed ('' when absent)."""
        return (first(self.fields, name) or "").strip()

    def raw(self, name: str) -> str:
        """The field as typed (secrets and passwords keep their spaces)."""
        return first(self.fields, name) or ""

    def values(self, name: str) -> list[str]:
        return [v.strip() for v in self.fields.get(name, []) if v.strip()]

    def checked(self, name: str) -> bool:
        return name in self.fields


async def posted_form(page: Page) -> Form:
    """The POST's form, once its Origin and CSRF token are known to be ours (else 403)."""
    request = page.request
    check_origin(request)
    try:
        fields = await read_form(request, limit=page.rt.settings.api_max_body_bytes,
                                 max_fields=MAX_FORM_FIELDS)
    except FormError:
        fields = {}
    check_csrf(page.user, first(fields, CSRF_FIELD))
    return Form(fields)


@dataclass
class FieldErrors:
    """Errors to show next to the fields that caused them, and those of no one field."""

    fields: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fields or self.general)

    def only(self, *names: str) -> FieldErrors:
        """These errors with those of fields not on the form moved to the general ones."""
        for name in [n for n in self.fields if n not in names]:
            self.general.append(self.fields.pop(name))
        return self

    def add(self, name: str, message: str) -> None:
        if name:
            # Under its field a message need not name it ("baseUrl must be ..." -> "Must be").
            last = name.rpartition(".")[2]
            for prefix in (f"{last} ", f"'{last}' ", f"'{last}': "):
                if message.startswith(prefix) and len(message) > len(prefix):
                    message = message[len(prefix)].upper() + message[len(prefix) + 1:]
                    break
            self.fields.setdefault(name, sentence(message))
        else:
            self.general.append(sentence(message))


# Where the API's authentication fields are on the console's forms: the discriminated union
# adds the type to pydantic's error locations ("authentication.basic.username").
_AUTH_TYPES = {"none", "basic", "bearer", "api_key", "oauth2_client_credentials"}


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    if len(parts) >= 2 and parts[0] == "authentication" and parts[1] in _AUTH_TYPES:
        parts = [parts[0], *parts[2:]]
    return ".".join(parts)


def _pydantic_message(error: Any) -> str:
    kind = error.get("type", "")
    if kind == "missing" or (kind == "string_too_short" and error.get("input") == ""):
        return "required"
    return str(error.get("msg", "not valid")).removeprefix("Value error, ")


def field_errors(exc: ValidationError | Refused) -> FieldErrors:
    """The errors of a model built from a form, or of the API's checks, by field."""
    errors = FieldErrors()
    if isinstance(exc, ValidationError):
        for error in exc.errors():
            errors.add(_field_name(tuple(error.get("loc", ()))), _pydantic_message(error))
        return errors
    details = exc.details if isinstance(exc.details, list) else []
    named = [d for d in details if isinstance(d, dict) and d.get("field")]
    for detail in named:
        errors.add(str(detail["field"]), str(detail.get("message", exc.message)))
    if not named:
        errors.add("", exc.message)
    return errors


# --- times -----------------------------------------------------------------------------------

def when(value: int | str | None) -> str:
    """A time (epoch ms or RFC 3339) as the console shows it, in UTC."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        moment = datetime.fromtimestamp(value / 1000, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def filter_time(value: str) -> str | None:
    """A filter's time field as RFC 3339: a browser's datetime-local value is read as UTC."""
    value = value.strip()
    if not value:
        return None
    if "T" in value and len(value) in (16, 19) and value[-1].isdigit():
        return value + (":00Z" if len(value) == 16 else "Z")
    return value


templates.filters["when"] = when


# --- static files ------------------------------------------------------------------------------

_STATIC_TYPES = {"console.css": "text/css; charset=utf-8",
                 "console.js": "text/javascript; charset=utf-8"}


@functools.cache
def _static(name: str) -> tuple[bytes, str]:
    data = resources.files("hookstream.web.console").joinpath("static", name).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:12]


def static_url(name: str) -> str:
    """The address of a static file, with its content's hash so a new version is fetched."""
    return f"/console/static/{name}?v={_static(name)[1]}"


@router.get("/console/static/{name}")
async def static_file(name: str) -> Response:
    kind = _STATIC_TYPES.get(name)
    if kind is None:
        return Response("not found", status_code=404, media_type="text/plain")
    data, _ = _static(name)
    headers = {**security_headers(), "Cache-Control": "public, max-age=86400"}
    return Response(data, media_type=kind, headers=headers)


def secret_page(
    page: Page, *, nav: str, title: str, lead: str, secret: str | None, label: str = "",
    example: str | None = None, extra: list[tuple[str, str]] | None = None, next_url: str,
    next_text: str, other_url: str | None = None, other_text: str = "",
) -> Response:
    """A page that shows a new secret this once, with a copy button (never stored in a URL:
    it is the answer to the POST that made it, and pages are Cache-Control: no-store)."""
    return render_page(
        page, "secret_shown.html", nav=nav, title=title, lead=lead, secret=secret, label=label,
        example=example, extra=extra or [], next_url=next_url, next_text=next_text,
        other_url=other_url, other_text=other_text,
    )
