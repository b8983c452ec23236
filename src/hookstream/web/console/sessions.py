"""Console sessions: who is signed in, their CSRF token, the Origin check, the cookies.

A session is a random token in the ``hookstream_session`` cookie; the database keeps only its
SHA-256 hash (``console_sessions``), with a CSRF token of its own that every form of a signed-in
page carries in a hidden field. Pages use ``current_user`` to know who is there,
``check_origin`` and ``check_csrf`` on every POST.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from hookstream.errors import Forbidden
from hookstream.ids import hash_key, now_ms
from hookstream.services.runtime import Runtime
from hookstream.storage.repository import Repository

SESSION_COOKIE = "hookstream_session"
# The sign-in form's double-submit cookie (there is no session yet to hold a CSRF token).
CSRF_COOKIE = "hookstream_csrf"
CSRF_FIELD = "csrf_token"
# secrets.token_urlsafe(32): 43 characters. Cookies of any other shape are not looked up.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")


@dataclass(frozen=True)
class ConsoleUser:
    user_id: str
    org_id: str
    email: str
    csrf_token: str


class CsrfRejected(Forbidden):
    """A console or consent form that did not come from our own page (answered 403)."""

    code = "csrf_failed"


def new_token() -> str:
    """A random token for a session or a CSRF check (256 bits)."""
    return secrets.token_urlsafe(32)


def well_formed(token: str | None) -> bool:
    """Whether ``token`` looks like one of ours (others are not looked up or compared)."""
    return token is not None and _TOKEN.fullmatch(token) is not None


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def current_user(request: Request) -> ConsoleUser | None:
    """The user signed in with this request's session cookie; None when there is none (or it
    expired, was signed out, or the user is disabled)."""
    cached: ConsoleUser | None | bool = getattr(request.state, "console_user", False)
    if cached is not False:
        return cached  # type: ignore[return-value]
    user = None
    raw = request.cookies.get(SESSION_COOKIE)
    if well_formed(raw):
        assert raw is not None
        async with _runtime(request).db.read() as conn:
            row = await Repository(conn).console_session_by_hash(hash_key(raw), now_ms())
        if row is not None:
            user = ConsoleUser(str(row.user_id), str(row.org_id), str(row.email),
                               str(row.csrf_token))
    request.state.console_user = user
    return user


def same_token(expected: str, submitted: str | None) -> bool:
    """``submitted == expected`` in constant time (False when nothing was submitted)."""
    if not submitted or not expected:
        return False
    return hmac.compare_digest(submitted.encode(), expected.encode())


def check_csrf(user: ConsoleUser, submitted: str | None) -> None:
    """CsrfRejected (403) unless ``submitted`` is the session's CSRF token."""
    if not same_token(user.csrf_token, submitted):
        raise CsrfRejected("the form expired; reload the page and try again")


_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _normal_origin(scheme: str, host: str) -> str:
    scheme, host = scheme.lower(), host.lower()
    return f"{scheme}://{host.removesuffix(_DEFAULT_PORTS.get(scheme, ' '))}"


def own_origin(request: Request) -> str:
    """This request's origin as a browser names it: scheme://host[:port]."""
    return _normal_origin(request.url.scheme, request.url.netloc)


def check_origin(request: Request) -> None:
    """CsrfRejected (403) when the request names an Origin that is not our own.

    A missing Origin passes (older browsers send none; the CSRF token still has to match).
    "null" is refused: our pages send Referrer-Policy: same-origin, so browsers name our
    origin on the posts of our own forms."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    scheme, sep, host = origin.partition("://")
    if not sep or _normal_origin(scheme, host) != own_origin(request):
        raise CsrfRejected("this form was sent from another site")


def secure_cookies(request: Request) -> bool:
    """Whether cookies get the Secure flag: as configured, else when the request came over
    https."""
    configured = _runtime(request).settings.console_secure_cookies
    return request.url.scheme == "https" if configured is None else configured


async def start_session(request: Request, response: Response, user_id: str) -> None:
    """Sign ``user_id`` in: a new session row and its cookie on ``response``."""
    rt = _runtime(request)
    token, now = new_token(), now_ms()
    seconds = rt.settings.console_session_seconds
    previous = request.cookies.get(SESSION_COOKIE)
    async with rt.db.write() as conn:
        repo = Repository(conn)
        if well_formed(previous):
            assert previous is not None
            await repo.delete_console_session(hash_key(previous))
        await repo.insert_console_session(
            token_hash=hash_key(token), user_id=user_id, csrf_token=new_token(),
            created_at=now, expires_at=now + seconds * 1000,
        )
    response.set_cookie(
        SESSION_COOKIE, token, max_age=seconds, path="/", secure=secure_cookies(request),
        httponly=True,
        # Lax, not Strict: a third-party app sends the browser to /oauth2/authorize with a
        # top-level navigation from its own site, and the session must come along.
        samesite="lax",
    )


async def end_session(request: Request, response: Response) -> None:
    """Sign out: delete the session row and the cookie."""
    raw = request.cookies.get(SESSION_COOKIE)
    if well_formed(raw):
        assert raw is not None
        async with _runtime(request).db.write() as conn:
            await Repository(conn).delete_console_session(hash_key(raw))
    request.state.console_user = None
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=secure_cookies(request), httponly=True, samesite="lax"
    )
