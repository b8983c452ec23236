"""What the API routers share: authentication, pagination, times."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from hookstream.errors import Forbidden, TooManyRequests, Unauthorized, ValidationFailed
from hookstream.ids import hash_key, now_ms
from hookstream.services.audit import set_actor
from hookstream.services.runtime import Runtime
from hookstream.storage.repository import Repository
from hookstream.web.params import reject_nul_params


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(runtime)]


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
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



def rfc3339(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def parse_time(value: str | None, name: str) -> int | None:
    """An RFC 3339 query parameter as epoch milliseconds; 422 when malformed."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValidationFailed(
            f"'{name}' must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z",
            details=[{"field": name, "message": "not an RFC 3339 time"}],
        ) from None
    if parsed.tzinfo is None:
        raise ValidationFailed(
            f"'{name}' needs a time zone offset, e.g. 2026-01-31T12:00:00Z",
            details=[{"field": name, "message": "no time zone offset"}],
        )
    return int(parsed.timestamp() * 1000)


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


# What an id looks like (see ids.new_id); a cursor holds one.
_ID = re.compile(r"[a-z]{1,16}_[0-9a-z]{1,40}")


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    # Only an id goes further: anything else (a NUL, say) could make the database fail.
    if not _ID.fullmatch(raw):
        raise ValidationFailed(
            "'cursor' is not a cursor this API gave out",
            details=[{"field": "cursor", "message": "invalid cursor"}],
        )
    return raw


def page(items: list[dict[str, Any]], limit: int, id_key: str = "id") -> dict[str, Any]:
    """The contract's list body; a full page gets a cursor to the next one."""
    next_cursor = encode_cursor(items[-1][id_key]) if len(items) == limit and items else None
    return {"items": items, "nextCursor": next_cursor}
