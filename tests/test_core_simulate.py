"""The simulated fleet's data, pacing, batching and counters (pure: no I/O)."""

from __future__ import annotations

from collections import Counter, defaultdict
from statistics import mean
from typing import Any

import orjson
import pytest

from hookstream.pipeline.message import FIELDS, parse_messages
from hookstream.tools.simulate_fleet import (
    BATTERY_LOW_PERCENT,
    CO2_HIGH_PPM,
    OVERLOAD_WATTS,
    Batcher,
    Fleet,
    Outgoing,
    Pacer,
    Reservoir,
    Stats,
    device_type,
    gateway_external_id,
    gateway_name,
    http_body,
    mosquitto_passwd_args,
    mosquitto_passwd_line,
    mqtt_payload,
    mqtt_topic,
    parse_mqtt_url,
    percentile,
)

T0 = 1_767_225_600_000


def run(fleet: Fleet, n: int, step_ms: int = 50) -> list[Outgoing]:
    return [fleet.next(T0 + i * step_ms) for i in range(n)]


def by_property(messages: list[Outgoing], prop: str) -> list[dict[str, Any]]:
    return [m.body for m in messages if m.body["property"] == prop]


def test_the_same_seed_makes_the_same_data() -> None:
    first, again = run(Fleet(3, 4, seed=42), 500), run(Fleet(3, 4, seed=42), 500)
    assert first == again
    assert run(Fleet(3, 4, seed=43), 500) != first


def test_every_message_is_a_valid_datastream_message_in_the_format_order() -> None:
    messages = run(Fleet(5, 4, seed=1), 1000)
    parsed, is_batch = parse_messages(orjson.dumps([m.body for m in messages]))
    assert len(parsed) == 1000 and is_batch
    for m in messages:
        assert list(m.body) == [f for f in FIELDS if f != "receivedAt"]  # the server sets it
        assert m.body["timestamp"] >= T0
        assert all(isinstance(v, str) for v in m.body["tags"].values())
        assert {"site", "floor"} <= set(m.body["tags"])
        assert m.body["name"] and m.body["slug"] and m.body["propertyId"]
        assert m.body["equipmentId"] and m.body["gatewayInterfaceId"]
        assert m.body["externalId"].startswith(gateway_external_id(m.gateway))
        assert m.kind in ("values", "events", "alarms")
        assert 0 <= m.gateway < 5


def test_mostly_values_fewer_events_rare_alarms() -> None:
    kinds = Counter(m.kind for m in run(Fleet(5, 4, seed=7), 5000))
    assert kinds["values"] > kinds["events"] > kinds["alarms"] > 0
    assert kinds["alarms"] < 0.05 * 5000


def test_two_gateways_of_two_devices_hold_every_device_type() -> None:
    assert {device_type(g, d) for g in range(2) for d in range(2)} == {
        "climate", "energy", "door"}
    assert {d.type for d in Fleet(2, 2, seed=1).devices} == {"climate", "energy", "door"}
    # One climate sensor only: no door, so no events.
    assert {m.kind for m in run(Fleet(1, 1, seed=1), 500)} <= {"values", "alarms"}


def test_names_and_ids_of_gateways() -> None:
    assert gateway_name(0) == "Gateway 01" and gateway_external_id(0) == "SIM-0001"
    assert gateway_name(11) == "Gateway 12" and gateway_external_id(11) == "SIM-0012"


def test_climate_readings_stay_realistic() -> None:
    messages = run(Fleet(4, 3, seed=3), 6000)
    temps = by_property(messages, "temperature")
    assert temps and all(b["unit"] == "°C" for b in temps)
    for b in temps:
        assert isinstance(b["payload"], int) and b["scaledPayload"] == b["payload"] / 100
        assert 15 <= b["scaledPayload"] <= 28
    assert abs(mean(b["scaledPayload"] for b in temps) - 21) < 1.5
    humidity = by_property(messages, "humidity")
    assert humidity and all(30 <= b["scaledPayload"] <= 70 and b["unit"] == "%"
                            for b in humidity)
    co2 = by_property(messages, "co2")
    assert co2 and all(400 <= b["payload"] <= 2000 and b["unit"] == "ppm" for b in co2)
    assert len({b["payload"] for b in co2}) > 10, "CO2 moves"


