"""What the API routers share: authentication and the parameters every list takes.

Pages and times are the services' (``services.paging``, ``services.times``); they are
named here too because every router uses them."""

from __future__ import annotations

import hmac
import time
from typing import Annotated

from fastapi import Depends, Query, Request

from hookstream.errors import Forbidden, TooManyRequests, Unauthorized
from hookstream.ids import hash_key, now_ms
from hookstream.services.audit import set_actor
from hookstream.services.paging import decode_cursor, encode_cursor, page
from hookstream.services.runtime import Runtime
from hookstream.services.times import parse_time, rfc3339
from hookstream.storage.repository import Repository
from hookstream.web.params import reject_nul_params


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(runtime)]


def bearer(request: Request) -> str:
    return bearer_token(request.headers.get("authorization", ""))


def bearer_token(header: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; Unauthorized otherwise."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <key>'")
    return token.strip()


async def require_admin(request: Request, rt: RuntimeDep) -> None:
    if not hmac.compare_digest(hash_key(bearer(request)), rt.admin_key_hash):
        raise Unauthorized("this needs the admin key")
    set_actor("admin")


async def require_org(request: Request, rt: RuntimeDep) -> str:
    """The organization whose API key signed this request."""
    key_hash = hash_key(bearer(request))
    if hmac.compare_digest(key_hash, rt.admin_key_hash):
        raise Forbidden("the admin key manages organizations; use an organization's API key")
    async with rt.db.read() as conn:
        row = await Repository(conn).organization_by_key_hash(key_hash, now_ms())
    if row is None:
        raise Unauthorized("unknown API key")
    if rt.api_key_limiter is not None:
        decision = rt.api_key_limiter.take(key_hash, time.monotonic())
        if not decision.allowed:
            raise TooManyRequests(
                "this API key makes more than HOOKSTREAM_API_KEY_RATE_PER_MINUTE requests a "
                f"minute; try again in {decision.retry_after} s",
                retry_after=decision.retry_after,
            )
    set_actor("api_key" if row.current else "api_key:previous")
    # Every organization route passes here, after the key is known to be good.
    reject_nul_params(request)
    return str(row.id)


OrgId = Annotated[str, Depends(require_org)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page (1-1000)")]
Cursor = Annotated[str | None, Query(description="nextCursor of the previous page")]

__all__ = [
    "Cursor", "Limit", "OrgId", "RuntimeDep", "bearer", "bearer_token", "decode_cursor",
    "encode_cursor", "page", "parse_time", "require_admin", "require_org", "rfc3339", "runtime",
]
