"""Authlib's OAuth2 authorization server on FastAPI, over hookstream's asyncio database.

Authlib does the protocol (RFC 6749 code and refresh grants, RFC 7636 PKCE, RFC 7009
revocation); this module gives it clients, codes and tokens from the repository.

Authlib is synchronous: a grant calls hooks (``query_client``, ``save_authorization_code``,
``save_token``...) and uses their answers at once, while the database is asyncio. So every
Authlib call runs in a worker thread (``AuthorizationServer.call``, ``asyncio.to_thread``), and
the hooks hand their repository coroutines back to the event loop with
``asyncio.run_coroutine_threadsafe(...).result(timeout)`` (``AuthorizationServer.run``): the
thread waits, the loop stays free, and the database is only ever used from the loop that owns
it (SQLite's one-writer lock is an asyncio.Lock of that loop). The routes read the HTTP request
(query, form, headers) before the thread starts, so Authlib's request objects hold plain data
and never touch Starlette from the thread. (Running Authlib on the loop inside a greenlet, as
SQLAlchemy's own async bridge does, would avoid the thread hop, but needs SQLAlchemy internals
or greenlet directly; a thread per protocol step costs nothing at sign-in rates.)

What is stored: codes and tokens only as SHA-256 hashes (``hash_key``). A code is spent, and
its tokens written, in one transaction (``use_oauth_code``: the first of two exchanges wins);
the tokens of one code form a family, named after the code, so that a code presented again
revokes what it gave (RFC 6749 4.1.2). A refresh spends its refresh token the same way and
writes the new row in the family; a refresh token presented after it was spent revokes the
whole family (refresh token reuse detection, OAuth 2.0 Security BCP, RFC 9700 4.14.2).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Coroutine, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from authlib.oauth2.rfc6749 import AuthorizationServer as _AuthlibServer
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    JsonPayload,
    JsonRequest,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc6749.models import AuthorizationCodeMixin
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge
from sqlalchemy import Row
from starlette.responses import Response

from hookstream.ids import hash_key, new_id, new_key, now_ms
from hookstream.settings import Settings
from hookstream.storage.database import Database
from hookstream.storage.repository import Repository
from hookstream.thermostat.oauth import DEFAULT_SCOPE, SCOPES
from hookstream.web.api.responses import JSON

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long a hook waits for the database before the request fails.
DB_TIMEOUT = 30.0
# Every way a client may authenticate at the token and revocation endpoints; which one a client
# may use is the client's to say (check_endpoint_auth_method): "none" only for public clients.
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
# Client ids the API gives out are "cli_" + 26 characters; the column holds 64. Anything else is
# not looked up at all (a NUL, say, would make PostgreSQL fail).
_CLIENT_ID = re.compile(r"[\x21-\x7e]{1,64}")


@dataclass(frozen=True, slots=True)
class _Call:
    loop: asyncio.AbstractEventLoop
    # When set, only this organization's clients exist: a console user can authorize only the
    # clients of their own organization, and another's look exactly like unknown ones.
    org_id: str | None


_CALL: ContextVar[_Call] = ContextVar("hookstream_oauth_call")


def canonical_scope(scope: str | None) -> str:
    """Known scopes of ``scope`` once each, in a fixed order (the default when empty)."""
    requested = set((scope or "").split())
    if not requested:
        return DEFAULT_SCOPE
    return " ".join(s for s in SCOPES if s in requested)


# --- what Authlib works on ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GrantUser:
    """The resource owner as Authlib carries it: a console user."""

    user_id: str
    org_id: str


@dataclass(frozen=True)
class OAuthClient(ClientMixin):  # type: ignore[misc]
    client_id: str
    org_id: str
    name: str
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    public: bool

    @classmethod
    def from_row(cls, row: Row[Any]) -> OAuthClient:
        try:
            uris = orjson.loads(row.redirect_uris)
        except orjson.JSONDecodeError:
            uris = []
        if not isinstance(uris, list):
            uris = []
        return cls(
            client_id=str(row.id), org_id=str(row.org_id), name=str(row.name),
            secret_hash=row.secret_hash, redirect_uris=tuple(str(u) for u in uris),
            public=bool(row.public),
        )

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # RFC 6749 3.1.2.3: with several registered URIs the request must name one.
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        allowed = canonical_scope(scope)
        return allowed or None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match, no prefixes or patterns

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None:
            return False
        return hmac.compare_digest(hash_key(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass(frozen=True, slots=True)
class AuthorizationCode(AuthorizationCodeMixin):  # type: ignore[misc]
    code_hash: str
    client_id: str
    user_id: str
    org_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri or None  # "": the request named none (the single registered)

    def get_scope(self) -> str:
        return self.scope


@dataclass(frozen=True, slots=True)
class TokenRecord(TokenMixin):  # type: ignore[misc]
    id: str
    family_id: str
    client_id: str
    user_id: str
    org_id: str
    scope: str
    access_expires_at: int
    refresh_expires_at: int | None
    refresh_used_at: int | None
    revoked_at: int | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> TokenRecord:
        return cls(
            id=str(row.id), family_id=str(row.family_id), client_id=str(row.client_id),
            user_id=str(row.user_id), org_id=str(row.org_id), scope=str(row.scope),
            access_expires_at=int(row.access_expires_at),
            refresh_expires_at=row.refresh_expires_at, refresh_used_at=row.refresh_used_at,
            revoked_at=row.revoked_at,
        )

    def check_client(self, client: OAuthClient) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, (self.access_expires_at - now_ms()) // 1000)

    def is_expired(self) -> bool:
        return self.access_expires_at <= now_ms()

    def is_revoked(self) -> bool:
        return self.revoked_at is not None


def family_of_code(code_hash: str) -> str:
    """The token family a code's exchange starts: found again from the code if it is replayed."""
    return f"fam_{code_hash[:36]}"


