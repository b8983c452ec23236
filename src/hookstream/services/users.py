"""Console users: the people who sign in to the console and authorize thermostat apps."""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from hookstream.errors import Conflict, NotFound, ValidationFailed
from hookstream.ids import hash_key, new_id, new_key, now_ms
from hookstream.security.passwords import check_password_strength, hash_password
from hookstream.services.runtime import Runtime, write_private
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


# The local trial's first user (make run): "localhost" has no dot, which check_email would
# refuse, and that is why it cannot clash with a real address.
LOCAL_ORG = "Local"
LOCAL_EMAIL = "admin@localhost"
LOCAL_FILE = "console.txt"


@dataclass(frozen=True, slots=True)
class LocalSignIn:
    """The console sign-in made for a fresh local trial (the password is shown once)."""

    org_id: str
    email: str
    password: str
    file: Path


async def ensure_local_user(rt: Runtime) -> LocalSignIn | None:
    """On a fresh local trial (SQLite, private targets allowed, no organization yet): an
    organization "Local" with a console user ``admin@localhost`` and a random password, also
    written to ``var/console.txt`` (mode 0600); None otherwise."""
    s = rt.settings
    if not (s.is_sqlite and s.allow_private_targets):
        return None
    async with rt.db.read() as conn:
        if await Repository(conn).list_organizations(None, 1):
            return None
    password = secrets.token_urlsafe(12)
    password_hash = await asyncio.to_thread(hash_password, password)
    org_id, now = new_id("org"), now_ms()
    async with rt.db.write() as conn:
        repo = Repository(conn)
        # Checked again under the write lock: another process may have just done it.
        if await repo.list_organizations(None, 1):
            return None
        # Its API key is not kept: the console is the way in (the admin key can rotate it).
        await repo.insert_organization(
            id=org_id, name=LOCAL_ORG, api_key_hash=hash_key(new_key("hsk")), created_at=now
        )
        await repo.insert_user(
            id=new_id("usr"), org_id=org_id, email=LOCAL_EMAIL, password_hash=password_hash,
            created_at=now, disabled_at=None,
        )
    file = Path(s.data_dir) / LOCAL_FILE
    write_private(file, (
        f"console   http://{s.listen}/console\n"
        f"email     {LOCAL_EMAIL}\n"
        f"password  {password}"
    ))
    return LocalSignIn(org_id, LOCAL_EMAIL, password, file)
