"""The datastream message format: parsing gateway bodies and building delivered bodies."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from hookstream.pipeline.message import MessageFormatError, parse_messages, to_body

# The 15 fields of the vendor's document, in its order (000_bc422c0f525cc480.txt).
DOCUMENT_FIELDS = [
    "deviceId",
    "property",
    "timestamp",
    "payload",
    "receivedAt",
    "scaledPayload",
    "name",
    "unit",
    "externalId",
    "propertyId",
    "equipmentId",
    "gatewayInterfaceId",
    "slug",
    "isOutOfService",
    "tags",
]

MINIMAL: dict[str, Any] = {
    "deviceId": "dev-1",
    "property": "temperature",
    "timestamp": 1_700_000_000_000,
    "payload": 21.5,
}

FULL: dict[str, Any] = {
    "deviceId": "dev-1",
    "property": "temperature",
    "timestamp": 1_700_000_000_000,
    "payload": {"raw": 215, "ok": True},
    "receivedAt": 1_700_000_000_123,
    "scaledPayload": 21.5,
    "name": "Room temperature",
    "unit": "°C",
    "externalId": "ext-1",
    "propertyId": "prop-1",
    "equipmentId": "eq-1",
    "gatewayInterfaceId": "gi-1",
    "slug": "room-temperature",
    "isOutOfService": False,
    "tags": {"site": "Lyon", "floor": "2"},
}


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def rejected(value: Any) -> MessageFormatError:
    raw = value if isinstance(value, bytes) else dumps(value)
    with pytest.raises(MessageFormatError) as info:
        parse_messages(raw)
    return info.value


def fields_named(err: MessageFormatError) -> list[str]:
    return [d["field"] for d in err.details]


# --- accepted bodies -------------------------------------------------------------------------


def test_single_object_is_one_message_not_a_batch() -> None:
    messages, is_batch = parse_messages(dumps(MINIMAL))
    assert is_batch is False
    assert len(messages) == 1
    m = messages[0]
    assert (m.deviceId, m.property, m.timestamp, m.payload) == (
        "dev-1",
        "temperature",
        1_700_000_000_000,
        21.5,
    )
    assert m.receivedAt is None
    assert m.tags == {}


def test_full_message_keeps_every_field() -> None:
    (m,), _ = parse_messages(dumps(FULL))
    assert m.model_dump() == FULL


def test_array_of_one_is_a_batch() -> None:
    messages, is_batch = parse_messages(dumps([MINIMAL]))
    assert is_batch is True
    assert len(messages) == 1


def test_array_keeps_order() -> None:
    items = [{**MINIMAL, "deviceId": f"dev-{i}"} for i in range(5)]
    messages, is_batch = parse_messages(dumps(items))
    assert is_batch is True
    assert [m.deviceId for m in messages] == [f"dev-{i}" for i in range(5)]


def test_array_of_1000_is_accepted() -> None:
    items = [{**MINIMAL, "timestamp": i} for i in range(1000)]
    messages, _ = parse_messages(dumps(items))
    assert len(messages) == 1000
    assert messages[-1].timestamp == 999


@pytest.mark.parametrize(
    "payload", [0, False, "", "on", [], {}, [1, None], {"nested": {"a": None}}, -3.25]
)
def test_any_non_null_payload_is_accepted(payload: Any) -> None:
    (m,), _ = parse_messages(dumps({**MINIMAL, "payload": payload}))
    assert m.payload == payload
    assert type(m.payload) is type(payload)


@pytest.mark.parametrize("value", [0, 42, -1.5, 1e300])
def test_scaled_payload_accepts_numbers(value: float) -> None:
    (m,), _ = parse_messages(dumps({**MINIMAL, "scaledPayload": value}))
    assert m.scaledPayload == value


def test_optional_fields_may_be_null() -> None:
    nullable = [f for f in DOCUMENT_FIELDS[4:] if f != "tags"]
    body = {**MINIMAL, **dict.fromkeys(nullable)}
    (m,), _ = parse_messages(dumps(body))
    for name in nullable:
        assert getattr(m, name) is None


def test_timestamp_zero_and_long_max_are_accepted() -> None:
    for ts in (0, 2**63 - 1):
        (m,), _ = parse_messages(dumps({**MINIMAL, "timestamp": ts}))
        assert m.timestamp == ts


# --- rejected bodies: shape ------------------------------------------------------------------


def test_empty_array_is_rejected() -> None:
    err = rejected([])
    assert "empty" in err.message


def test_more_than_1000_is_rejected_with_the_count() -> None:
    err = rejected([MINIMAL] * 1001)
    assert "1001" in err.message
    assert "1000" in err.message


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"not json", b'{"deviceId": "d",}', b"[1, 2", b"\xff\xfe"]
)
def test_not_json_is_rejected(raw: bytes) -> None:
    err = rejected(raw)
    assert "JSON" in err.message


def test_nan_is_not_json() -> None:
    raw = b'{"deviceId":"d","property":"p","timestamp":1,"payload":NaN}'
    err = rejected(raw)
    assert "JSON" in err.message


@pytest.mark.parametrize("raw", [b"3", b'"text"', b"null", b"true", b"1.5"])
def test_json_that_is_not_object_or_array_is_rejected(raw: bytes) -> None:
    err = rejected(raw)
    assert "object" in err.message


def test_non_object_items_in_array_are_rejected_with_their_index() -> None:
    err = rejected([MINIMAL, 7, MINIMAL, "x", None])
    by_index = {d["index"]: d for d in err.details}
    assert sorted(by_index) == [1, 3, 4]
    assert all("object" in d["message"] for d in by_index.values())


def test_array_of_arrays_is_rejected() -> None:
    err = rejected([[MINIMAL]])
    assert err.details[0]["index"] == 0


# --- rejected bodies: fields -----------------------------------------------------------------


@pytest.mark.parametrize("missing", ["deviceId", "property", "timestamp", "payload"])
def test_each_required_field_is_required(missing: str) -> None:
    body = {k: v for k, v in MINIMAL.items() if k != missing}
    err = rejected(body)
    assert fields_named(err) == [missing]
    assert missing in err.message
    assert "required" in err.message


def test_all_missing_required_fields_are_listed() -> None:
    err = rejected({})
    assert sorted(fields_named(err)) == sorted(["deviceId", "property", "timestamp", "payload"])
    assert "(and 3 more)" in err.message


def test_null_payload_is_rejected() -> None:
    err = rejected({**MINIMAL, "payload": None})
    assert fields_named(err) == ["payload"]
    assert "null" in err.message


@pytest.mark.parametrize("field", ["deviceId", "property", "timestamp"])
def test_null_required_field_is_rejected(field: str) -> None:
    err = rejected({**MINIMAL, field: None})
    assert fields_named(err) == [field]


@pytest.mark.parametrize("unknown", ["foo", "device_id", "DeviceId", "value", "received_at"])
def test_unknown_field_is_rejected_naming_it(unknown: str) -> None:
    err = rejected({**MINIMAL, unknown: 1})
    assert fields_named(err) == [unknown]
    assert f"'{unknown}'" in err.message
    assert "not a field" in err.message


def test_single_message_details_carry_no_index() -> None:
    err = rejected({**MINIMAL, "foo": 1})
    assert "index" not in err.details[0]


@pytest.mark.parametrize("value", ["1700000000000", 1.5, 1700000000000.25, True, False, -1])
def test_timestamp_must_be_a_non_negative_integer(value: Any) -> None:
    err = rejected({**MINIMAL, "timestamp": value})
    assert fields_named(err) == ["timestamp"]


def test_timestamp_beyond_a_long_is_rejected() -> None:
    raw = b'{"deviceId":"d","property":"p","timestamp":9223372036854775808,"payload":1}'
    err = rejected(raw)
    assert fields_named(err) == ["timestamp"]


@pytest.mark.parametrize("value", ["1700000000000", 1.5, True, -1])
def test_received_at_must_be_a_non_negative_integer(value: Any) -> None:
    err = rejected({**MINIMAL, "receivedAt": value})
    assert fields_named(err) == ["receivedAt"]


@pytest.mark.parametrize("value", ["true", "false", 1, 0, "yes"])
def test_is_out_of_service_must_be_a_boolean(value: Any) -> None:
    err = rejected({**MINIMAL, "isOutOfService": value})
    assert fields_named(err) == ["isOutOfService"]


@pytest.mark.parametrize("value", [True, False, "1.5", "21", [1], {"v": 1}])
def test_scaled_payload_must_be_a_number(value: Any) -> None:
    err = rejected({**MINIMAL, "scaledPayload": value})
    assert err.details
    assert all(f.startswith("scaledPayload") for f in fields_named(err))
    assert "scaledPayload" in err.message


def test_scaled_payload_error_names_the_field_itself() -> None:
    err = rejected({**MINIMAL, "scaledPayload": True})
    assert fields_named(err) == ["scaledPayload"]


@pytest.mark.parametrize(
    ("tags", "field"),
    [
        ({"a": 1}, "tags.a"),
        ({"a": "ok", "b": True}, "tags.b"),
        ({"a": None}, "tags.a"),
        ({"a": ["x"]}, "tags.a"),
        ({"a": {"b": "c"}}, "tags.a"),
    ],
)
def test_tag_values_must_be_strings(tags: dict[str, Any], field: str) -> None:
    err = rejected({**MINIMAL, "tags": tags})
    assert fields_named(err) == [field]


@pytest.mark.parametrize("tags", [None, [], "a=b", 1])
def test_tags_must_be_an_object(tags: Any) -> None:
    err = rejected({**MINIMAL, "tags": tags})
    assert fields_named(err) == ["tags"]


@pytest.mark.parametrize(
    "field",
    ["name", "unit", "externalId", "propertyId", "equipmentId", "gatewayInterfaceId", "slug"],
)
def test_optional_strings_must_be_strings(field: str) -> None:
    err = rejected({**MINIMAL, field: 5})
    assert fields_named(err) == [field]


@pytest.mark.parametrize("field", ["deviceId", "property"])
def test_required_strings_are_not_empty(field: str) -> None:
    err = rejected({**MINIMAL, field: ""})
    assert fields_named(err) == [field]


@pytest.mark.parametrize("field", ["deviceId", "property"])
def test_required_strings_are_not_numbers(field: str) -> None:
    err = rejected({**MINIMAL, field: 12})
    assert fields_named(err) == [field]


def test_batch_errors_carry_the_index_of_each_bad_message() -> None:
    items = [
        MINIMAL,
        {k: v for k, v in MINIMAL.items() if k != "deviceId"},
        MINIMAL,
        {**MINIMAL, "colour": "blue"},
        {**MINIMAL, "timestamp": "soon"},
    ]
    err = rejected(items)
    got = sorted((d["index"], d["field"]) for d in err.details)
    assert got == [(1, "deviceId"), (3, "colour"), (4, "timestamp")]
    # The headline names the first problem and counts the others.
    assert "deviceId" in err.message
    assert "(and 2 more)" in err.message


def test_one_bad_message_rejects_the_whole_batch() -> None:
    with pytest.raises(MessageFormatError):
        parse_messages(dumps([MINIMAL] * 10 + [{**MINIMAL, "payload": None}]))


def test_details_are_capped_but_the_count_is_not() -> None:
    items = [{**MINIMAL, "extra": 1} for _ in range(300)]
    err = rejected(items)
    assert len(err.details) == 100
    assert "(and 299 more)" in err.message


def test_error_is_a_value_error_with_its_message() -> None:
    err = rejected(b"[]")
    assert isinstance(err, ValueError)
    assert str(err) == err.message


# --- delivered body --------------------------------------------------------------------------


def body_of(message: dict[str, Any], received_at_ms: int = 1_700_000_999_000) -> dict[str, Any]:
    (m,), _ = parse_messages(dumps(message))
    out = orjson.loads(to_body(m, received_at_ms))
    assert isinstance(out, dict)
    return out


def test_body_has_exactly_the_15_fields_in_document_order() -> None:
    assert list(body_of(MINIMAL)) == DOCUMENT_FIELDS
    assert list(body_of(FULL)) == DOCUMENT_FIELDS


def test_body_field_order_does_not_follow_the_input_order() -> None:
    shuffled = dict(reversed(list(FULL.items())))
    assert list(body_of(shuffled)) == DOCUMENT_FIELDS


def test_body_keeps_nulls_and_defaults_tags_to_an_object() -> None:
    body = body_of(MINIMAL, received_at_ms=42)
    assert body == {
        "deviceId": "dev-1",
        "property": "temperature",
        "timestamp": 1_700_000_000_000,
        "payload": 21.5,
        "receivedAt": 42,
        "scaledPayload": None,
        "name": None,
        "unit": None,
        "externalId": None,
        "propertyId": None,
        "equipmentId": None,
        "gatewayInterfaceId": None,
        "slug": None,
        "isOutOfService": None,
        "tags": {},
    }


def test_body_raw_json_contains_null_literals() -> None:
    (m,), _ = parse_messages(dumps(MINIMAL))
    raw = to_body(m, 1)
    assert b'"name":null' in raw
    assert b'"tags":{}' in raw


def test_body_received_at_set_from_argument_when_absent() -> None:
    assert body_of(MINIMAL, received_at_ms=1_234)["receivedAt"] == 1_234
    assert body_of({**MINIMAL, "receivedAt": None}, received_at_ms=5)["receivedAt"] == 5


def test_body_received_at_kept_when_given() -> None:
    assert body_of({**MINIMAL, "receivedAt": 777}, received_at_ms=1_234)["receivedAt"] == 777


def test_body_received_at_zero_is_kept() -> None:
    assert body_of({**MINIMAL, "receivedAt": 0}, received_at_ms=1_234)["receivedAt"] == 0


def test_body_round_trips_every_given_value() -> None:
    assert body_of(FULL) == FULL


def test_body_keeps_payload_types() -> None:
    for payload in (0, False, "21.5", [1, "a", None], {"k": {"n": 1.25}}):
        assert body_of({**MINIMAL, "payload": payload})["payload"] == payload


def test_body_does_not_change_the_message() -> None:
    (m,), _ = parse_messages(dumps(MINIMAL))
    to_body(m, 99)
    assert m.receivedAt is None
