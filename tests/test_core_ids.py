"""Identifiers and key hashes."""

from __future__ import annotations

import hashlib
import re

from hookstream.ids import hash_key, new_id, new_key

ID_RE = re.compile(r"[0-9abcdefghjkmnpqrstvwxyz]{26}")


def test_new_id_has_the_prefix_and_26_crockford_chars() -> None:
    ident = new_id("msg")
    prefix, _, rest = ident.partition("_")
    assert prefix == "msg"
    assert ID_RE.fullmatch(rest), ident


def test_new_id_prefix_with_underscore_is_kept() -> None:
    ident = new_id("org_key")
    assert ident.startswith("org_key_")
    assert ID_RE.fullmatch(ident.removeprefix("org_key_"))


def test_new_ids_sort_by_time() -> None:
    times = [0, 1, 2, 999, 1000, 1_700_000_000_000, 1_700_000_000_001, 2**48 - 1]
    ids = [new_id("dlv", now_ms=t) for t in times]
    assert sorted(ids) == ids
    assert sorted(reversed(ids)) == ids


def test_many_ids_sort_by_time() -> None:
    ids = [new_id("msg", now_ms=1_700_000_000_000 + i * 7) for i in range(500)]
    assert sorted(ids) == ids


def test_same_millisecond_shares_the_time_part() -> None:
    a = new_id("msg", now_ms=1_700_000_000_000)
    b = new_id("msg", now_ms=1_700_000_000_000)
    assert a[4:14] == b[4:14]  # 10 chars hold the 48-bit time (+ 2 bits of padding)
    assert a != b


def test_new_id_uses_the_clock_by_default() -> None:
    before = new_id("x", now_ms=1_700_000_000_000)
    assert new_id("x") > before  # now is later than Nov 2023


def test_new_ids_are_unique() -> None:
    ids = {new_id("msg", now_ms=1) for _ in range(5000)}
    assert len(ids) == 5000


def test_new_key_has_prefix_and_is_unique() -> None:
    keys = {new_key("hk") for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith("hk_") and len(k) >= 3 + 43 for k in keys)


def test_hash_key_is_hex_sha256_and_deterministic() -> None:
    assert hash_key("abc") == hashlib.sha256(b"abc").hexdigest()
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    key = new_key("hk")
    assert hash_key(key) == hash_key(key)
    assert re.fullmatch(r"[0-9a-f]{64}", hash_key(key))


def test_hash_key_differs_per_key_and_hides_it() -> None:
    a, b = new_key("hk"), new_key("hk")
    assert hash_key(a) != hash_key(b)
    assert a not in hash_key(a)


def test_hash_key_utf8() -> None:
    assert hash_key("clé") == hashlib.sha256("clé".encode()).hexdigest()


def test_a_far_away_time_does_not_pin_later_ids() -> None:
    far = new_id("msg", now_ms=2**48 - 1)
    now = new_id("msg")
    # The clock's id is from now, not counted up from the far-future one.
    assert now < far
    assert new_id("msg") > now


def test_the_time_inside_an_id_is_read_back() -> None:
    from hookstream.ids import first_id_at, id_time_ms, new_id

    assert id_time_ms(new_id("msg", 1_767_225_600_123)) == 1_767_225_600_123
    assert id_time_ms(first_id_at("dlv", 42)) == 42
    assert id_time_ms("msg_not-an-id") == 0 and id_time_ms("") == 0


def test_the_fast_encoder_spells_ids_as_the_reference_encoder_does() -> None:
    import random

    from hookstream import ids

    rng = random.Random(7)
    values = [0, (1 << 128) - 1, (1 << 80) - 1, 1 << 80]
    values += [(rng.randrange(2**48) << 80) | rng.getrandbits(80) for _ in range(2000)]
    for value in values:
        assert ids._encode_fast("msg", value) == ids._encode("msg", value)


def test_a_forked_child_makes_other_ids_than_its_parent() -> None:
    """Random bytes are read ahead: a child forked with some left must not reuse them."""
    import os

    new_id("msg")  # the parent now holds random bytes read ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, through the pipe
        os.close(read)
        os.write(write, " ".join(new_id("msg", 0) for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [new_id("msg", 0) for _ in range(50)]
    # Same millisecond (0), so only the random parts tell them apart.
    assert len(child) == 50
    assert not set(child) & set(parent)
