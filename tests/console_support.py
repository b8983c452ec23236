"""Test support for the console and OAuth2: users, clients, and a browser that signs in."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson

from hookstream.ids import hash_key, new_id, new_key, now_ms
from hookstream.security.passwords import hash_password
from hookstream.storage.repository import Repository
from tests.support import Service

PASSWORD = "correct horse battery staple"
REDIRECT = "https://app.example/callback"

_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')
_ACTION = re.compile(r'<form method="post" action="([^"]*)"')


async def make_user(service: Service, org_id: str, email: str, password: str = PASSWORD,
                    *, disabled: bool = False) -> str:
    """A console user stored directly (the CLI has its own tests)."""
    user_id = new_id("usr")
    async with service.runtime.db.write() as conn:
        await Repository(conn).insert_user(
            id=user_id, org_id=org_id, email=email, password_hash=hash_password(password),
            created_at=now_ms(), disabled_at=now_ms() if disabled else None,
        )
    return user_id


@dataclass
class Client:
    id: str
    secret: str | None
    redirect_uris: list[str]


async def make_client(service: Service, org_id: str, *, public: bool,
                      redirect_uris: list[str] | None = None, name: str = "Comfort App"
                      ) -> Client:
    """An OAuth client stored directly (its management API is tested elsewhere)."""
    client = Client(new_id("cli"), None if public else new_key("hscs"),
                    redirect_uris or [REDIRECT])
    async with service.runtime.db.write() as conn:
        await Repository(conn).insert_oauth_client(
            id=client.id, org_id=org_id, name=name,
            secret_hash=None if client.secret is None else hash_key(client.secret),
            redirect_uris=orjson.dumps(client.redirect_uris).decode(), public=public,
            created_at=now_ms(),
        )
    return client


def browser(service: Service) -> httpx.AsyncClient:
    """A client that keeps cookies and does not follow redirects, like a browser we watch."""
    return httpx.AsyncClient(base_url=service.base_url, follow_redirects=False, timeout=30)


def csrf_of(page: str) -> str:
    match = _CSRF.search(page)
    assert match, page
    return html.unescape(match.group(1))


def form_action(page: str) -> str:
    match = _ACTION.search(page)
    assert match, page
    return html.unescape(match.group(1))


async def sign_in(web: httpx.AsyncClient, email: str, password: str = PASSWORD,
                  next_path: str | None = None) -> httpx.Response:
    """Fetch the sign-in form, then post it with its CSRF token."""
    page = await web.get("/console/sign-in", params={"next": next_path} if next_path else None)
    assert page.status_code == 200, page.text
    return await web.post("/console/sign-in", data={
        "email": email, "password": password, "csrf_token": csrf_of(page.text),
        "next": next_path or "",
    })


def origin(service: Service) -> str:
    return service.base_url


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def location_params(response: httpx.Response) -> dict[str, str]:
    """The query of a redirect's Location, one value per name."""
    location = response.headers["location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def set_cookie(response: httpx.Response, name: str) -> str | None:
    """The Set-Cookie header that sets ``name``."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header
    return None
