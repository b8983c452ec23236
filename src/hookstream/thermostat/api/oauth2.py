"""OAuth2 for the thermostat cloud: /oauth2/authorize (consent), /oauth2/token, /oauth2/revoke.

Authlib (``thermostat.oauth.server``) does the protocol; these routes read the request,
check what Authlib would choke on (bytes that are not parameters, a malformed Basic header),
sign the user in through the console when needed, and render the consent page.

Errors: the token and revocation endpoints answer RFC 6749 5.2 JSON
(``{"error","error_description"}``, 400, or 401 for client authentication); the authorization
endpoint shows a page when the client or redirect URI cannot be trusted, and otherwise sends the
browser back to the client's redirect URI with ``error=...`` (RFC 6749 4.1.2.1).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import OAuth2Error
from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from hookstream.services.runtime import Runtime
from hookstream.storage.repository import Repository
from hookstream.thermostat.oauth import SCOPES
from hookstream.thermostat.oauth.server import AuthorizationServer, GrantUser, Params
from hookstream.thermostat.oauth.server import Request as OAuthRequest
from hookstream.web.api.responses import JSON
from hookstream.web.console.pages import (
    message_page,
    redirect,
    render,
    security_headers,
    sign_in_url,
)
from hookstream.web.console.sessions import (
    CSRF_FIELD,
    check_csrf,
    check_origin,
    current_user,
)
from hookstream.web.forms import FORM_TYPE, FormError, first, read_form

log = logging.getLogger(__name__)

router = APIRouter(prefix="/oauth2", tags=["oauth2"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def authorization_server(request: Request) -> AuthorizationServer:
    """This application's authorization server (made on first use)."""
    state = request.app.state
    server: AuthorizationServer | None = getattr(state, "oauth_server", None)
    if server is None:
        rt: Runtime = state.runtime
        server = state.oauth_server = AuthorizationServer(rt.db, rt.settings)
    return server


def oauth_error(status: int, error: str, description: str,
                headers: Mapping[str, str] | None = None) -> JSON:
    """An RFC 6749 5.2 error body."""
    return JSON({"error": error, "error_description": description}, status_code=status,
                headers={**_NO_STORE, **(headers or {})})


def _bad_parameters(params: Params, *, once: bool) -> str | None:
    """Why ``params`` cannot be OAuth2 parameters (RFC 6749 A: printable ASCII; 3.1 and 3.2:
    none repeated); None when they can."""
    for name, values in params.items():
        for text in (name, *values):
            if not all(" " <= ch <= "~" for ch in text):
                shown = f"'{name}'" if all(" " <= ch <= "~" for ch in name) else "a parameter"
                return f"{shown} holds characters other than printable ASCII"
        if once and len(values) > 1:
            return f"'{name}' was sent more than once"
    return None


def _basic_header_problem(request: Request) -> Response | None:
    """401 for an Authorization: Basic header that Authlib could not decode (it would fail
    with an error of its own instead of answering invalid_client)."""
    scheme, _, credentials = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip()).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        decoded = None
    if decoded is None or not decoded.isprintable():
        return oauth_error(401, "invalid_client", "the Basic credentials cannot be decoded",
                           {"WWW-Authenticate": 'Basic realm="hookstream"'})
    return None


async def _form_endpoint(request: Request, endpoint: str) -> Response:
    """The token or revocation endpoint: read the form, then let Authlib answer."""
    try:
        fields = await read_form(request)
    except FormError as exc:
        return oauth_error(400, "invalid_request", str(exc))
    problem = _bad_parameters(fields, once=True)
    if problem is not None:
        return oauth_error(400, "invalid_request", problem)
    refused = _basic_header_problem(request)
    if refused is not None:
        return refused
    server = authorization_server(request)
    try:
        oauth_request = OAuthRequest("POST", str(request.url), request.headers, query={},
                                     form=fields, params=fields)
        if endpoint == "token":
            response: Response = await server.call(server.create_token_response, oauth_request)
        else:
            response = await server.call(server.create_endpoint_response, endpoint,
                                         oauth_request)
    except OAuth2Error as error:  # raised before Authlib's own handling (insecure transport)
        response = server.handle_error_response(None, error)
    except ValueError:  # Authlib refuses to put some bytes of a parameter in its message
        log.debug("Authlib could not describe an error", exc_info=True)
        response = oauth_error(400, "invalid_request", "the request is malformed")
    response.headers.update(_NO_STORE)
    return response


class OAuthError(BaseModel):
    """An RFC 6749 5.2 error, as the token and revocation endpoints answer it."""

    error: str
    error_description: str | None = None
    error_uri: str | None = None


