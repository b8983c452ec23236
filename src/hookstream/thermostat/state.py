"""A chronothermostat module's state, its "set" command, gateway reports and rendering (pure).

The shapes follow the BTicino/Legrand Smarther v2.0 API, because existing clients (openHAB's
bticinosmarther binding) parse them: numbers are strings, times are RFC 3339 UTC with a Z.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar

import orjson

from hookstream.errors import HookstreamError

FUNCTIONS = ("HEATING", "COOLING")
MODES = ("AUTOMATIC", "MANUAL", "BOOST", "OFF", "PROTECTION")
LOAD_STATES = ("ACTIVE", "INACTIVE")
COMMAND_KEYS = ("function", "mode", "setPoint", "programs", "activationTime")

SET_POINT_MIN = Decimal(3)
SET_POINT_MAX = Decimal(40)
# openHAB reads a program number into a Java int; a larger one would break its parser.
PROGRAM_MAX = 2**31 - 1

DEFAULT_MAPPING: dict[str, str] = {
    "temperature": "temperature",
    "humidity": "humidity",
    "loadState": "loadState",
}
MAPPING_VALUE_MAX = 200

EVENT_TYPE = "chronothermostat.changed"
VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"

_T = TypeVar("_T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_TENTH = Decimal("0.1")
# Python's float() also takes "1_0", "nan" and "infinity"; a JSON-ish number is all we mean.
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NUMBER_TEXT_MAX = 64
_NUMBER_LIMIT = Decimal(10**9)
_DIGITS_RE = re.compile(r"\d{1,10}")
_FAHRENHEIT_UNITS = frozenset({"f", "°f", "degf", "fahrenheit"})
_LOAD_ON = frozenset({"1", "on", "active", "true"})
_LOAD_OFF = frozenset({"0", "off", "inactive", "false"})


class CommandError(HookstreamError):
    """A command or setting the API refuses; ``field`` names the offending input when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Measure:
    """One sensor reading: when the gateway took it, its value as text, and its unit."""

    time_ms: int
    value: str
    unit: str


@dataclass(frozen=True, slots=True)
class ModuleState:
    """Everything the API shows about one chronothermostat module; defaults are a new module's."""

    function: str = "HEATING"
    mode: str = "AUTOMATIC"
    set_point: str | None = "20.0"
    program: int = 1
    activation_time_ms: int | None = None
    temperature_format: str = "C"
    load_state: str = "INACTIVE"
    time_ms: int = 0
    thermometer: Measure | None = None
    hygrometer: Measure | None = None
    version: int = 0
    # The gateway's timestamp of the report behind load_state: without it an old report that
    # arrives late could switch the load back.
    load_state_time_ms: int | None = None

    def to_json(self) -> bytes:
        """The state as JSON bytes for a TEXT column; ``from_json`` reads it back unchanged."""
        return orjson.dumps(
            {
                "function": self.function,
                "mode": self.mode,
                "set_point": self.set_point,
                "program": self.program,
                "activation_time_ms": self.activation_time_ms,
                "temperature_format": self.temperature_format,
                "load_state": self.load_state,
                "time_ms": self.time_ms,
                "thermometer": _measure_to_dict(self.thermometer),
                "hygrometer": _measure_to_dict(self.hygrometer),
                "version": self.version,
                "load_state_time_ms": self.load_state_time_ms,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> ModuleState:
        """The state ``to_json`` stored; None or empty is a new module's state."""
        if raw is None or len(raw) == 0:
            return cls()
        doc = orjson.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("a stored module state must be a JSON object")
        default = cls()
        # Missing keys take the default, so rows written before a field existed still load.
        return cls(
            function=_stored(doc, "function", str, default.function),
            mode=_stored(doc, "mode", str, default.mode),
            set_point=_stored_optional(doc, "set_point", str, default.set_point),
            program=_stored(doc, "program", int, default.program),
            activation_time_ms=_stored_optional(doc, "activation_time_ms", int, None),
            temperature_format=_stored(doc, "temperature_format", str, default.temperature_format),
            load_state=_stored(doc, "load_state", str, default.load_state),
            time_ms=_stored(doc, "time_ms", int, default.time_ms),
            thermometer=_measure_from_dict(doc.get("thermometer"), "thermometer"),
            hygrometer=_measure_from_dict(doc.get("hygrometer"), "hygrometer"),
            version=_stored(doc, "version", int, default.version),
            load_state_time_ms=_stored_optional(doc, "load_state_time_ms", int, None),
        )


def _measure_to_dict(measure: Measure | None) -> dict[str, Any] | None:
    if measure is None:
        return None
    return {"time_ms": measure.time_ms, "value": measure.value, "unit": measure.unit}


def _measure_from_dict(raw: object, name: str) -> Measure | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"stored {name} must be an object or null")
    return Measure(
        time_ms=_stored(raw, "time_ms", int, None),
        value=_stored(raw, "value", str, None),
        unit=_stored(raw, "unit", str, None),
    )


def _stored(doc: Mapping[str, Any], key: str, kind: type[_T], default: _T | None) -> _T:
    if key not in doc:
        if default is None:
            raise ValueError(f"stored module state lacks {key}")
        return default
    value = doc[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"stored {key} must be {kind.__name__}")
    return value


def _stored_optional(
    doc: Mapping[str, Any], key: str, kind: type[_T], default: _T | None
) -> _T | None:
    if key not in doc:
        return default
    value = doc[key]
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"stored {key} must be {kind.__name__} or null")
    return value