def test_energy_totals_only_grow_and_power_is_in_watts() -> None:
    messages = run(Fleet(3, 3, seed=5), 4000, step_ms=1000)
    totals: dict[str, list[int]] = defaultdict(list)
    for b in by_property(messages, "energy"):
        assert b["unit"] == "kWh" and b["scaledPayload"] == b["payload"] / 1000
        totals[b["deviceId"]].append(b["payload"])
    assert totals
    for series in totals.values():
        assert series == sorted(series), "a meter's total never goes back"
        assert series[-1] > series[0]
    power = by_property(messages, "power")
    assert power and all(b["unit"] == "W" and 50 <= b["scaledPayload"] <= 4000 for b in power)


def test_doors_alternate_open_and_closed() -> None:
    doors: dict[str, list[str]] = defaultdict(list)
    for m in run(Fleet(3, 3, seed=9), 3000):
        if m.kind == "events":
            assert m.body["property"] == "door" and m.body["scaledPayload"] is None
            doors[m.body["deviceId"]].append(m.body["payload"])
    assert doors
    for states in doors.values():
        assert set(states) <= {"open", "closed"}
        assert all(a != b for a, b in zip(states, states[1:], strict=False))


def test_alarms_follow_the_state_of_their_device() -> None:
    alarms = [m.body for m in run(Fleet(6, 5, seed=11), 20000) if m.kind == "alarms"]
    names = Counter(b["property"] for b in alarms)
    assert names["co2_high"] and names["battery_low"]
    for b in alarms:
        assert b["tags"]["severity"] in ("warning", "critical")
        if b["property"] == "co2_high":
            assert b["payload"] >= CO2_HIGH_PPM and b["deviceId"].startswith("climate-")
        elif b["property"] == "battery_low":
            assert b["payload"] <= BATTERY_LOW_PERCENT + 1 and b["unit"] == "%"
            assert not b["deviceId"].startswith("energy-"), "meters are mains-powered"
        else:
            assert b["property"] == "overload" and b["scaledPayload"] >= OVERLOAD_WATTS


def test_some_devices_are_out_of_service_and_stay_so() -> None:
    messages = run(Fleet(10, 10, seed=2), 5000)
    flags: dict[str, set[bool]] = defaultdict(set)
    for m in messages:
        flags[m.body["deviceId"]].add(m.body["isOutOfService"])
    assert all(len(f) == 1 for f in flags.values())
    values = Counter(next(iter(f)) for f in flags.values())
    assert values[True] and values[False] > values[True]


# --- pacing and batching ------------------------------------------------------------------

def test_the_pacer_spreads_messages_evenly() -> None:
    pacer = Pacer(40)
    per_tick = [pacer.due(ms / 1000) for ms in range(2000)]  # a tick every millisecond, 2 s
    assert sum(per_tick) == 80, "rate x duration"
    assert max(per_tick) == 1, "one at a time, never a burst"
    sent_at = [ms for ms, n in enumerate(per_tick) if n]
    assert all(b - a == 25 for a, b in zip(sent_at, sent_at[1:], strict=False))
    assert pacer.delay(1.99) == pytest.approx(0.01)


def test_a_pacer_that_fell_behind_does_not_burst() -> None:
    pacer = Pacer(100, catch_up=0.1)
    assert pacer.due(0.0) == 1
    assert pacer.due(5.0) == 10, "at most a tenth of a second's worth at once"
    assert pacer.skipped == 500 - 10
    assert pacer.due(5.0) == 0 and pacer.due(5.01) == 1


def test_the_batcher_groups_per_gateway_and_kind() -> None:
    batcher = Batcher(3, max_wait=1.0)

    def msg(gateway: int, kind: str, n: int) -> Outgoing:
        return Outgoing(gateway, kind, {"n": n})

    assert batcher.add(msg(0, "values", 1), 0.0) == []
    assert batcher.add(msg(1, "values", 2), 0.1) == []
    assert batcher.add(msg(0, "events", 3), 0.2) == []
    assert batcher.add(msg(0, "values", 4), 0.3) == []
    assert batcher.add(msg(0, "values", 5), 0.4) == [(0, "values", [{"n": 1}, {"n": 4},
                                                                      {"n": 5}])]
    assert batcher.expired(0.9) == []
    assert batcher.expired(1.1) == [(1, "values", [{"n": 2}])]
    assert batcher.flush() == [(0, "events", [{"n": 3}])]
    assert batcher.flush() == []
    one = Batcher(1)
    assert one.add(msg(2, "alarms", 6), 0.0) == [(2, "alarms", [{"n": 6}])]
    with pytest.raises(ValueError):
        Batcher(1001)


