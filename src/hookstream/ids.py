"""Identifiers and keys: time-sortable ids, random keys and their hashes (pure)."""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


_last = 0  # the last value handed out by this process
_MAX_BACKSTEP_MS = 10_000


# Every pair of Crockford characters, by the 10 bits they encode: the 80 random bits of an id
# are 8 lookups (base64.b32encode is pure Python before 3.13, ~4 µs an id).
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_time_part: tuple[int, str] = (-1, "")

# Random bytes are read from the OS a few KB at a time, not 10 bytes per id (a system call).
_RANDOM_CHUNK = 4096
_random = b""
_random_at = 0


def _forget_random() -> None:
    # A forked child must not hand out the parent's remaining bytes (the same ids).
    global _random, _random_at
    _random, _random_at = b"", 0


os.register_at_fork(after_in_child=_forget_random)


def _random80() -> int:
    global _random, _random_at
    if _random_at + 10 > len(_random):
        _random, _random_at = os.urandom(_RANDOM_CHUNK), 0
    at = _random_at
    _random_at = at + 10
    return int.from_bytes(_random[at:at + 10], "big")


def _encode_fast(prefix: str, value: int) -> str:
    """``_encode`` for a 128-bit value: the time part cached per millisecond."""
    global _time_part
    ms = value >> 80
    if _time_part[0] != ms:
        _time_part = (ms, _encode("", ms)[-10:])
    p = _PAIRS
    return (f"{prefix}_{_time_part[1]}{p[(value >> 70) & 1023]}{p[(value >> 60) & 1023]}"
            f"{p[(value >> 50) & 1023]}{p[(value >> 40) & 1023]}{p[(value >> 30) & 1023]}"
            f"{p[(value >> 20) & 1023]}{p[(value >> 10) & 1023]}{p[value & 1023]}")


def new_id(prefix: str, now_ms: int | None = None) -> str:
    """A ULID-like id: 48-bit milliseconds then 80 random bits, base32, behind ``prefix_``.

    Ids sort by creation time, which gives the logs a stable order and cheap cursors. Within
    one process they also strictly increase (a monotonic ULID): ids made in the same
    millisecond count up from the first, so a batch's messages keep their order.
    """
    global _last
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | _random80()
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
