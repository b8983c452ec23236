"""The HTTP request of one delivery: URL, headers, body (pure, no I/O)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hookstream.pipeline.deliver.broker_target import BrokerTarget
from hookstream.pipeline.deliver.retry import RetryPolicy
from hookstream.pipeline.deliver.signing import sign


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A connector as the sender sees it: where to POST, how to sign and authenticate, and
    its delivery policy."""

    id: str
    base_url: str
    routes: Mapping[str, str]
    signing_key: bytes
    policy: RetryPolicy
    auth: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    active: bool = True
    # During a rotation the previous key signs too, until this time (epoch seconds).
    previous_key: bytes | None = None
    previous_key_until: float = 0.0
    connect_timeout: float | None = None
    request_timeout: float | None = None
    # A broker connector's target (MQTT, AMQP, NATS); None: an HTTP connector.
    target: BrokerTarget | None = None
    # A JSONata expression the body goes through before it is signed and sent (None: as is).
    transform: str | None = None

    def url_for(self, kind: str) -> str:
        return join_url(self.base_url, self.routes[kind])

    def signing_keys(self, now: float) -> list[bytes]:
        """The current key, and the previous one while its grace period lasts."""
        if self.previous_key is not None and now < self.previous_key_until:
            return [self.signing_key, self.previous_key]
        return [self.signing_key]


def join_url(base_url: str, route: str) -> str:
    """``base_url`` + ``route``, with exactly one slash between them."""
    if not route:
        return base_url
    return base_url.rstrip("/") + "/" + route.lstrip("/")


def auth_headers(auth: Mapping[str, Any], oauth2_token: str | None = None) -> dict[str, str]:
    """The header a connector's authentication adds (an OAuth2 token is fetched by the caller)."""
    kind = auth.get("type", "none")
    if kind == "basic":
        pair = f"{auth['username']}:{auth['password']}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    if kind == "bearer":
        return {"Authorization": f"Bearer {auth['token']}"}
    if kind == "api_key":
        return {str(auth["header"]): str(auth["value"])}
    if kind == "oauth2_client_credentials" and oauth2_token is not None:
        return {"Authorization": f"Bearer {oauth2_token}"}
    return {}


def webhook_headers(
    endpoint: Endpoint,
    webhook_id: str,
    timestamp: int,
    body: bytes,
    *,
    oauth2_token: str | None = None,
    traceparent: str | None = None,
) -> dict[str, str]:
    """The connector's static headers, then Standard Webhooks headers, authentication and
    the W3C ``traceparent`` (which static headers cannot override)."""
    headers = dict(endpoint.headers)
    headers.update({
        "content-type": "application/json",
        "user-agent": "hookstream/0.1",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(endpoint.signing_keys(timestamp), webhook_id, timestamp, body),
    })
    headers.update(auth_headers(endpoint.auth, oauth2_token))
    if traceparent is not None:
        # A static header of another case would be sent as well: one traceparent only.
        for name in [n for n in headers if n.lower() in ("traceparent", "tracestate")]:
            del headers[name]
        headers["traceparent"] = traceparent
    return headers
