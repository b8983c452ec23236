"""Identifiers and keys: time-sortable ids, random keys and their hashes (pure)."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import secrets
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


_last = 0  # the last value handed out by this process
_MAX_BACKSTEP_MS = 10_000


# Standard base32 to Crockford's alphabet (lower case): the 80 random bits are 10 bytes, which
# base32 turns into exactly 16 characters, in C.
_FROM_BASE32 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD.encode())
_time_part: tuple[int, str] = (-1, "")


def _encode_fast(prefix: str, value: int) -> str:
    """``_encode`` for a 128-bit value: the time part cached per millisecond."""
    global _time_part
    ms = value >> 80
    if _time_part[0] != ms:
        _time_part = (ms, _encode("", ms)[-10:])
    rand = base64.b32encode((value & ((1 << 80) - 1)).to_bytes(10, "big"))
    return f"{prefix}_{_time_part[1]}{rand.translate(_FROM_BASE32).decode()}"


def new_id(prefix: str, now_ms: int | None = None) -> str:
    """A ULID-like id: 48-bit milliseconds then 80 random bits, base32, behind ``prefix_``.

    Ids sort by creation time, which gives the logs a stable order and cheap cursors. Within
    one process they also strictly increase (a monotonic ULID): ids made in the same
    millisecond count up from the first, so a batch's messages keep their order.
    """
    global _last
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    # Count up within a millisecond, and through a small backward clock step; a large step
    # (or an explicit time far from the last) starts afresh rather than sticking to it.
    if value <= _last and (_last >> 80) - _MAX_BACKSTEP_MS <= ms:
        value = _last + 1
    _last = value
    return _encode_fast(prefix, value)


def first_id_at(prefix: str, ms: int) -> str:
    """The smallest id ``new_id(prefix, ms)`` can return: ``id < first_id_at(prefix, ms)``
    holds exactly for the ids made before millisecond ``ms``."""
    return _encode(prefix, max(0, ms) << 80)


def id_time_ms(id_: str) -> int:
    """The millisecond ``new_id`` made ``id_`` in (0 for anything that is not such an id)."""
    _, _, body = id_.rpartition("_")
    # 26 characters hold 130 bits: the first 10, the 48-bit time
    return _time_part_ms(body[:10]) if len(body) == 26 else 0


@functools.lru_cache(maxsize=1024)
def _time_part_ms(part: str) -> int:
    # Cached: the worker reads it per delivery, and a batch's ids share their millisecond.
    value = 0
    for char in part:
        index = _CROCKFORD.find(char)
        if index < 0:
            return 0
        value = value * 32 + index
    return value


def now_ms() -> int:
    """Now, in epoch milliseconds (the unit of every stored time)."""
    return int(time.time() * 1000)


def _encode(prefix: str, value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def new_key(prefix: str) -> str:
    """A secret bearer key with 256 bits of entropy."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> str:
    """The stored form of a bearer key.

    Keys carry 256 random bits, so a fast hash is enough: nothing can be guessed, and a
    slow KDF would cost every ingest request.
    """
    return hashlib.sha256(key.encode()).hexdigest()