class OAuthTokens(BaseModel):
    """The token endpoint's answer (RFC 6749 5.1)."""

    access_token: str
    token_type: str
    expires_in: int | None = None
    refresh_token: str | None = None
    scope: str | None = None


_TOKEN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The tokens (`access_token`, `token_type`, `expires_in`, "
                         "`refresh_token`, `scope`).", "model": OAuthTokens},
    400: {"description": "RFC 6749 error: `invalid_request`, `invalid_grant`, "
                         "`invalid_scope`, `unsupported_grant_type`...", "model": OAuthError},
    401: {"description": "`invalid_client`: the client could not authenticate.",
          "model": OAuthError},
}


def _form_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {FORM_TYPE: {"schema": {
        "type": "object", "properties": properties, "required": required}}}}}


_STR = {"type": "string"}


@router.post(
    "/token", operation_id="requestToken",
    summary="Exchange an authorization code, or a refresh token, for tokens",
    description=(
        "RFC 6749 token endpoint. `grant_type=authorization_code` (`code`, `redirect_uri` when "
        "the authorization request had one, `code_verifier` for PKCE, required from public "
        "clients) or `grant_type=refresh_token` (`refresh_token`, `scope` to narrow it). "
        "Confidential clients authenticate with HTTP Basic (`client_secret_basic`) or "
        "`client_id` and `client_secret` in the body; public clients send `client_id` only. "
        "Every refresh answers a new refresh token and spends the old one; a spent refresh "
        "token presented again revokes every token of its grant."
    ),
    responses=_TOKEN_RESPONSES,
    openapi_extra=_form_body({
        "grant_type": {"type": "string", "enum": ["authorization_code", "refresh_token"]},
        "code": _STR, "redirect_uri": _STR, "code_verifier": _STR, "refresh_token": _STR,
        "scope": _STR, "client_id": _STR, "client_secret": _STR,
    }, ["grant_type"]),
)
async def token(request: Request) -> Response:
    return await _form_endpoint(request, "token")


@router.post(
    "/revoke", operation_id="revokeToken",
    summary="Revoke a token (RFC 7009)",
    description=(
        "Revokes the grant the token belongs to: its access and refresh tokens and every "
        "token refreshed from them. The client authenticates as at the token endpoint. "
        "Answers 200 also for a token that is unknown or already revoked."
    ),
    responses={200: {"description": "Revoked (or nothing to revoke)."},
               400: _TOKEN_RESPONSES[400], 401: _TOKEN_RESPONSES[401]},
    openapi_extra=_form_body({
        "token": _STR,
        "token_type_hint": {"type": "string", "enum": ["access_token", "refresh_token"]},
        "client_id": _STR, "client_secret": _STR,
    }, ["token"]),
)
async def revoke(request: Request) -> Response:
    return await _form_endpoint(request, "revocation")


