"""OAuth2 client credentials for endpoints: tokens fetched once, cached until shortly before
they expire, and fetched again after a 401."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from hookstream.errors import DeliveryError
from hookstream.pipeline.deliver.client import Sender

DEFAULT_EXPIRES_IN = 3600.0


class TokenError(DeliveryError):
    """The token endpoint did not give a usable access token."""


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    good_until: float  # monotonic seconds


def _cache_key(endpoint_id: str, auth: Mapping[str, Any]) -> str:
    # The client secret is part of the key (hashed) so a changed credential fetches anew.
    material = "\0".join(str(auth.get(k, "")) for k in
                         ("tokenUrl", "clientId", "clientSecret", "scope"))
    return endpoint_id + ":" + hashlib.sha256(material.encode()).hexdigest()


class TokenCache:
    """One token per endpoint and credential, shared by every delivery of this process."""

    def __init__(self, sender: Sender, refresh_margin: float = 30.0) -> None:
        self._sender = sender
        self._margin = refresh_margin
        self._tokens: dict[str, _Token] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.fetches = 0

    async def token(self, endpoint_id: str, auth: Mapping[str, Any]) -> str:
        key = _cache_key(endpoint_id, auth)
        cached = self._tokens.get(key)
        if cached is not None and time.monotonic() < cached.good_until:
            return cached.value
        # One fetch at a time per endpoint: concurrent deliveries wait for it.
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = self._tokens.get(key)
            if cached is not None and time.monotonic() < cached.good_until:
                return cached.value
            fresh = await self._fetch(auth)
            self._tokens[key] = fresh
            return fresh.value

    def invalidate(self, endpoint_id: str, auth: Mapping[str, Any], value: str) -> None:
        """Forget a token the receiver refused (unless a newer one replaced it already)."""
        key = _cache_key(endpoint_id, auth)
        cached = self._tokens.get(key)
        if cached is not None and cached.value == value:
            del self._tokens[key]

    async def _fetch(self, auth: Mapping[str, Any]) -> _Token:
        form = {"grant_type": "client_credentials"}
        if auth.get("scope"):
            form["scope"] = str(auth["scope"])
        self.fetches += 1
        status, raw = await self._sender.post_form(
            str(auth["tokenUrl"]), form, (str(auth["clientId"]), str(auth["clientSecret"]))
        )
        if not 200 <= status < 300:
            excerpt = raw[:200].decode("utf-8", "replace")
            raise TokenError(f"the token endpoint answered {status}: {excerpt}")
        try:
            body = orjson.loads(raw)
            value = body["access_token"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise TokenError("the token endpoint's answer has no access_token") from exc
        try:
            raw_expiry = body.get("expires_in")
            expires_in = DEFAULT_EXPIRES_IN if raw_expiry is None else float(raw_expiry)
        except (TypeError, ValueError) as exc:
            raise TokenError("the token endpoint's expires_in is not a number") from exc
        if not isinstance(value, str) or not value:
            raise TokenError("the token endpoint's access_token is not a string")
        lifetime = max(expires_in - self._margin, 0.0)
        return _Token(value, time.monotonic() + lifetime)
