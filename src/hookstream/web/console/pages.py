"""The console's sign-in and sign-out pages, and the rendering every page shares.

Every page goes out with ``security_headers``. The Referrer-Policy is ``same-origin``, not
``no-referrer``: under ``no-referrer`` browsers send ``Origin: null`` on the posts of our own
forms (Fetch, "append a request Origin header"), which the Origin check would have to refuse
or wave through; ``same-origin`` still sends nothing to any other site.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Query, Request
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.responses import HTMLResponse, RedirectResponse, Response

from hookstream.security.passwords import MAX_LENGTH, dummy_hash, verify_password
from hookstream.services.runtime import Runtime
from hookstream.services.users import EMAIL_MAX, normalize_email
from hookstream.storage.repository import Repository
from hookstream.web.console.sessions import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CsrfRejected,
    check_csrf,
    check_origin,
    current_user,
    end_session,
    new_token,
    same_token,
    secure_cookies,
    start_session,
    well_formed,
)
from hookstream.web.forms import FormError, first, read_form

router = APIRouter(include_in_schema=False)

HOME = "/console"
SIGN_IN = "/console/sign-in"
# The sign-in form's CSRF cookie outlives any reasonable wait on the form.
CSRF_COOKIE_SECONDS = 2 * 3600
FORM_LIMIT = 16 * 1024
BAD_CREDENTIALS = "Wrong email or password."

templates = Environment(
    loader=PackageLoader("hookstream.web.console", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def security_headers(form_action: Iterable[str] | None = ()) -> dict[str, str]:
    """The headers of every console and consent page.

    ``form_action`` adds sources to the CSP's form-action (None leaves the directive out):
    Chrome and Safari check form-action against every redirect that follows a form's post, so
    the consent page must name the client's redirect origin (see api.oauth2)."""
    policy = "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
    if form_action is not None:
        policy += "; form-action " + " ".join(("'self'", *form_action))
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }


def render(
    template: str, *, status: int = 200, form_action: Iterable[str] | None = (),
    headers: dict[str, str] | None = None, **context: Any,
) -> HTMLResponse:
    """A page from ``templates/`` with the security headers."""
    html = templates.get_template(template).render(**context)
    return HTMLResponse(
        html, status_code=status, headers={**security_headers(form_action), **(headers or {})}
    )