@router.api_route("/token", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
@router.api_route("/revoke", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def wrong_method(request: Request) -> Response:
    return oauth_error(405, "invalid_request", "use POST with a form body", {"Allow": "POST"})


# --- the authorization endpoint ----------------------------------------------------------

def _query(request: Request) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    return params


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _form_action_source(redirect_uri: str) -> str | None:
    """The CSP source that lets the consent form's redirect reach ``redirect_uri``."""
    parts = urlsplit(redirect_uri)
    scheme = parts.scheme.lower()
    if not _SCHEME.fullmatch(scheme):
        return None
    if scheme not in ("http", "https"):
        return f"{scheme}:"  # a native app's private-use scheme (RFC 8252 7.1)
    host = parts.netloc.rpartition("@")[2]
    return f"{scheme}://{host}" if _HOST.fullmatch(host) else None


def _authorize_error(error: OAuth2Error) -> Response:
    """Back to the client with error=... when its redirect URI is known good, else a page."""
    if error.redirect_uri:
        status, _, headers = error()
        return Response(status_code=status, headers={**dict(headers), **security_headers()})
    if error.error == "invalid_client":
        # Also what a user of another organization sees for a client that exists.
        return message_page(
            "Unknown app",
            "The app that sent you here is unknown to hookstream, so it cannot be allowed to "
            "use your thermostats. Go back to the app and try again, or tell its makers.",
            status=400,
        )
    return message_page(
        "This request cannot be used",
        f"The app that sent you here made a request hookstream cannot use: "
        f"{error.description or error.error}",
        status=400,
    )


@router.get(
    "/authorize", operation_id="startAuthorization",
    summary="Start an authorization (browser): sign-in and consent page",
    description=(
        "RFC 6749 authorization endpoint for the code grant: `response_type=code`, "
        "`client_id`, `redirect_uri` (exactly as registered; may be left out when only one "
        "is), `scope` (`comfort.read`, `comfort.write`, space separated; default "
        "`comfort.read`), `state`, and PKCE `code_challenge` with "
        "`code_challenge_method=S256` (required from public clients; plain is not "
        "accepted). Shows the sign-in page, then the consent page; the answer comes back to "
        "`redirect_uri` with `code` and `state`, or `error`."
    ),
    responses={200: {"description": "The consent page (HTML)",
                     "content": {"text/html": {}}},
               303: {"description": "To the sign-in page"},
               302: {"description": "Back to the client's redirect URI with `error`"},
               400: {"description": "An error page: unknown client or redirect URI"}},
    openapi_extra={"parameters": [
        {"name": name, "in": "query", "required": name in ("response_type", "client_id"),
         "schema": {"type": "string"}}
        for name in ("response_type", "client_id", "redirect_uri", "scope", "state",
                     "code_challenge", "code_challenge_method")
    ]},
)
async def authorize(request: Request) -> Response:
    query = _query(request)
    problem = _bad_parameters(query, once=False)
    if problem is not None:
        return message_page("This request cannot be used",
                            f"The app that sent you here made a request hookstream cannot "
                            f"use: {problem}.", status=400)
    user = await current_user(request)
    server = authorization_server(request)
    try:
        oauth_request = OAuthRequest("GET", str(request.url), request.headers, query=query,
                                     form={}, params=query)
        # Validated before anything else, signed in or not (RFC 6749 4.1.2.1).
        grant = await server.call(server.get_consent_grant, oauth_request, None,
                                  org_id=user.org_id if user else None)
    except OAuth2Error as error:
        return _authorize_error(error)
    except ValueError:
        log.debug("Authlib could not describe an error", exc_info=True)
        return message_page("This request cannot be used",
                            "The app that sent you here made a malformed request.", status=400)
    if user is None:
        return redirect(sign_in_url(_here(request)))
    rt: Runtime = request.app.state.runtime
    async with rt.db.read() as conn:
        org = await Repository(conn).get_organization(user.org_id)
    redirect_uri: str = grant.redirect_uri
    source = _form_action_source(redirect_uri)
    return render(
        "consent.html",
        form_action=None if source is None else (source,),
        client_name=grant.client.name,
        org_name=org.name if org is not None else user.org_id,
        scopes=[SCOPES[s] for s in str(grant.request.scope).split() if s in SCOPES],
        email=user.email,
        redirect_to=urlsplit(redirect_uri).netloc or redirect_uri,
        action=_here(request),
        csrf_token=user.csrf_token,
    )


def _decide(server: AuthorizationServer, oauth_request: OAuthRequest,
            grant_user: GrantUser | None) -> Response:
    # Validated again: the query came back from the browser, not from our page's memory.
    grant = server.get_consent_grant(oauth_request, grant_user)
    response: Response = server.create_authorization_response(
        oauth_request, grant_user=grant_user, grant=grant
    )
    return response


@router.post(
    "/authorize", operation_id="decideAuthorization",
    summary="The consent page's answer (browser form: Allow or Deny)",
    description=(
        "Posted by the consent page with the authorization request's query, the session's "
        "CSRF token and `decision=allow|deny`. Redirects to the client's redirect URI with "
        "`code` and `state`, or `error=access_denied`."
    ),
    responses={302: {"description": "Back to the client's redirect URI"},
               403: {"description": "The form did not come from the consent page"}},
)
async def authorize_decision(request: Request) -> Response:
    check_origin(request)
    user = await current_user(request)
    if user is None:
        return redirect(sign_in_url(_here(request)))
    try:
        fields = await read_form(request, limit=16 * 1024)
    except FormError:
        fields = {}
    check_csrf(user, first(fields, CSRF_FIELD))
    query = _query(request)
    problem = _bad_parameters(query, once=False)
    if problem is not None:
        return message_page("This request cannot be used",
                            f"The app that sent you here made a request hookstream cannot "
                            f"use: {problem}.", status=400)
    allowed = first(fields, "decision") == "allow"
    grant_user = GrantUser(user.user_id, user.org_id) if allowed else None
    server = authorization_server(request)
    try:
        oauth_request = OAuthRequest("POST", str(request.url), request.headers, query=query,
                                     form=fields, params=query)
        response = await server.call(_decide, server, oauth_request, grant_user,
                                     org_id=user.org_id)
    except OAuth2Error as error:
        return _authorize_error(error)
    except ValueError:
        log.debug("Authlib could not describe an error", exc_info=True)
        return message_page("This request cannot be used",
                            "The app that sent you here made a malformed request.", status=400)
    if response.status_code == 302:
        # After a POST, 303 makes every browser follow with a GET (RFC 9700 4.12).
        response.status_code = 303
    response.headers.update(security_headers())
    return response
