"""The HTTP request of one delivery: URL, headers, body (pure, no I/O)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hookstream.deliver.signing import sign


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A connector as the sender sees it: where to POST and how to sign and authenticate."""

    id: str
    base_url: str
    routes: Mapping[str, str]
    signing_keys: list[bytes]
    auth: Mapping[str, Any] = field(default_factory=dict)
    active: bool = True

    def url_for(self, kind: str) -> str:
        return join_url(self.base_url, self.routes[kind])


def join_url(base_url: str, route: str) -> str:
    """``base_url`` + ``route``, with exactly one slash between them."""
    if not route:
        return base_url
    return base_url.rstrip("/") + "/" + route.lstrip("/")


def auth_headers(auth: Mapping[str, Any]) -> dict[str, str]:
    """The header a connector's static authentication adds (OAuth2 is fetched by the sender)."""
    kind = auth.get("type", "none")
    if kind == "basic":
        pair = f"{auth['username']}:{auth['password']}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    if kind == "bearer":
        return {"Authorization": f"Bearer {auth['token']}"}
    if kind == "api_key":
        return {str(auth["header"]): str(auth["value"])}
    return {}


def webhook_headers(
    endpoint: Endpoint, webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Standard Webhooks headers plus the connector's authentication."""
    headers = {
        "content-type": "application/json",
        "user-agent": "hookstream/0.1",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(endpoint.signing_keys, webhook_id, timestamp, body),
    }
    headers.update(auth_headers(endpoint.auth))
    return headers