def message_page(
    title: str, message: str, *, status: int, link: str | None = None, link_text: str = "",
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A page that only says something (errors, refusals)."""
    return render("message.html", status=status, headers=headers, title=title,
                  message=message, link=link, link_text=link_text)


def redirect(location: str) -> Response:
    """303 See Other to ``location`` (a GET), with the security headers."""
    return RedirectResponse(location, status_code=303, headers=security_headers())


def safe_next(value: str | None) -> str:
    """``value`` when it is a path on this site, else the console's home.

    Only "/" followed by something other than "/" or "\\" (browsers read "//x" and "/\\x" as
    another host), printable ASCII without spaces (browsers drop tabs and newlines, which
    could make "/\\t/x" into "//x"), no scheme and no host."""
    if (
        not value
        or len(value) > 4096
        or not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or "\\" in value
        or not all("\x21" <= ch <= "\x7e" for ch in value)
    ):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return HOME
    return value


def sign_in_url(next_path: str) -> str:
    """The sign-in page, returning to ``next_path`` afterwards."""
    return f"{SIGN_IN}?next={quote(next_path, safe='')}"


async def csrf_rejected(request: Request, exc: Exception) -> Response:
    """CsrfRejected from a console or consent POST, as a page (registered in app.py)."""
    message = exc.message if isinstance(exc, CsrfRejected) else "the form expired"
    return message_page(
        "This form cannot be used", message[:1].upper() + message[1:] + ".", status=403,
        link=HOME, link_text="Go to the console",
    )


class SignInThrottle:
    """Failed sign-ins per email within a sliding window; past ``limit`` of them the email is
    refused (429) until the oldest leaves the window.

    Kept in this process's memory: with several API processes each counts on its own, and a
    restart forgets. That still stops guessing passwords at any useful rate."""

    def __init__(self, limit: int = 5, window: float = 15 * 60.0, max_emails: int = 10_000):
        self.limit = limit
        self.window = window
        self.max_emails = max_emails
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, email: str, now: float) -> deque[float]:
        failures = self._failures.get(email, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def retry_after(self, email: str, now: float) -> int:
        """Seconds until ``email`` may try again; 0 when it may now."""
        failures = self._recent(email, now)
        if len(failures) < self.limit:
            return 0
        return max(1, int(failures[0] + self.window - now) + 1)

    def failed(self, email: str, now: float) -> None:
        failures = self._recent(email, now)
        failures.append(now)
        self._failures[email] = failures
        self._failures.move_to_end(email)
        while len(self._failures) > self.max_emails:  # forget the longest-quiet emails
            self._failures.popitem(last=False)

    def succeeded(self, email: str) -> None:
        self._failures.pop(email, None)


def _throttle(request: Request) -> SignInThrottle:
    state = request.app.state
    throttle: SignInThrottle | None = getattr(state, "console_sign_in_throttle", None)
    if throttle is None:
        throttle = state.console_sign_in_throttle = SignInThrottle()
    return throttle


def _sign_in_form(
    request: Request, next_path: str, *, email: str = "", error: str | None = None,
    status: int = 200,
) -> Response:
    token = request.cookies.get(CSRF_COOKIE)
    if not well_formed(token):
        token = new_token()
    response = render("sign_in.html", status=status, csrf_token=token, next=next_path,
                      email=email, error=error)
    response.set_cookie(
        CSRF_COOKIE, token or "", max_age=CSRF_COOKIE_SECONDS, path=HOME,
        secure=secure_cookies(request), httponly=True, samesite="strict",
    )
    return response


async def _check_credentials(rt: Runtime, email: str, password: str) -> Any:
    """The user row when ``password`` is theirs, else None, in about the same time whether or
    not the email exists."""
    row = None
    if 0 < len(email) <= EMAIL_MAX and email.isprintable():
        async with rt.db.read() as conn:
            row = await Repository(conn).user_by_email(email)
    usable = row is not None and row.disabled_at is None
    stored = row.password_hash if row is not None and usable else dummy_hash()
    # argon2 takes ~0.1 s of CPU (and releases the GIL): off the event loop.
    ok = await asyncio.to_thread(verify_password, stored, password[: MAX_LENGTH + 1])
    return row if ok and usable else None


@router.get(SIGN_IN)
async def sign_in_page(
    request: Request, next_path: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    target = safe_next(next_path)
    if await current_user(request) is not None:
        return redirect(target)
    return _sign_in_form(request, target)


@router.post(SIGN_IN)
async def sign_in(request: Request) -> Response:
    check_origin(request)
    try:
        fields = await read_form(request, limit=FORM_LIMIT)
    except FormError:
        fields = {}
    target = safe_next(first(fields, "next"))
    if not same_token(request.cookies.get(CSRF_COOKIE) or "", first(fields, CSRF_FIELD)):
        return message_page(
            "The form expired", "The sign-in form expired. Reload the page and sign in again.",
            status=403, link=sign_in_url(target), link_text="Reload the sign-in page",
        )
    email_given = (first(fields, "email") or "").strip()
    email = normalize_email(email_given)
    password = first(fields, "password") or ""
    throttle = _throttle(request)
    wait = throttle.retry_after(email, time.monotonic())
    if wait:
        minutes = max(1, round(wait / 60))
        return message_page(
            "Too many attempts",
            f"Too many failed sign-ins for this email. Try again in about {minutes} "
            f"minute{'s' if minutes != 1 else ''}.",
            status=429, headers={"Retry-After": str(wait)}, link=sign_in_url(target),
            link_text="Back to the sign-in page",
        )
    rt: Runtime = request.app.state.runtime
    user = await _check_credentials(rt, email, password)
    if user is None:
        throttle.failed(email, time.monotonic())
        # The same words for an unknown email and a wrong password.
        return _sign_in_form(request, target, email=email_given, error=BAD_CREDENTIALS,
                             status=400)
    throttle.succeeded(email)
    response = redirect(target)
    await start_session(request, response, str(user.id))
    response.delete_cookie(CSRF_COOKIE, path=HOME, secure=secure_cookies(request),
                           httponly=True, samesite="strict")
    return response


@router.post("/console/sign-out")
async def sign_out(request: Request) -> Response:
    check_origin(request)
    user = await current_user(request)
    if user is None:
        return redirect(SIGN_IN)
    try:
        fields = await read_form(request, limit=FORM_LIMIT)
    except FormError:
        fields = {}
    check_csrf(user, first(fields, CSRF_FIELD))
    response = redirect(SIGN_IN)
    await end_session(request, response)
    return response
