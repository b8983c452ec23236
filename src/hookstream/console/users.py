"""Console users: the people who sign in to the console and authorize thermostat apps."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from hookstream.errors import Conflict, NotFound, ValidationFailed
from hookstream.ids import new_id, now_ms
from hookstream.security.passwords import check_password_strength, hash_password
from hookstream.storage.database import Database
from hookstream.storage.repository import Repository

# Deliberately loose (one "@", a dot in the domain, no spaces): the address is a sign-in name,
# never mailed to, and RFC 5322's full grammar would only refuse addresses people really use.
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
EMAIL_MAX = 320


@dataclass(frozen=True, slots=True)
class NewUser:
    id: str
    org_id: str
    email: str


def normalize_email(email: str) -> str:
    """The stored form of an email: trimmed and lower case."""
    return email.strip().lower()


def check_email(email: str) -> str:
    """``email`` normalized, or ValidationFailed when it does not look like an email address."""
    normalized = normalize_email(email)
    printable = all(" " < ch != "\x7f" for ch in normalized)
    if len(normalized) > EMAIL_MAX or not printable or not _EMAIL.fullmatch(normalized):
        raise ValidationFailed(
            f"'{email}' is not an email address",
            details=[{"field": "email", "message": "not an email address"}],
        )
    return normalized


async def create_user(db: Database, org_id: str, email: str, password: str) -> NewUser:
    """Store a console user of ``org_id``; NotFound, Conflict or ValidationFailed otherwise."""
    normalized = check_email(email)
    check_password_strength(password)
    async with db.read() as conn:
        repo = Repository(conn)
        if await repo.get_organization(org_id) is None:
            raise NotFound(f"no organization '{org_id}'")
        if await repo.user_by_email(normalized) is not None:
            raise Conflict(f"a user with the email '{normalized}' already exists")
    # argon2 takes ~0.1 s of CPU: off the event loop.
    password_hash = await asyncio.to_thread(hash_password, password)
    user = NewUser(new_id("usr"), org_id, normalized)
    try:
        async with db.write() as conn:
            await Repository(conn).insert_user(
                id=user.id, org_id=org_id, email=normalized, password_hash=password_hash,
                created_at=now_ms(), disabled_at=None,
            )
    except IntegrityError:  # the same email created concurrently
        raise Conflict(f"a user with the email '{normalized}' already exists") from None
    return user
