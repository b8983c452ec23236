"""Keyset pages: a list body of the contract and the opaque cursor to the next page."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from hookstream.errors import ValidationFailed

# What an id looks like (see ids.new_id); a cursor holds one.
_ID = re.compile(r"[a-z]{1,16}_[0-9a-z]{1,40}")


def encode_cursor(last_id: str) -> str:
    """The cursor that continues after ``last_id``."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The id a cursor of ours holds; ValidationFailed for anything else."""
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