def test_http_bodies_are_an_object_or_an_array() -> None:
    assert orjson.loads(http_body([{"a": 1}])) == {"a": 1}
    assert orjson.loads(http_body([{"a": 1}, {"a": 2}])) == [{"a": 1}, {"a": 2}]


# --- MQTT (the transport itself is tested end to end with the MQTT bridge) -----------------

def test_mqtt_topics_and_bodies() -> None:
    assert mqtt_topic("gw_01abc", "values") == "hookstream/gw_01abc/values"
    assert mqtt_topic("gw_01abc", "alarms") == "hookstream/gw_01abc/alarms"
    with pytest.raises(ValueError):
        mqtt_topic("gw_01abc", "metrics")
    body = run(Fleet(1, 2, seed=1), 1)[0].body
    assert orjson.loads(mqtt_payload(body)) == body


def test_mqtt_urls() -> None:
    plain = parse_mqtt_url("mqtt://127.0.0.1")
    assert (plain.host, plain.port, plain.tls) == ("127.0.0.1", 1883, False)
    tls = parse_mqtt_url("mqtts://broker.example:8884")
    assert (tls.host, tls.port, tls.tls) == ("broker.example", 8884, True)
    assert parse_mqtt_url("mqtts://broker.example").port == 8883
    for bad in ("mqtt://user:pass@127.0.0.1:1883", "http://127.0.0.1:1883", "mqtt://",
                "mqtt://127.0.0.1:99999"):
        with pytest.raises(ValueError):
            parse_mqtt_url(bad)


# --- counters -------------------------------------------------------------------------------

def test_mosquitto_passwd_calls() -> None:
    assert mosquitto_passwd_args("/etc/mosquitto/hookstream/passwords", "gw_01", "hsi_x") == [
        "mosquitto_passwd", "-b", "/etc/mosquitto/hookstream/passwords", "gw_01", "hsi_x"]
    assert mosquitto_passwd_args("p", "gw_01", "hsi_x", create=True,
                                 program="/usr/bin/mosquitto_passwd") == [
        "/usr/bin/mosquitto_passwd", "-c", "-b", "p", "gw_01", "hsi_x"]
    # A line to paste into a shell, whatever the file's name.
    assert mosquitto_passwd_line("/srv/my broker/passwords", "gw_01", "hsi_x") == (
        "mosquitto_passwd -b '/srv/my broker/passwords' gw_01 hsi_x")


def test_percentiles() -> None:
    assert percentile([], 50) is None
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 50) == 50 and percentile(samples, 99) == 99
    assert percentile(samples, 100) == 100 and percentile([7.0], 99) == 7


def test_the_reservoir_keeps_a_bounded_sample() -> None:
    reservoir = Reservoir(capacity=100, seed=1)
    for i in range(10_000):
        reservoir.add(float(i))
    assert len(reservoir.samples) == 100 and reservoir.seen == 10_000
    assert max(reservoir.samples) > 5000, "later values get in too"


def test_stats_count_per_kind_and_reason() -> None:
    stats = Stats()
    stats.sent("values", 10)
    stats.accepted("values", 8, 12.0, at=5.0)
    stats.refused("values", 1, "422 validation_failed")
    stats.sent("alarms", 2)
    stats.refused("alarms", 2, "timeout")
    total = stats.total()
    assert (total.sent, total.accepted, total.refused_total) == (12, 8, 3)
    assert total.refused == Counter({"timeout": 2, "422 validation_failed": 1})
    assert stats.unanswered() == 1 and stats.last_answer == 5.0


def test_the_current_rate_looks_a_few_seconds_back() -> None:
    stats = Stats()
    assert stats.mark(0.0)["values"] == 0
    stats.accepted("values", 10, 1.0)
    assert stats.mark(1.0)["values"] == pytest.approx(10)
    stats.accepted("values", 30, 1.0)
    assert stats.mark(2.0)["values"] == pytest.approx(20)
    assert stats.mark(3.0)["values"] == pytest.approx(15)  # (40 - 10) over the last 2 s
    assert stats.mark(5.0)["values"] == 0, "nothing since 3 s"
