"""``Idempotency-Key`` on ingest: a repeated request gets the first answer and stores nothing.

A gateway that sends an ingest request with an ``Idempotency-Key`` header and does not
hear back (timeout, dropped connection) sends it again with the same key. The first request
that stores its messages also stores, in the same transaction, a row ``(gateway, key)``
holding a hash of the request (kind and raw body) and the answer it got; every repeat
within ``idempotency_window_seconds`` gets that answer again (same 202, same ids), marked
``Idempotent-Replayed: true``, and stores nothing. Keys are per gateway. The same key with
another body or kind within the window is refused (422, ``idempotency_key_reused``). After
the window a key counts as new, and its old row is replaced.

Two requests with the same key at the same moment: both may find no row, but only one can
insert it (the primary key). The other's transaction fails with an IntegrityError, is
rolled back whole (none of its messages are stored) and written again, when the key
answers what the winner stored (``pipeline.ingest.intake``).
Only stored (202) answers are kept: a request refused for its body consumes no key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from hookstream.errors import ValidationFailed
from hookstream.ids import now_ms
from hookstream.storage.database import Database
from hookstream.storage.repository import Repository

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(ValidationFailed):
    """The key was already used, within the window, for a different request."""

    code = "idempotency_key_reused"


@dataclass(frozen=True, slots=True)
class Answer:
    """What an ingest request is answered: the 202 body, and whether it is a repeat."""

    body: dict[str, Any]
    replayed: bool
    routed: int = 0  # deliveries created (0 for a repeat)


def check_key(value: str | None) -> str | None:
    """The header's value, or ValidationFailed when it is empty or too long."""
    if value is None:
        return None
    problem = None
    if not value.strip():
        problem = "must not be empty"
    elif len(value) > MAX_KEY_LENGTH:
        problem = f"must be at most {MAX_KEY_LENGTH} characters long, not {len(value)}"
    if problem is not None:
        raise ValidationFailed(
            f"the {HEADER} header {problem}",
            details=[{"field": HEADER, "message": problem}],
        )
    return value


def request_hash(kind: str, raw: bytes) -> str:
    """What identifies a request under a key: its kind and its body, byte for byte."""
    return hashlib.sha256(kind.encode() + b"\n" + raw).hexdigest()


def reused(window_seconds: float) -> IdempotencyKeyReused:
    """The error for a key used within the window for another request."""
    hours = window_seconds / 3600
    window = f"{hours:g} h" if hours >= 1 else f"{window_seconds:g} s"
    return IdempotencyKeyReused(
        f"this {HEADER} was already used by this gateway for a different request "
        f"(another body or kind) within the last {window}; send a new key for a new "
        "request, or repeat the first request unchanged",
        details=[{"field": HEADER, "message": "used before with a different request"}],
    )


def replay(stored_hash: str, stored_response: str, digest: str,
           window_seconds: float) -> dict[str, Any]:
    """The first answer's body for a repeat of its request; IdempotencyKeyReused otherwise."""
    if stored_hash != digest:
        raise reused(window_seconds)
    body: dict[str, Any] = orjson.loads(stored_response)["body"]
    return body


async def find_answer(
    db: Database, *, gateway_id: str, key: str, digest: str, window_seconds: float
) -> Answer | None:
    """The stored answer to this key within the window, or None when there is none.

    Read without the write lock, before the body is parsed; the intake checks again in its
    transaction (``pipeline.ingest.intake``). Raises IdempotencyKeyReused when the key was
    used for a different request.
    """
    cutoff = now_ms() - int(window_seconds * 1000)
    async with db.read() as conn:
        row = await Repository(conn).get_idempotency_key(gateway_id, key)
    if row is None or row.created_at < cutoff:
        return None
    return Answer(replay(row.request_hash, row.response, digest, window_seconds), True)