# --- requests, built from what the route already read ---------------------------------------

Params = Mapping[str, list[str]]


class Payload(OAuth2Payload):  # type: ignore[misc]
    """OAuth2 parameters: the first value of each as ``data``, every value as ``datalist``."""

    def __init__(self, params: Params) -> None:
        self._data = {key: values[0] for key, values in params.items() if values}
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, values in params.items():
            self._datalist[key].extend(values)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class Request(OAuth2Request):  # type: ignore[misc]
    """An OAuth2 request built from what the route read: ``query`` and ``form`` as sent, and
    ``params``, where this endpoint takes its OAuth2 parameters from (the authorization
    endpoint: the query, also when the consent form posts back to it; the token and revocation
    endpoints: the form body)."""

    def __init__(
        self, method: str, uri: str, headers: Mapping[str, str], *, query: Params,
        form: Params, params: Params,
    ) -> None:
        # Raises InsecureTransportError unless https (or loopback http, RFC 8252 7.3).
        super().__init__(method, uri, headers=headers)
        self._args = {key: values[0] for key, values in query.items() if values}
        self._form = {key: values[0] for key, values in form.items() if values}
        self.payload = Payload(params)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _JsonPayload(JsonPayload):  # type: ignore[misc]
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    @property
    def data(self) -> dict[str, Any]:
        return self._data


def json_request(method: str, uri: str, headers: Mapping[str, str],
                 data: dict[str, Any]) -> JsonRequest:
    """A JSON request for Authlib endpoints that take one (none registered yet)."""
    request = JsonRequest(method, uri, headers)
    request.payload = _JsonPayload(data)
    return request


# --- grants ---------------------------------------------------------------------------------

def _s256_matches(verifier: str, challenge: str) -> bool:
    return hmac.compare_digest(create_s256_code_challenge(verifier), challenge)


