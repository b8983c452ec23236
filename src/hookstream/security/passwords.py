"""Console users' passwords: argon2id hashes (argon2-cffi's defaults, RFC 9106's second profile)."""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hookstream.errors import ValidationFailed

MIN_LENGTH = 8
# argon2 takes any length, but a megabyte-long "password" would only cost us time to hash.
MAX_LENGTH = 1024

_hasher = PasswordHasher()



@functools.cache
def dummy_hash() -> str:
    """Verified against when no user has the email given at sign-in, so that an unknown email
    takes as long to refuse as a wrong password: timing does not tell which emails exist.

    Made on first use, not at import: an argon2 hash takes 64 MiB for a moment, which every
    process importing this module (delivery workers too) would otherwise carry as peak RSS."""
    return _hasher.hash("hookstream: no user has this email")


def hash_password(password: str) -> str:
    """The stored form of ``password`` (argon2id, with its own random salt)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; False (never an error) when it does not
    or when the hash is malformed."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_password_strength(password: str) -> None:
    """Refuse a password that is too short (or absurdly long) with ValidationFailed."""
    if len(password) < MIN_LENGTH:
        raise ValidationFailed(
            f"the password must be at least {MIN_LENGTH} characters long",
            details=[{"field": "password", "message": f"shorter than {MIN_LENGTH} characters"}],
        )
    if len(password) > MAX_LENGTH:
        raise ValidationFailed(
            f"the password must be at most {MAX_LENGTH} characters long",
            details=[{"field": "password", "message": f"longer than {MAX_LENGTH} characters"}],
        )