# -- times -------------------------------------------------------------------------------------


def format_time(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with whole seconds and a Z: 2019-01-24T15:30:20Z."""
    moment = _EPOCH + timedelta(seconds=ms // 1000)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z"
    )


def parse_time(value: str) -> int:
    """An RFC 3339 / ISO 8601 time in epoch ms; no offset means UTC (ValueError if bad)."""
    return _parse_time(value)[0]


def _parse_time(value: str) -> tuple[int, bool]:
    """The time in epoch milliseconds, and whether the text carried an offset."""
    text = value.strip()
    if not text:
        raise ValueError("empty time")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an RFC 3339 time: {_show(value)}") from None
    zoned = moment.tzinfo is not None
    if not zoned:
        # openHAB sends its local time without a zone; the API has no way to learn the zone.
        moment = moment.replace(tzinfo=UTC)
    try:
        return (moment - _EPOCH) // _ONE_MS, zoned
    except OverflowError:
        raise ValueError(f"time out of range: {_show(value)}") from None


# -- the "set" command ---------------------------------------------------------------------------


def apply_command(state: ModuleState, command: object, now_ms: int) -> ModuleState:
    """The state after the API's "set" call with body ``command`` (CommandError if invalid)."""
    if not isinstance(command, dict):
        raise CommandError("the command must be a JSON object")
    for key in command:
        if key not in COMMAND_KEYS:
            raise CommandError(
                f"unknown field {_show(key)}; allowed: {', '.join(COMMAND_KEYS)}", str(key)
            )

    mode = _choice(command.get("mode"), MODES, "mode")
    if mode is None:
        raise CommandError(f"mode is required: one of {', '.join(MODES)}", "mode")
    function = _choice(command.get("function"), FUNCTIONS, "function") or state.function
    # Given values are checked whatever the mode, so a bad one is never silently accepted.
    set_point = _set_point(command.get("setPoint"))
    program = _program(command.get("programs"))
    activation = _activation_time(command.get("activationTime"), now_ms)

    if mode == "MANUAL" and set_point is None:
        raise CommandError('MANUAL needs setPoint, e.g. {"value": 21.5, "unit": "C"}', "setPoint")
    if mode == "BOOST":
        if activation is None:
            raise CommandError(
                "BOOST needs activationTime, the end of the boost (RFC 3339, e.g. "
                '"2020-01-29T10:30:00Z", or a start/end range)',
                "activationTime",
            )
        if activation <= now_ms:
            raise CommandError(
                f"activationTime must be in the future for BOOST (got {format_time(activation)},"
                f" now is {format_time(now_ms)})",
                "activationTime",
            )

    return replace(
        state,
        function=function,
        mode=mode,
        # Only MANUAL holds a set point; other modes keep the old one so the status shows one.
        set_point=set_point if mode == "MANUAL" and set_point is not None else state.set_point,
        program=program if mode == "AUTOMATIC" and program is not None else state.program,
        activation_time_ms=activation,
        time_ms=now_ms,
        version=state.version + 1,
    )


def _choice(value: object, allowed: tuple[str, ...], field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().upper() in allowed:
        return value.strip().upper()
    raise CommandError(f"{field} must be one of {', '.join(allowed)} (got {_show(value)})", field)


def _set_point(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CommandError(
            'setPoint must be an object like {"value": 21.5, "unit": "C"}', "setPoint"
        )
    for key in value:
        if key not in ("value", "unit"):
            raise CommandError(
                f"unknown field setPoint.{key}; allowed: value, unit", f"setPoint.{key}"
            )
    unit = value.get("unit", "C")
    if not isinstance(unit, str) or unit.strip().upper() not in ("C", "F"):
        raise CommandError(f'setPoint.unit must be "C" or "F" (got {_show(unit)})', "setPoint.unit")
    fahrenheit = unit.strip().upper() == "F"
    raw = value.get("value")
    degrees = _decimal(raw)
    bounds = f"between {SET_POINT_MIN} and {SET_POINT_MAX} °C"
    if degrees is None:
        raise CommandError(
            f"setPoint.value must be a number {bounds} (got {_show(raw)})", "setPoint.value"
        )
    celsius = _to_celsius(degrees) if fahrenheit else degrees
    if not SET_POINT_MIN <= celsius <= SET_POINT_MAX:
        given = raw.strip() if isinstance(raw, str) else _show(raw)
        if fahrenheit:
            given = f"{given} °F = {_one_decimal(celsius)} °C"
        raise CommandError(f"setPoint.value must be {bounds} (got {given})", "setPoint.value")
    return _one_decimal(celsius)


def _program(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise CommandError('programs must be a non-empty list like [{"number": 1}]', "programs")
    first = value[0]
    if not isinstance(first, dict) or "number" not in first:
        raise CommandError('programs[0] must be an object like {"number": 1}', "programs")
    number = first["number"]
    program: int | None = None
    if isinstance(number, int) and not isinstance(number, bool):
        program = number
    elif isinstance(number, str) and _DIGITS_RE.fullmatch(number.strip()):
        program = int(number.strip())
    if program is None or not 0 <= program <= PROGRAM_MAX:
        raise CommandError(
            f"programs[0].number must be a whole number from 0 to {PROGRAM_MAX}"
            f" (got {_show(number)})",
            "programs",
        )
    return program


def _activation_time(value: object, now_ms: int) -> int | None:
    """The activation time in epoch ms; openHAB sends "" for none and "start/end" for BOOST."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise CommandError(
            f"activationTime must be an RFC 3339 string (got {_show(value)})", "activationTime"
        )
    if not value.strip():
        return None
    start_text, slash, end_text = value.partition("/")
    try:
        if not slash:
            return parse_time(value)
        (start, start_zoned), (end, end_zoned) = _parse_time(start_text), _parse_time(end_text)
    except ValueError:
        raise CommandError(
            f'activationTime must be an RFC 3339 time like "2020-01-29T23:59:59Z" or a'
            f" start/end range (got {_show(value)})",
            "activationTime",
        ) from None
    if end <= start:
        raise CommandError(
            f"activationTime range must end after it starts (got {_show(value)})", "activationTime"
        )
    if start_zoned or end_zoned:
        return end
    # A zoneless range is openHAB's boost: "now" to "now + 30 min" in its local time, which
    # read as UTC would be hours off (in the past west of Greenwich); its length is what counts.
    return now_ms + (end - start)


# -- reports from the gateway -------------------------------------------------------------------


def check_mapping(mapping: object) -> dict[str, str]:
    """A user's measure -> datastream property mapping, checked, with defaults filled in."""
    if mapping is None:
        return dict(DEFAULT_MAPPING)
    if not isinstance(mapping, dict):
        raise CommandError(
            f"mapping must be an object with keys {', '.join(DEFAULT_MAPPING)}", "mapping"
        )
    result = dict(DEFAULT_MAPPING)
    for key, value in mapping.items():
        if key not in DEFAULT_MAPPING:
            raise CommandError(
                f"unknown field mapping.{key}; allowed: {', '.join(DEFAULT_MAPPING)}",
                f"mapping.{key}",
            )
        if not isinstance(value, str) or not value.strip() or len(value) > MAPPING_VALUE_MAX:
            raise CommandError(
                f"mapping.{key} must be a property name of 1 to {MAPPING_VALUE_MAX} characters"
                f" (got {_show(value)})",
                f"mapping.{key}",
            )
        result[key] = value
    seen: dict[str, str] = {}
    for key, value in result.items():
        # apply_report checks temperature first, so a shared property would starve the others.
        if value in seen:
            raise CommandError(
                f"mapping.{key} uses property {_show(value)}, already mapped to {seen[value]}",
                f"mapping.{key}",
            )
        seen[value] = key
    return result


def apply_report(
    state: ModuleState, mapping: Mapping[str, str], message: Mapping[str, Any], now_ms: int
) -> tuple[ModuleState, bool]:
    """The state after one datastream message, and whether a subscriber would see a change."""
    prop = message.get("property")
    timestamp = message.get("timestamp")
    if not isinstance(prop, str) or not isinstance(timestamp, int) or isinstance(timestamp, bool):
        return state, False
    scaled = message.get("scaledPayload")
    value = scaled if scaled is not None else message.get("payload")

    if prop == mapping.get("temperature"):
        degrees = _decimal(value)
        if degrees is None:
            return state, False
        unit = message.get("unit")
        if isinstance(unit, str) and unit.strip().lower() in _FAHRENHEIT_UNITS:
            degrees = _to_celsius(degrees)
        reading = Measure(timestamp, _one_decimal(degrees), "C")
        return _new_measure(state, reading, now_ms)
    if prop == mapping.get("humidity"):
        percent = _decimal(value)
        if percent is None:
            return state, False
        reading = Measure(timestamp, _one_decimal(percent), "%")
        return _new_measure(state, reading, now_ms)
    if prop == mapping.get("loadState"):
        load = _load_state(value)
        if load is None:
            return state, False
        if state.load_state_time_ms is not None and timestamp < state.load_state_time_ms:
            return state, False
        if load == state.load_state:
            return replace(state, load_state_time_ms=timestamp), False
        new = replace(
            state,
            load_state=load,
            load_state_time_ms=timestamp,
            time_ms=now_ms,
            version=state.version + 1,
        )
        return new, True
    return state, False


def _new_measure(state: ModuleState, reading: Measure, now_ms: int) -> tuple[ModuleState, bool]:
    thermometer = reading.unit == "C"
    old = state.thermometer if thermometer else state.hygrometer
    if old is not None and reading.time_ms < old.time_ms:
        return state, False
    if old is not None and old.value == reading.value:
        # A fresh reading of the same value: subscribers see nothing new, so no new version.
        if thermometer:
            return replace(state, thermometer=reading), False
        return replace(state, hygrometer=reading), False
    new = replace(state, time_ms=now_ms, version=state.version + 1)
    if thermometer:
        return replace(new, thermometer=reading), True
    return replace(new, hygrometer=reading), True


def _load_state(value: object) -> str | None:
    if isinstance(value, bool):
        return "ACTIVE" if value else "INACTIVE"
    if isinstance(value, int | float):
        # A scaled payload of a 0/1 reading arrives as 1.0 or 0.0.
        if value == 1:
            return "ACTIVE"
        if value == 0:
            return "INACTIVE"
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _LOAD_ON:
            return "ACTIVE"
        if text in _LOAD_OFF:
            return "INACTIVE"
    return None


# -- numbers ------------------------------------------------------------------------------------


def _decimal(value: object) -> Decimal | None:
    """A finite number given as a JSON number or a numeric string; None for anything else."""
    number: Decimal | None = None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        # repr is the shortest text that reads back as the float: 21.15 stays 21.15.
        number = Decimal(repr(value)) if math.isfinite(value) else None
    elif isinstance(value, str):
        text = value.strip()
        if len(text) <= _NUMBER_TEXT_MAX and _NUMBER_RE.fullmatch(text):
            number = Decimal(text)
    # No thermostat reads a billion degrees; the bound keeps Decimal arithmetic and text small.
    if number is None or abs(number) >= _NUMBER_LIMIT:
        return None
    return number


def _to_celsius(fahrenheit: Decimal) -> Decimal:
    return (fahrenheit - 32) * 5 / 9


def _one_decimal(value: Decimal) -> str:
    """The value rounded half up to one decimal, as the API writes it: "21.5", "-3.0"."""
    rounded = value.quantize(_TENTH, rounding=ROUND_HALF_UP)
    if rounded == 0:
        return "0.0"  # not "-0.0"
    return str(rounded)


def _show(value: object) -> str:
    """A short rendering of a client's value for an error message."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = orjson.dumps(value).decode()
        except TypeError:
            text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- rendering ----------------------------------------------------------------------------------


def chronothermostat(
    state: ModuleState, plant_id: str, module_id: str, receivers: Sequence[str] | None = None
) -> dict[str, Any]:
    """The module as the API's chronothermostat object, keys in the API's order."""
    doc: dict[str, Any] = {"function": state.function, "mode": state.mode}
    if state.set_point is not None:
        doc["setPoint"] = {"value": state.set_point, "unit": "C"}
    doc["programs"] = [{"number": str(state.program)}]
    if state.activation_time_ms is not None:
        doc["activationTime"] = format_time(state.activation_time_ms)
    doc["temperatureFormat"] = state.temperature_format
    doc["loadState"] = state.load_state
    doc["time"] = format_time(state.time_ms)
    doc["thermometer"] = _sensor(state.thermometer)
    doc["hygrometer"] = _sensor(state.hygrometer)
    doc["sender"] = {
        "addressType": "AddressLocation",
        "system": "thermoregulation",
        "plant": {"id": plant_id, "module": {"id": module_id}},
    }
    if receivers is not None:
        doc["receiver"] = {"oid": list(receivers)}
    return doc


def _sensor(measure: Measure | None) -> dict[str, Any]:
    if measure is None:
        return {"measures": []}
    return {
        "measures": [
            {
                "timeStamp": format_time(measure.time_ms),
                "value": measure.value,
                "unit": measure.unit,
            }
        ]
    }


def module_status(state: ModuleState, plant_id: str, module_id: str) -> dict[str, Any]:
    """The body of the API's module status answer."""
    return {"chronothermostats": [chronothermostat(state, plant_id, module_id)]}


def notification_body(
    event_id: str,
    state: ModuleState,
    plant_id: str,
    module_id: str,
    subscription_id: str,
    now_ms: int,
) -> bytes:
    """The JSON array of one change event, as the API posts it to a subscriber."""
    event = {
        "id": event_id,
        "eventType": EVENT_TYPE,
        "subject": f"plants/{plant_id}/modules/{module_id}",
        "eventTime": format_time(now_ms),
        "data": {
            "chronothermostats": [chronothermostat(state, plant_id, module_id, [subscription_id])]
        },
    }
    return orjson.dumps([event])


def validation_body(event_id: str, validation_code: str, plant_id: str, now_ms: int) -> bytes:
    """The JSON array of one subscription validation event, in Azure Event Grid's shape."""
    event = {
        "id": event_id,
        "eventType": VALIDATION_EVENT_TYPE,
        "subject": f"plants/{plant_id}",
        "eventTime": format_time(now_ms),
        "data": {"validationCode": validation_code, "validationUrl": None},
    }
    return orjson.dumps([event])


def validation_answered(body: bytes, validation_code: str) -> bool:
    """Whether a subscriber's answer echoes the code: {"validationResponse": code}."""
    try:
        doc = orjson.loads(body)
    except (ValueError, TypeError):
        return False
    if not isinstance(doc, dict):
        return False
    answer = doc.get("validationResponse")
    return isinstance(answer, str) and answer == validation_code