class PkceS256(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only: ``plain`` sends the verifier itself through the front channel, so
    it protects nothing a client able to do S256 needs (every current one is). Required from
    public clients at the authorization endpoint already; accepted, then checked, from
    confidential ones."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": _s256_matches}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        super().validate_code_challenge(grant, redirect_uri)
        data = grant.request.payload.data
        if data.get("code_challenge"):
            if data.get("code_challenge_method") != "S256":
                raise InvalidRequestError(
                    "'code_challenge_method' must be S256 (plain is not accepted)"
                )
        elif grant.request.client.public:
            raise InvalidRequestError(
                "a public client must use PKCE: send 'code_challenge' and "
                "'code_challenge_method=S256'"
            )


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    server: AuthorizationServer

    def save_authorization_code(self, code: str, request: Request) -> None:
        self.server.save_code(code, request)

    def query_authorization_code(self, code: str, client: OAuthClient) -> AuthorizationCode | None:
        return self.server.find_code(code, client)

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Nothing left to do: save_token spent the code in the transaction that stored the
        tokens."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> GrantUser | None:
        return self.server.find_user(authorization_code.user_id)


class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    # Rotation: every refresh answers a new refresh token (and spends the old one).
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: AuthorizationServer

    def issue_token(self, user: GrantUser, refresh_token: TokenRecord) -> dict[str, Any]:
        # Authlib checked that a requested scope is within the granted one (narrowing only).
        scope = canonical_scope(self.request.payload.scope or refresh_token.get_scope())
        token: dict[str, Any] = self.generate_token(
            user=user, scope=scope, include_refresh_token=True
        )
        return token

    def authenticate_refresh_token(self, refresh_token: str) -> TokenRecord | None:
        return self.server.find_refresh_token(refresh_token)

    def authenticate_user(self, refresh_token: TokenRecord) -> GrantUser:
        user = self.server.find_user(refresh_token.user_id)
        if user is None:
            raise InvalidGrantError("the user of this grant no longer exists or is disabled")
        return user

    def revoke_old_credential(self, refresh_token: TokenRecord) -> None:
        """Nothing left to do: save_token spent it in the transaction that stored the new
        tokens."""


