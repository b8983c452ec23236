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
rolled back whole (none of its messages are stored), and answers what the winner stored.
Only stored (202) answers are kept: a request refused for its body consumes no key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError

from hookstream.errors import StorageError, ValidationFailed
from hookstream.ids import now_ms
from hookstream.ingest.message import DatastreamMessage
from hookstream.ingest.store import insert_planned, plan_messages
from hookstream.storage.database import Database
from hookstream.storage.repository import Repository

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# After losing a race for a key the winner's row is read; should it be gone already (its
# window ended meanwhile), the request is tried again as a new one, this many times.
_ATTEMPTS = 3


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


def _window_ms(window_seconds: float) -> int:
    return int(window_seconds * 1000)


def _answer_of(row: Row[Any], digest: str, window_seconds: float) -> Answer:
    if row.request_hash != digest:
        hours = window_seconds / 3600
        window = f"{hours:g} h" if hours >= 1 else f"{window_seconds:g} s"
        raise IdempotencyKeyReused(
            f"this {HEADER} was already used by this gateway for a different request "
            f"(another body or kind) within the last {window}; send a new key for a new "
            "request, or repeat the first request unchanged",
            details=[{"field": HEADER, "message": "used before with a different request"}],
        )
    stored = orjson.loads(row.response)
    return Answer(body=stored["body"], replayed=True)


async def find_answer(
    db: Database, *, gateway_id: str, key: str, digest: str, window_seconds: float
) -> Answer | None:
    """The stored answer to this key within the window, or None when there is none.

    Raises IdempotencyKeyReused when the key was used for a different request.
    """
    cutoff = now_ms() - _window_ms(window_seconds)
    async with db.read() as conn:
        row = await Repository(conn).get_idempotency_key(gateway_id, key)
    if row is None or row.created_at < cutoff:
        return None
    return _answer_of(row, digest, window_seconds)


async def store_once(
    db: Database,
    *,
    org_id: str,
    gateway_id: str,
    kind: str,
    messages: list[DatastreamMessage],
    key: str,
    digest: str,
    window_seconds: float,
) -> Answer:
    """Store the messages and the key's row in one transaction, unless the key was used.

    Answers the stored answer for a repeat (also when another request with the key commits
    while this one runs); raises IdempotencyKeyReused for the key with another request.
    """
    for _ in range(_ATTEMPTS):
        now = now_ms()
        cutoff = now - _window_ms(window_seconds)
        try:
            async with db.write() as conn:
                repo = Repository(conn)
                previous = await repo.get_idempotency_key(gateway_id, key)
                if previous is not None and previous.created_at >= cutoff:
                    return _answer_of(previous, digest, window_seconds)
                if previous is not None:
                    await repo.delete_expired_idempotency_key(gateway_id, key, cutoff)
                planned = await plan_messages(
                    repo, org_id=org_id, gateway_id=gateway_id, kind=kind, messages=messages
                )
                body = {"accepted": len(planned.ids), "ids": planned.ids}
                # The key first: a concurrent request with it waits here (PostgreSQL) and
                # fails before inserting its messages.
                await repo.insert_idempotency_key(
                    gateway_id=gateway_id, key=key, request_hash=digest,
                    response=orjson.dumps({"status": 202, "body": body}).decode(),
                    created_at=now,
                )
                await insert_planned(repo, planned)
            return Answer(body=body, replayed=False, routed=len(planned.delivery_rows))
        except IntegrityError:
            # Another request with this key committed first; this one stored nothing.
            answer = await find_answer(
                db, gateway_id=gateway_id, key=key, digest=digest, window_seconds=window_seconds
            )
            if answer is not None:
                return answer
    raise StorageError(f"the {HEADER} could not be recorded; try the request again")
