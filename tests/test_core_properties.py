"""Property tests of the pure cores: the datastream message model and the webhook signer.

The signer is checked against the reference implementation (the ``standardwebhooks``
package), not against itself.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hookstream.pipeline.deliver.signing import SignatureMismatch, secret_key, sign, verify
from hookstream.pipeline.message import FIELDS, MessageFormatError, parse_messages, to_body

# Enough examples to find edge cases, few enough that the file runs in a few seconds.
PROPERTY = settings(max_examples=200, deadline=None, database=None)
LONG_MAX = 2**63 - 1

# --- strategies --------------------------------------------------------------------------------

# orjson (like JSON itself) has no lone surrogates; everything else is fair game.
TEXT_CHARS = st.characters(codec="utf-8")


def text(min_size: int = 0, max_size: int = 40, *, nul: bool = True) -> st.SearchStrategy[str]:
    chars = TEXT_CHARS if nul else st.characters(codec="utf-8", exclude_characters="\x00")
    return st.text(chars, min_size=min_size, max_size=max_size)


# Numbers orjson writes and reads back unchanged: 64-bit integers and finite floats.
NUMBERS = st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | NUMBERS | text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
OPTIONAL_TEXT = st.none() | text(max_size=1024)

MESSAGES: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "deviceId": text(1, 256, nul=False),
        "property": text(1, 256, nul=False),
        "timestamp": st.integers(0, LONG_MAX),
        "payload": JSON_VALUES.filter(lambda v: v is not None),
    },
    optional={
        "receivedAt": st.none() | st.integers(0, LONG_MAX),
        "scaledPayload": st.none() | NUMBERS,
        "name": OPTIONAL_TEXT,
        "unit": OPTIONAL_TEXT,
        "externalId": OPTIONAL_TEXT,
        "propertyId": OPTIONAL_TEXT,
        "equipmentId": OPTIONAL_TEXT,
        "gatewayInterfaceId": OPTIONAL_TEXT,
        "slug": OPTIONAL_TEXT,
        "isOutOfService": st.none() | st.booleans(),
        "tags": st.dictionaries(text(max_size=1024), text(max_size=1024), max_size=64),
    },
)


def canonical(value: Any) -> bytes:
    """A value as JSON bytes: equal only if equal in type too (1 and 1.0 differ)."""
    return orjson.dumps(value)


# --- the message model -------------------------------------------------------------------------

@PROPERTY
@given(message=MESSAGES, arrived=st.integers(0, LONG_MAX))
def test_a_valid_message_parses_and_renders_the_15_fields_in_order(
    message: dict[str, Any], arrived: int
) -> None:
    [parsed], is_batch = parse_messages(orjson.dumps(message))
    assert not is_batch
    body = orjson.loads(to_body(parsed, arrived))
    assert list(body) == list(FIELDS)
    for field in FIELDS:
        expected = message.get(field, {} if field == "tags" else None)
        if field == "receivedAt" and expected is None:
            expected = arrived  # set on arrival when the gateway did not send it
        assert canonical(body[field]) == canonical(expected), field


@PROPERTY
@given(messages=st.lists(MESSAGES, min_size=1, max_size=5))
def test_an_array_of_valid_messages_is_a_batch_in_order(messages: list[dict[str, Any]]) -> None:
    parsed, is_batch = parse_messages(orjson.dumps(messages))
    assert is_batch
    assert [(m.deviceId, m.timestamp) for m in parsed] == [
        (m["deviceId"], m["timestamp"]) for m in messages
    ]


@PROPERTY
@given(message=MESSAGES, name=text(1, 30).filter(lambda n: n not in FIELDS), value=JSON_VALUES)
def test_a_field_outside_the_format_is_refused_by_name(
    message: dict[str, Any], name: str, value: Any
) -> None:
    with pytest.raises(MessageFormatError) as refused:
        parse_messages(orjson.dumps({**message, name: value}))
    assert [d["field"] for d in refused.value.details] == [name]
    assert f"'{name}' is not a field" in refused.value.message


# Objects with the format's own field names as well as others, so that most of them get past
# the first checks.
NEAR_MESSAGES = st.dictionaries(st.sampled_from(FIELDS) | text(max_size=12), JSON_VALUES,
                                max_size=17)
ANY_JSON = JSON_VALUES | NEAR_MESSAGES | st.lists(NEAR_MESSAGES | JSON_VALUES, max_size=4)
# Also what orjson does not write: big integers, NaN and Infinity, lone surrogates.
ODD_VALUES = st.integers() | st.floats() | st.sampled_from(["\ud800", "a\udfff", "\x00"])


@PROPERTY
@given(value=ANY_JSON | st.fixed_dictionaries({f: ODD_VALUES | JSON_VALUES for f in FIELDS[:6]}))
def test_any_json_parses_or_is_a_message_format_error(value: Any) -> None:
    raw = json.dumps(value).encode()  # the stdlib writes NaN, big integers and \ud800 escapes
    try:
        messages, _ = parse_messages(raw)
    except MessageFormatError as exc:
        assert exc.message
        return
    for message in messages:
        assert list(orjson.loads(to_body(message, 0))) == list(FIELDS)


@PROPERTY
@given(raw=st.binary(max_size=200))
def test_any_bytes_parse_or_are_a_message_format_error(raw: bytes) -> None:
    try:
        parse_messages(raw)
    except MessageFormatError:
        pass


# --- the signer --------------------------------------------------------------------------------

KEYS = st.binary(min_size=24, max_size=64)
WEBHOOK_IDS = text(1, 40)
# Bodies are JSON in practice; any UTF-8 text is signed the same way.
BODIES = JSON_VALUES.map(orjson.dumps) | text(max_size=200).map(str.encode)
# Within the reference's 5-minute tolerance of now.
SKEWS = st.integers(-240, 240)


def whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


def headers(webhook_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature}


def accepted(secret: str, body: bytes, sent: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, sent, json_parse=False)
    except WebhookVerificationError:
        return False
    return True


@PROPERTY
@given(key=KEYS, webhook_id=WEBHOOK_IDS, body=BODIES, skew=SKEWS)
def test_a_signature_is_accepted_by_the_reference_implementation(
    key: bytes, webhook_id: str, body: bytes, skew: int
) -> None:
    secret = whsec(key)
    assert secret_key(secret) == key
    ts = int(time.time()) + skew
    sent = headers(webhook_id, ts, sign([secret_key(secret)], webhook_id, ts, body))
    assert accepted(secret, body, sent)
    assert verify(secret, sent, body, now=ts) == webhook_id  # our receiver side agrees


@PROPERTY
@given(key=KEYS, other_key=KEYS, webhook_id=WEBHOOK_IDS, other_id=WEBHOOK_IDS, body=BODIES,
       other_body=BODIES, skew=SKEWS, shift=st.integers(-30, 30).filter(bool))
def test_a_changed_body_id_timestamp_or_secret_is_refused(
    key: bytes, other_key: bytes, webhook_id: str, other_id: str, body: bytes,
    other_body: bytes, skew: int, shift: int,
) -> None:
    secret = whsec(key)
    ts = int(time.time()) + skew
    signature = sign([key], webhook_id, ts, body)
    if other_body != body:
        assert not accepted(secret, other_body, headers(webhook_id, ts, signature))
    if other_id != webhook_id:
        assert not accepted(secret, body, headers(other_id, ts, signature))
    assert not accepted(secret, body, headers(webhook_id, ts + shift, signature))
    if other_key != key:
        assert not accepted(whsec(other_key), body, headers(webhook_id, ts, signature))
        with pytest.raises(SignatureMismatch):
            verify(whsec(other_key), headers(webhook_id, ts, signature), body, now=ts)


@PROPERTY
@given(old=KEYS, new=KEYS, webhook_id=WEBHOOK_IDS, body=BODIES, skew=SKEWS)
def test_during_a_rotation_both_secrets_verify(
    old: bytes, new: bytes, webhook_id: str, body: bytes, skew: int
) -> None:
    ts = int(time.time()) + skew
    signature = sign([new, old], webhook_id, ts, body)
    assert len(signature.split(" ")) == 2
    for key in (old, new):
        assert accepted(whsec(key), body, headers(webhook_id, ts, signature))