class RevocationEndpoint(_RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009: revoking either token of a grant revokes every token of its family."""

    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS
    server: AuthorizationServer

    def check_params(self, request: Request, client: OAuthClient) -> None:
        if "token" not in request.form:
            raise InvalidRequestError("Missing 'token' in request.")
        hint = request.form.get("token_type_hint")
        if hint and hint not in self.SUPPORTED_TOKEN_TYPES:
            # RFC 7009 2.2.1 answers this as an RFC 6749 5.2 error: 400 (Authlib's says 401).
            raise OAuth2Error(error="unsupported_token_type", status_code=400,
                              description="'token_type_hint' must be access_token or "
                                          "refresh_token")

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        return self.server.find_token(token_string, token_type_hint)

    def authenticate_token(self, request: Request, client: OAuthClient) -> TokenRecord | None:
        """Another client's token is answered as an unknown one (200, nothing revoked).

        RFC 7009 2.1 lets the server refuse it with an error, but that error would tell the
        caller the token exists, in another organization's application."""
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        if token is not None and not token.check_client(client):
            return None
        return token

    def revoke_token(self, token: TokenRecord, request: Request) -> None:
        self.server.revoke_family(token.family_id)


# --- the server -----------------------------------------------------------------------------

class AuthorizationServer(_AuthlibServer):  # type: ignore[misc]
    """Authlib's AuthorizationServer for Starlette/FastAPI over the repository."""

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.db = db
        self.settings = settings
        self.register_token_generator("default", self._generate_token)
        self.register_grant(AuthorizationCodeGrant, [PkceS256(required=True)])
        self.register_grant(RefreshTokenGrant)
        self.register_endpoint(RevocationEndpoint)

    # --- crossing between the event loop and Authlib's thread ---------------------------
    async def call(self, fn: Callable[..., T], *args: Any, org_id: str | None = None) -> T:
        """``fn(*args)`` (an Authlib call) in a worker thread whose hooks can reach the
        database; with ``org_id``, only that organization's clients exist for it."""
        context = _Call(asyncio.get_running_loop(), org_id)

        def in_thread() -> T:
            # to_thread runs this in a copy of the caller's context: the setting stays here.
            _CALL.set(context)
            return fn(*args)

        return await asyncio.to_thread(in_thread)

    def run(self, make: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """From a hook (in the worker thread): ``await make(*args)`` on the event loop."""
        future = asyncio.run_coroutine_threadsafe(make(*args), _CALL.get().loop)
        try:
            return future.result(DB_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise

    # --- Authlib's framework hooks -------------------------------------------------------
    def create_oauth2_request(self, request: Request) -> Request:
        # The routes build the request from what they read; nothing else reaches Authlib.
        return request

    def create_json_request(self, request: JsonRequest) -> JsonRequest:
        return request

    def handle_response(self, status_code: int, payload: Any,
                        headers: list[tuple[str, str]]) -> Response:
        if isinstance(payload, dict):
            return JSON(payload, status_code=status_code, headers=dict(headers))
        return Response(payload or b"", status_code=status_code, headers=dict(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signals: nothing subscribes to Authlib's events."""

    def query_client(self, client_id: str | None) -> OAuthClient | None:
        if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
            return None
        row = self.run(self._client_row, client_id)
        if row is None:
            return None
        restricted_to = _CALL.get().org_id
        if restricted_to is not None and row.org_id != restricted_to:
            return None
        return OAuthClient.from_row(row)

    def save_token(self, token: dict[str, Any], request: Request) -> None:
        user: GrantUser = request.user
        client: OAuthClient = request.client
        now = now_ms()
        refresh = token.get("refresh_token")
        values = {
            "id": new_id("tok", now),
            "access_hash": hash_key(token["access_token"]),
            "refresh_hash": hash_key(refresh) if refresh else None,
            "client_id": client.client_id,
            "user_id": user.user_id,
            "org_id": user.org_id,
            "scope": token["scope"],
            "created_at": now,
            "access_expires_at": now + self.settings.oauth_access_token_seconds * 1000,
            "refresh_expires_at": (
                now + self.settings.oauth_refresh_token_seconds * 1000 if refresh else None
            ),
            "refresh_used_at": None,
            "revoked_at": None,
        }
        if request.payload.grant_type == "authorization_code":
            code: AuthorizationCode = request.authorization_code
            family = family_of_code(code.code_hash)
            if not self.run(self._exchange_code, code.code_hash, {**values, "family_id": family}):
                self.revoke_family(family)
                raise InvalidGrantError("the code was already used")
        else:
            old: TokenRecord = request.refresh_token
            if not self.run(self._rotate, old.id, {**values, "family_id": old.family_id}):
                self.revoke_family(old.family_id)
                raise InvalidGrantError(
                    "the refresh token was already used; every token of this grant is revoked"
                )

    def _generate_token(
        self, grant_type: str, client: OAuthClient, user: GrantUser | None = None,
        scope: str | None = None, expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": new_key("hsat"),
            "expires_in": self.settings.oauth_access_token_seconds,
            "scope": canonical_scope(scope),
        }
        if include_refresh_token:
            token["refresh_token"] = new_key("hsrt")
        return token

    # --- what the grants ask for -----------------------------------------------------------
    def save_code(self, code: str, request: Request) -> None:
        """Store an authorization code (hashed) for the user who allowed the request."""
        user: GrantUser = request.user
        client: OAuthClient = request.client
        if user.org_id != client.org_id:  # query_client already hid such clients
            raise InvalidClientError("The client does not exist on this server.")
        data = request.payload.data
        now = now_ms()
        self.run(self._insert_code, {
            "code_hash": hash_key(code),
            "client_id": client.client_id,
            "user_id": user.user_id,
            "org_id": user.org_id,
            "redirect_uri": request.payload.redirect_uri or "",
            "scope": canonical_scope(request.scope),
            "code_challenge": data.get("code_challenge"),
            "code_challenge_method": "S256" if data.get("code_challenge") else None,
            "created_at": now,
            "expires_at": now + self.settings.oauth_code_seconds * 1000,
            "used_at": None,
        })

    def find_code(self, code: str, client: OAuthClient) -> AuthorizationCode | None:
        """The live code ``code`` issued to ``client``; a spent one revokes what it gave."""
        code_hash = hash_key(code)
        row = self.run(self._code_row, code_hash)
        if row is None or row.client_id != client.client_id:
            return None
        if row.used_at is not None:
            log.warning("authorization code replayed for client %s: revoking its grant",
                        row.client_id)
            self.revoke_family(family_of_code(code_hash))
            return None
        if row.expires_at <= now_ms():
            return None
        return AuthorizationCode(
            code_hash=code_hash, client_id=str(row.client_id), user_id=str(row.user_id),
            org_id=str(row.org_id), redirect_uri=str(row.redirect_uri), scope=str(row.scope),
            code_challenge=row.code_challenge, code_challenge_method=row.code_challenge_method,
        )

    def find_refresh_token(self, raw: str) -> TokenRecord | None:
        """The live token row of refresh token ``raw``; a spent one revokes its family."""
        row = self.run(self._token_row_by_refresh, hash_key(raw))
        if row is None or row.revoked_at is not None:
            return None
        if row.refresh_used_at is not None:
            log.warning("refresh token reused for client %s: revoking its grant", row.client_id)
            self.revoke_family(str(row.family_id))
            return None
        if row.refresh_expires_at is None or row.refresh_expires_at <= now_ms():
            return None
        return TokenRecord.from_row(row)

    def find_token(self, raw: str, hint: str | None) -> TokenRecord | None:
        """The token row of an access or refresh token, whatever its state (for revocation)."""
        lookups = [self._token_row_by_access, self._token_row_by_refresh]
        if hint == "refresh_token":
            lookups.reverse()
        token_hash = hash_key(raw)
        for lookup in lookups:
            row = self.run(lookup, token_hash)
            if row is not None:
                return TokenRecord.from_row(row)
        return None

    def find_user(self, user_id: str) -> GrantUser | None:
        row = self.run(self._user_row, user_id)
        if row is None or row.disabled_at is not None:
            return None
        return GrantUser(str(row.id), str(row.org_id))

    def revoke_family(self, family_id: str) -> None:
        self.run(self._revoke_family, family_id)

    # --- the database, on the event loop -------------------------------------------------
    async def _client_row(self, client_id: str) -> Row[Any] | None:
        async with self.db.read() as conn:
            return await Repository(conn).oauth_client_by_id(client_id)

    async def _user_row(self, user_id: str) -> Row[Any] | None:
        async with self.db.read() as conn:
            return await Repository(conn).get_user(user_id)

    async def _code_row(self, code_hash: str) -> Row[Any] | None:
        async with self.db.read() as conn:
            return await Repository(conn).oauth_code_by_hash(code_hash)

    async def _token_row_by_access(self, token_hash: str) -> Row[Any] | None:
        async with self.db.read() as conn:
            return await Repository(conn).oauth_token_by_access_hash(token_hash)

    async def _token_row_by_refresh(self, token_hash: str) -> Row[Any] | None:
        async with self.db.read() as conn:
            return await Repository(conn).oauth_token_by_refresh_hash(token_hash)

    async def _insert_code(self, values: dict[str, Any]) -> None:
        async with self.db.write() as conn:
            await Repository(conn).insert_oauth_code(**values)

    async def _exchange_code(self, code_hash: str, token: dict[str, Any]) -> bool:
        async with self.db.write() as conn:
            repo = Repository(conn)
            if await repo.use_oauth_code(code_hash, now_ms()) != 1:
                return False  # another exchange of this code won
            await repo.insert_oauth_token(**token)
        return True

    async def _rotate(self, old_id: str, token: dict[str, Any]) -> bool:
        async with self.db.write() as conn:
            repo = Repository(conn)
            if await repo.use_refresh_token(old_id, now_ms()) != 1:
                return False  # spent (or revoked) meanwhile
            await repo.insert_oauth_token(**token)
        return True

    async def _revoke_family(self, family_id: str) -> None:
        async with self.db.write() as conn:
            await Repository(conn).revoke_token_family(family_id, now_ms())


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier`` (for clients and tests)."""
    return create_s256_code_challenge(verifier)  # type: ignore[no-any-return]
