"""One attempt to deliver a body to an endpoint: headers, authentication, POST.

The worker and the connector test button both go through ``attempt``.
"""

from __future__ import annotations

import time

from hookstream.errors import DeliveryError, TargetRefused, TimeoutError_, TransformFailed
from hookstream.pipeline.deliver.client import AttemptResult, Sender
from hookstream.pipeline.deliver.oauth2 import TokenCache
from hookstream.pipeline.deliver.sandbox import TransformRunner
from hookstream.pipeline.deliver.topics import Source
from hookstream.pipeline.deliver.webhook import Endpoint, webhook_headers

OAUTH2 = "oauth2_client_credentials"


async def attempt(
    sender: Sender,
    endpoint: Endpoint,
    kind: str,
    webhook_id: str,
    body: bytes,
    tokens: TokenCache | None = None,
    traceparent: str | None = None,
    source: Source | None = None,
    transforms: TransformRunner | None = None,
) -> AttemptResult:
    """POST ``body`` to the endpoint's route for ``kind``, signed, with its authentication.

    With OAuth2, a 401 makes one more try with a freshly fetched token; a token endpoint
    failure is this attempt's error. ``traceparent`` is sent as the W3C header. A connector
    with a transform sends (and signs) what its expression makes of ``body``, computed by
    ``transforms``; when it fails nothing is sent and the result says so.

    A broker connector publishes instead, to its topic for ``source`` (the values of its
    placeholders; the kind alone when not given).
    """
    if endpoint.transform is not None:
        transformed = await transform_body(transforms, endpoint.transform, body)
        if isinstance(transformed, AttemptResult):
            return transformed
        body = transformed
    if endpoint.target is not None:
        timeouts = sender.timeout(endpoint.connect_timeout, endpoint.request_timeout)
        headers = webhook_headers(endpoint, webhook_id, int(time.time()), body,
                                  traceparent=traceparent)
        headers.pop("user-agent", None)
        return await sender.brokers.publish(endpoint.id, endpoint.target,
                                            source or Source(kind), webhook_id, headers, body,
                                            timeouts)
    timeout = sender.timeout(endpoint.connect_timeout, endpoint.request_timeout)
    token: str | None = None
    if endpoint.auth.get("type") == OAUTH2:
        tokens = tokens or TokenCache(sender)
        started = time.time()
        try:
            token = await tokens.token(endpoint.id, endpoint.auth)
        except DeliveryError as exc:
            return AttemptResult(started_at=started, duration_ms=int((time.time() - started) *
                                 1000), error=f"OAuth2 token request failed: {exc}",
                                 refused=isinstance(exc, TargetRefused),
                                 timed_out=isinstance(exc, TimeoutError_))

    async def post() -> AttemptResult:
        headers = webhook_headers(endpoint, webhook_id, int(time.time()), body,
                                  oauth2_token=token, traceparent=traceparent)
        return await sender.post(endpoint.url_for(kind), headers, body, timeout)

    result = await post()
    if result.status_code == 401 and token is not None and tokens is not None:
        tokens.invalidate(endpoint.id, endpoint.auth, token)
        try:
            token = await tokens.token(endpoint.id, endpoint.auth)
        except DeliveryError as exc:
            return AttemptResult(started_at=result.started_at, duration_ms=result.duration_ms,
                                 status_code=401, response_body=result.response_body,
                                 error=f"401, then the OAuth2 token request failed: {exc}",
                                 refused=isinstance(exc, TargetRefused),
                                 timed_out=isinstance(exc, TimeoutError_))
        result = await post()
    return result


async def transform_body(transforms: TransformRunner | None, expression: str, body: bytes
                         ) -> bytes | AttemptResult:
    """The body an expression makes of ``body``, or the failed attempt that reports why."""
    started = time.time()
    try:
        if transforms is None:
            raise TransformFailed("no transform runner in this process")
        return await transforms.apply(expression, body)
    except TransformFailed as exc:
        return AttemptResult(started_at=started,
                             duration_ms=int((time.time() - started) * 1000),
                             error=f"transform failed: {exc}", transform_failed=True)
