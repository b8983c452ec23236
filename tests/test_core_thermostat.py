"""The chronothermostat core: commands, gateway reports, storage and Smarther-shaped output."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from hookstream.thermostat.state import (
    DEFAULT_MAPPING,
    EVENT_TYPE,
    VALIDATION_EVENT_TYPE,
    CommandError,
    Measure,
    ModuleState,
    apply_command,
    apply_report,
    check_mapping,
    chronothermostat,
    format_time,
    module_status,
    notification_body,
    parse_time,
    validation_answered,
    validation_body,
)

T0 = 1_548_343_820_000  # 2019-01-24T15:30:20Z, the time in the API documentation's example
NOW = 1_700_000_000_000
MINUTE = 60_000
PLANT = "d0e2e4f8-plant"
MODULE = "a1b2c3d4-module"


def manual(value: object, unit: str | None = None) -> dict[str, Any]:
    set_point: dict[str, Any] = {"value": value}
    if unit is not None:
        set_point["unit"] = unit
    return {"function": "HEATING", "mode": "MANUAL", "setPoint": set_point}


def command_error(command: object, now_ms: int = NOW) -> CommandError:
    with pytest.raises(CommandError) as caught:
        apply_command(ModuleState(), command, now_ms)
    return caught.value


def report(prop: str, payload: object, timestamp: int, **extra: object) -> dict[str, Any]:
    message: dict[str, Any] = {
        "property": prop,
        "payload": payload,
        "scaledPayload": None,
        "timestamp": timestamp,
        "unit": None,
    }
    message.update(extra)
    return message


# -- CommandError and the state's defaults --------------------------------------------------------


def test_command_error_carries_message_and_field() -> None:
    exc = CommandError("mode is required", "mode")
    assert str(exc) == "mode is required"
    assert exc.message == "mode is required"
    assert exc.field == "mode"
    assert CommandError("bad").field is None


def test_new_module_defaults() -> None:
    state = ModuleState()
    assert (state.function, state.mode, state.set_point, state.program) == (
        "HEATING",
        "AUTOMATIC",
        "20.0",
        1,
    )
    assert state.activation_time_ms is None
    assert (state.temperature_format, state.load_state, state.time_ms, state.version) == (
        "C",
        "INACTIVE",
        0,
        0,
    )
    assert state.thermometer is None and state.hygrometer is None


# -- times ----------------------------------------------------------------------------------------


def test_format_time_is_rfc3339_seconds_utc() -> None:
    assert format_time(T0) == "2019-01-24T15:30:20Z"
    assert format_time(T0 + 999) == "2019-01-24T15:30:20Z"
    assert format_time(0) == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "text",
    [
        "2019-01-24T15:30:20Z",
        "2019-01-24T15:30:20+00:00",
        "2019-01-24T16:30:20+01:00",
        "2019-01-24T15:30:20",  # openHAB's form: no zone, taken as UTC
        "2019-01-24T15:30:20.000Z",
    ],
)
def test_parse_time_forms(text: str) -> None:
    assert parse_time(text) == T0


def test_parse_time_keeps_milliseconds() -> None:
    assert parse_time("2019-01-24T15:30:20.250Z") == T0 + 250


@pytest.mark.parametrize("text", ["", "tomorrow", "2019-13-01T00:00:00Z", "2019-01-24T25:00:00"])
def test_parse_time_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


# -- apply_command --------------------------------------------------------------------------------


def test_manual_sets_everything_and_bumps_version() -> None:
    before = ModuleState(version=4, time_ms=T0)
    after = apply_command(before, manual(21.5, "C"), NOW)
    assert after.mode == "MANUAL"
    assert after.function == "HEATING"
    assert after.set_point == "21.5"
    assert after.activation_time_ms is None
    assert after.time_ms == NOW
    assert after.version == 5
    assert before.version == 4  # frozen: the input is untouched


def test_manual_with_activation_time_without_zone_is_utc() -> None:
    command = manual(19.1) | {"activationTime": "2020-01-29T23:59:59"}
    after = apply_command(ModuleState(), command, NOW)
    assert after.activation_time_ms == 1_580_342_399_000


def test_manual_without_set_point_names_set_point() -> None:
    exc = command_error({"mode": "MANUAL"})
    assert exc.field == "setPoint"
    assert "setPoint" in exc.message


def test_set_point_above_40_is_refused() -> None:
    exc = command_error(manual(45))
    assert exc.field == "setPoint.value"
    assert exc.message == "setPoint.value must be between 3 and 40 °C (got 45)"


def test_set_point_below_3_is_refused() -> None:
    exc = command_error(manual(2.9))
    assert exc.field == "setPoint.value"
    assert "(got 2.9)" in exc.message


@pytest.mark.parametrize(
    ("value", "stored"),
    [(40, "40.0"), (3, "3.0"), ("40.0", "40.0"), (21.5, "21.5"), ("21.5", "21.5"), (21.25, "21.3")],
)
def test_set_point_accepted_values(value: object, stored: str) -> None:
    assert apply_command(ModuleState(), manual(value), NOW).set_point == stored


def test_set_point_unit_defaults_to_celsius() -> None:
    command = {"mode": "manual", "setPoint": {"value": "22"}}
    assert apply_command(ModuleState(), command, NOW).set_point == "22.0"


def test_set_point_in_fahrenheit_is_converted() -> None:
    assert apply_command(ModuleState(), manual(70, "F"), NOW).set_point == "21.1"
    assert apply_command(ModuleState(), manual("104", "F"), NOW).set_point == "40.0"
    exc = command_error(manual(113, "F"))
    assert exc.field == "setPoint.value"
    assert "113 °F = 45.0 °C" in exc.message


@pytest.mark.parametrize(
    "value", [True, False, None, "abc", "nan", "inf", "1_0", [21], {"v": 1}, float("nan")]
)
def test_set_point_value_must_be_a_number(value: object) -> None:
    exc = command_error(manual(value))
    assert exc.field == "setPoint.value"


def test_set_point_shape_and_unit_are_checked() -> None:
    assert command_error({"mode": "MANUAL", "setPoint": 21}).field == "setPoint"
    assert command_error(manual(21, "K")).field == "setPoint.unit"
    bad_key = {"mode": "MANUAL", "setPoint": {"value": 21, "scale": 1}}
    assert command_error(bad_key).field == "setPoint.scale"


def test_lower_case_mode_and_function_are_accepted() -> None:
    after = apply_command(ModuleState(), {"mode": "off", "function": "cooling"}, NOW)
    assert (after.mode, after.function) == ("OFF", "COOLING")


def test_function_is_kept_when_absent() -> None:
    cooling = ModuleState(function="COOLING")
    assert apply_command(cooling, {"mode": "PROTECTION"}, NOW).function == "COOLING"


@pytest.mark.parametrize("command", [{}, {"mode": None}, {"function": "HEATING"}])
def test_mode_is_required(command: dict[str, Any]) -> None:
    assert command_error(command).field == "mode"


@pytest.mark.parametrize("mode", ["HOLIDAY", "", 1, True, ["MANUAL"]])
def test_unknown_mode_is_refused(mode: object) -> None:
    assert command_error({"mode": mode}).field == "mode"


def test_unknown_function_is_refused() -> None:
    assert command_error({"mode": "OFF", "function": "DRYING"}).field == "function"


def test_unknown_key_is_named() -> None:
    exc = command_error({"mode": "OFF", "temperature": 21})
    assert exc.field == "temperature"
    assert "temperature" in exc.message


@pytest.mark.parametrize("body", [None, [], "MANUAL", 42, [{"mode": "OFF"}]])
def test_command_must_be_an_object(body: object) -> None:
    exc = command_error(body)
    assert exc.field is None
    assert "object" in exc.message


def test_boost_needs_activation_time() -> None:
    exc = command_error({"mode": "BOOST"})
    assert exc.field == "activationTime"
    assert exc.message.startswith("BOOST needs activationTime")
    assert command_error({"mode": "BOOST", "activationTime": ""}).field == "activationTime"


def test_boost_until_a_future_time() -> None:
    end = format_time(NOW + 30 * MINUTE)
    after = apply_command(ModuleState(), {"mode": "BOOST", "activationTime": end}, NOW)
    assert after.mode == "BOOST"
    assert after.activation_time_ms == NOW + 30 * MINUTE
    assert after.set_point == "20.0"  # the previous one, still shown


@pytest.mark.parametrize("offset_ms", [0, -1000, -MINUTE])
def test_boost_in_the_past_is_refused(offset_ms: int) -> None:
    command = {"mode": "BOOST", "activationTime": format_time(NOW + offset_ms)}
    assert command_error(command).field == "activationTime"


def test_boost_range_without_zone_keeps_its_length() -> None:
    # openHAB sends "now/now+30min" in its own local time, which may be hours from UTC.
    command = {"mode": "BOOST", "activationTime": "2020-01-29T10:00:00/2020-01-29T10:30:00"}
    assert apply_command(ModuleState(), command, NOW).activation_time_ms == NOW + 30 * MINUTE


def test_boost_range_with_zone_ends_at_its_end() -> None:
    start, end = format_time(NOW - MINUTE), format_time(NOW + 60 * MINUTE)
    command = {"mode": "BOOST", "activationTime": f"{start}/{end}"}
    assert apply_command(ModuleState(), command, NOW).activation_time_ms == NOW + 60 * MINUTE
    past = {"mode": "BOOST", "activationTime": f"{format_time(NOW - 9 * MINUTE)}/{start}"}
    assert command_error(past).field == "activationTime"


def test_boost_range_must_end_after_it_starts() -> None:
    command = {"mode": "BOOST", "activationTime": "2020-01-29T10:30:00/2020-01-29T10:00:00"}
    assert command_error(command).field == "activationTime"


def test_boost_validates_but_ignores_a_set_point() -> None:
    end = format_time(NOW + 30 * MINUTE)
    ok = {"mode": "BOOST", "activationTime": end, "setPoint": {"value": 25}}
    assert apply_command(ModuleState(), ok, NOW).set_point == "20.0"
    bad = {"mode": "BOOST", "activationTime": end, "setPoint": {"value": 99}}
    assert command_error(bad).field == "setPoint.value"


@pytest.mark.parametrize("value", ["soon", "2020-01-29T25:00:00", "2020/01/29", "a/b"])
def test_unparseable_activation_time_is_refused(value: str) -> None:
    assert command_error(manual(20) | {"activationTime": value}).field == "activationTime"


@pytest.mark.parametrize("value", [1_580_342_399_000, True, ["2020-01-29T23:59:59Z"]])
def test_activation_time_must_be_a_string(value: object) -> None:
    assert command_error(manual(20) | {"activationTime": value}).field == "activationTime"


def test_empty_activation_time_means_none() -> None:
    # openHAB sends "" for a MANUAL setting without an end date.
    after = apply_command(ModuleState(), manual(20) | {"activationTime": ""}, NOW)
    assert after.activation_time_ms is None


def test_automatic_sets_the_program() -> None:
    after = apply_command(ModuleState(), {"mode": "AUTOMATIC", "programs": [{"number": 3}]}, NOW)
    assert (after.mode, after.program) == ("AUTOMATIC", 3)
    as_text = {"mode": "AUTOMATIC", "programs": [{"number": "0"}]}
    assert apply_command(ModuleState(), as_text, NOW).program == 0
    assert apply_command(ModuleState(program=2), {"mode": "AUTOMATIC"}, NOW).program == 2


@pytest.mark.parametrize(
    "programs",
    [[], {"number": 1}, [1], [{}], [{"number": -1}], [{"number": True}], [{"number": "1.5"}]],
)
def test_bad_programs_are_refused(programs: object) -> None:
    assert command_error({"mode": "AUTOMATIC", "programs": programs}).field == "programs"


def test_off_and_protection_need_nothing_and_clear_the_activation_time() -> None:
    boosted = ModuleState(mode="BOOST", activation_time_ms=NOW + MINUTE, set_point="22.0")
    for mode in ("OFF", "PROTECTION"):
        after = apply_command(boosted, {"mode": mode}, NOW)
        assert after.mode == mode
        assert after.activation_time_ms is None
        assert after.set_point == "22.0"


def test_set_point_is_kept_when_not_given() -> None:
    warm = ModuleState(mode="MANUAL", set_point="23.5")
    assert apply_command(warm, {"mode": "AUTOMATIC"}, NOW).set_point == "23.5"


# -- check_mapping --------------------------------------------------------------------------------


def test_check_mapping_fills_defaults() -> None:
    assert check_mapping({}) == DEFAULT_MAPPING
    assert check_mapping(None) == DEFAULT_MAPPING
    custom = check_mapping({"temperature": "temp_c"})
    assert custom == {"temperature": "temp_c", "humidity": "humidity", "loadState": "loadState"}


@pytest.mark.parametrize(
    ("mapping", "field"),
    [
        ({"pressure": "p"}, "mapping.pressure"),
        ({"temperature": ""}, "mapping.temperature"),
        ({"temperature": "   "}, "mapping.temperature"),
        ({"humidity": 7}, "mapping.humidity"),
        ({"loadState": None}, "mapping.loadState"),
        ({"loadState": "x" * 201}, "mapping.loadState"),
        ({"temperature": "humidity"}, "mapping.humidity"),
        (["temperature"], "mapping"),
        ("temperature", "mapping"),
    ],
)
def test_check_mapping_errors(mapping: object, field: str) -> None:
    with pytest.raises(CommandError) as caught:
        check_mapping(mapping)
    assert caught.value.field == field


def test_check_mapping_accepts_200_characters() -> None:
    assert check_mapping({"loadState": "x" * 200})["loadState"] == "x" * 200


# -- apply_report ---------------------------------------------------------------------------------


def test_temperature_report_changes_the_state() -> None:
    state = ModuleState(version=2, time_ms=T0)
    after, changed = apply_report(state, DEFAULT_MAPPING, report("temperature", 21.04, T0), NOW)
    assert changed
    assert after.thermometer == Measure(T0, "21.0", "C")
    assert after.version == 3
    assert after.time_ms == NOW


def test_scaled_payload_wins_over_payload() -> None:
    message = report("temperature", 2150, T0, scaledPayload=21.5)
    after, changed = apply_report(ModuleState(), DEFAULT_MAPPING, message, NOW)
    assert changed and after.thermometer == Measure(T0, "21.5", "C")


def test_numeric_string_report() -> None:
    after, changed = apply_report(ModuleState(), DEFAULT_MAPPING, report("humidity", "48", T0), NOW)
    assert changed and after.hygrometer == Measure(T0, "48.0", "%")


def test_fahrenheit_report_is_stored_in_celsius() -> None:
    message = report("temperature", 70, T0, unit="°F")
    after, _ = apply_report(ModuleState(), DEFAULT_MAPPING, message, NOW)
    assert after.thermometer == Measure(T0, "21.1", "C")


def test_same_value_newer_updates_time_but_is_not_a_change() -> None:
    state, _ = apply_report(ModuleState(), DEFAULT_MAPPING, report("temperature", 21.5, T0), NOW)
    later = T0 + MINUTE
    after, changed = apply_report(
        state, DEFAULT_MAPPING, report("temperature", "21.50", later), NOW + MINUTE
    )
    assert not changed
    assert after.thermometer == Measure(later, "21.5", "C")
    assert after.version == state.version
    assert after.time_ms == state.time_ms


def test_older_report_is_ignored() -> None:
    state, _ = apply_report(ModuleState(), DEFAULT_MAPPING, report("temperature", 21.5, T0), NOW)
    older = report("temperature", 18.0, T0 - 1)
    assert apply_report(state, DEFAULT_MAPPING, older, NOW) == (state, False)


@pytest.mark.parametrize("payload", [None, True, "warm", "nan", [21], {"v": 21}, float("inf")])
def test_non_numeric_report_is_ignored(payload: object) -> None:
    state = ModuleState()
    assert apply_report(state, DEFAULT_MAPPING, report("temperature", payload, T0), NOW) == (
        state,
        False,
    )


def test_unmapped_property_is_ignored() -> None:
    state = ModuleState()
    assert apply_report(state, DEFAULT_MAPPING, report("pressure", 1013, T0), NOW) == (
        state,
        False,
    )


@pytest.mark.parametrize("payload", [True, 1, 1.0, "1", "on", "ON", "active", "true", " True "])
def test_load_state_on(payload: object) -> None:
    after, changed = apply_report(
        ModuleState(), DEFAULT_MAPPING, report("loadState", payload, T0), NOW
    )
    assert changed and after.load_state == "ACTIVE"
    assert after.version == 1


@pytest.mark.parametrize("payload", [False, 0, 0.0, "0", "off", "Inactive", "FALSE"])
def test_load_state_off(payload: object) -> None:
    active = ModuleState(load_state="ACTIVE")
    after, changed = apply_report(active, DEFAULT_MAPPING, report("loadState", payload, T0), NOW)
    assert changed and after.load_state == "INACTIVE"


@pytest.mark.parametrize("payload", [2, "maybe", None, [1]])
def test_unrecognised_load_state_is_ignored(payload: object) -> None:
    state = ModuleState()
    assert apply_report(state, DEFAULT_MAPPING, report("loadState", payload, T0), NOW) == (
        state,
        False,
    )


def test_unchanged_load_state_is_not_a_change() -> None:
    after, changed = apply_report(ModuleState(), DEFAULT_MAPPING, report("loadState", 0, T0), NOW)
    assert not changed
    assert after.load_state == "INACTIVE" and after.version == 0


def test_older_load_state_report_is_ignored() -> None:
    on, _ = apply_report(ModuleState(), DEFAULT_MAPPING, report("loadState", 1, T0), NOW)
    late_off = report("loadState", 0, T0 - 1)
    assert apply_report(on, DEFAULT_MAPPING, late_off, NOW) == (on, False)


def test_custom_mapping() -> None:
    mapping = check_mapping({"temperature": "t_room", "loadState": "relay"})
    state = ModuleState()
    after, changed = apply_report(state, mapping, report("t_room", 19.6, T0), NOW)
    assert changed and after.thermometer == Measure(T0, "19.6", "C")
    # The default names no longer count for the measures that were remapped.
    assert apply_report(state, mapping, report("temperature", 19.6, T0), NOW) == (state, False)
    relay_on, changed = apply_report(state, mapping, report("relay", "on", T0), NOW)
    assert changed and relay_on.load_state == "ACTIVE"


# -- storage --------------------------------------------------------------------------------------


def test_json_round_trip() -> None:
    state = ModuleState(
        function="COOLING",
        mode="BOOST",
        set_point="24.5",
        program=3,
        activation_time_ms=T0 + 30 * MINUTE,
        load_state="ACTIVE",
        time_ms=T0,
        thermometer=Measure(T0, "23.1", "C"),
        hygrometer=Measure(T0 - 5, "51.0", "%"),
        version=17,
        load_state_time_ms=T0 - 9,
    )
    raw = state.to_json()
    assert isinstance(raw, bytes)
    assert ModuleState.from_json(raw) == state
    assert ModuleState.from_json(raw.decode()) == state
    assert ModuleState.from_json(ModuleState().to_json()) == ModuleState()
    no_set_point = ModuleState(set_point=None)
    assert ModuleState.from_json(no_set_point.to_json()) == no_set_point


def test_from_json_empty_is_a_new_module() -> None:
    assert ModuleState.from_json(None) == ModuleState()
    assert ModuleState.from_json(b"") == ModuleState()
    assert ModuleState.from_json("") == ModuleState()


def test_from_json_fills_missing_keys_and_rejects_bad_ones() -> None:
    assert ModuleState.from_json(b'{"mode": "OFF"}') == ModuleState(mode="OFF")
    with pytest.raises(ValueError):
        ModuleState.from_json(b"[]")
    with pytest.raises(ValueError):
        ModuleState.from_json(b'{"version": "7"}')


# -- rendering ------------------------------------------------------------------------------------


def documented_state() -> ModuleState:
    return ModuleState(
        function="HEATING",
        mode="MANUAL",
        set_point="19.1",
        program=1,
        activation_time_ms=T0,
        load_state="ACTIVE",
        time_ms=T0,
        thermometer=Measure(T0, "19.0", "C"),
        hygrometer=Measure(T0, "50.0", "%"),
    )


def test_chronothermostat_matches_the_documented_example() -> None:
    doc = chronothermostat(documented_state(), PLANT, MODULE, ["subscription-1"])
    assert doc == {
        "function": "HEATING",
        "mode": "MANUAL",
        "setPoint": {"value": "19.1", "unit": "C"},
        "programs": [{"number": "1"}],
        "activationTime": "2019-01-24T15:30:20Z",
        "temperatureFormat": "C",
        "loadState": "ACTIVE",
        "time": "2019-01-24T15:30:20Z",
        "thermometer": {
            "measures": [{"timeStamp": "2019-01-24T15:30:20Z", "value": "19.0", "unit": "C"}]
        },
        "hygrometer": {
            "measures": [{"timeStamp": "2019-01-24T15:30:20Z", "value": "50.0", "unit": "%"}]
        },
        "sender": {
            "addressType": "AddressLocation",
            "system": "thermoregulation",
            "plant": {"id": PLANT, "module": {"id": MODULE}},
        },
        "receiver": {"oid": ["subscription-1"]},
    }
    assert list(doc) == [
        "function",
        "mode",
        "setPoint",
        "programs",
        "activationTime",
        "temperatureFormat",
        "loadState",
        "time",
        "thermometer",
        "hygrometer",
        "sender",
        "receiver",
    ]


def test_chronothermostat_omits_what_is_absent() -> None:
    doc = chronothermostat(ModuleState(set_point=None), PLANT, MODULE)
    assert "activationTime" not in doc
    assert "setPoint" not in doc
    assert "receiver" not in doc
    assert doc["thermometer"] == {"measures": []}
    assert doc["hygrometer"] == {"measures": []}
    assert doc["time"] == "1970-01-01T00:00:00Z"


def test_module_status_wraps_one_chronothermostat_without_receiver() -> None:
    status = module_status(documented_state(), PLANT, MODULE)
    assert status == {"chronothermostats": [chronothermostat(documented_state(), PLANT, MODULE)]}
    assert "receiver" not in status["chronothermostats"][0]


def test_notification_body() -> None:
    body = notification_body("evt-1", documented_state(), PLANT, MODULE, "sub-9", NOW)
    events = orjson.loads(body)
    assert events == [
        {
            "id": "evt-1",
            "eventType": EVENT_TYPE,
            "subject": f"plants/{PLANT}/modules/{MODULE}",
            "eventTime": format_time(NOW),
            "data": {
                "chronothermostats": [
                    chronothermostat(documented_state(), PLANT, MODULE, ["sub-9"])
                ]
            },
        }
    ]
    assert EVENT_TYPE == "chronothermostat.changed"
    assert events[0]["eventTime"].endswith("Z")


def test_validation_body() -> None:
    events = orjson.loads(validation_body("evt-2", "code-123", PLANT, T0))
    assert events == [
        {
            "id": "evt-2",
            "eventType": VALIDATION_EVENT_TYPE,
            "subject": f"plants/{PLANT}",
            "eventTime": "2019-01-24T15:30:20Z",
            "data": {"validationCode": "code-123", "validationUrl": None},
        }
    ]
    assert VALIDATION_EVENT_TYPE == "Microsoft.EventGrid.SubscriptionValidationEvent"


@pytest.mark.parametrize(
    ("body", "answered"),
    [
        (b'{"validationResponse": "code-123"}', True),
        (b'{"validationResponse": "code-124"}', False),
        (b'{"validationResponse": "CODE-123"}', False),
        (b'{"validationResponse": 123}', False),
        (b'{"validationCode": "code-123"}', False),
        (b'[{"validationResponse": "code-123"}]', False),
        (b'"code-123"', False),
        (b"code-123", False),
        (b"", False),
        (b"{", False),
        (b'{"result":0}', False),
        (b"\xff\xfe", False),
    ],
)
def test_validation_answered(body: bytes, answered: bool) -> None:
    assert validation_answered(body, "code-123") is answered
