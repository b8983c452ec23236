"""The simulated fleet behind ``hookstream simulate`` (pure, no I/O, deterministic per seed).

Gateways carry devices of three types: climate sensors (temperature, humidity, CO2), energy
meters (energy total, power) and door contacts (open/closed events). Readings drift like real
ones; alarms follow the state (``co2_high`` only while CO2 is high, ``battery_low`` only on a
low battery, ``overload`` only under a high load). Also here: the pacing of a steady rate,
HTTP batches, the counters and latency figures of a run, the MQTT topic and URL rules, and the
``mosquitto_passwd`` calls that let the gateways sign in to a broker.
"""

from __future__ import annotations

import math
import random
import shlex
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson

from hookstream.pipeline.message import FIELDS, KINDS

DeviceType = Literal["climate", "energy", "door"]
DEVICE_TYPES: tuple[DeviceType, ...] = ("climate", "energy", "door")

# The mix of a run: mostly values, fewer events, rare alarms (renormalized over the kinds
# the fleet can produce: a fleet without door contacts sends no events).
KIND_WEIGHTS: dict[str, float] = {"values": 0.86, "events": 0.12, "alarms": 0.02}

CO2_HIGH_PPM = 1000  # a common indoor air quality limit
BATTERY_LOW_PERCENT = 20
OVERLOAD_WATTS = 3000.0

SITES: tuple[str, ...] = (
    "Lyon HQ", "Turin plant", "Madrid office", "Berlin depot", "Oslo lab", "Ghent warehouse",
)
ROOMS: tuple[str, ...] = (
    "lobby", "meeting room", "server room", "kitchen", "open space", "storage", "workshop",
)
_INTERFACES: dict[DeviceType, str] = {"climate": "zigbee-1", "energy": "modbus-rtu-1",
                                      "door": "zigbee-1"}
_OUT_OF_SERVICE_SHARE = 0.1


def gateway_name(index: int) -> str:
    """``Gateway 01`` for the first gateway (``index`` counts from 0)."""
    return f"Gateway {index + 1:02d}"


def gateway_external_id(index: int) -> str:
    """``SIM-0001`` for the first gateway."""
    return f"SIM-{index + 1:04d}"


def device_type(gateway: int, device: int) -> DeviceType:
    """Types alternate across the fleet, so even two gateways of two devices hold all three."""
    return DEVICE_TYPES[(gateway + device) % len(DEVICE_TYPES)]


@dataclass
class Device:
    """One device and its current state."""

    gateway: int
    index: int
    type: DeviceType
    id: str
    site: str
    floor: str
    room: str
    out_of_service: bool
    # Climate sensor
    temperature: float = 21.0
    humidity: float = 45.0
    co2: float = 600.0
    # Energy meter
    energy_wh: float = 0.0
    power_w: float = 800.0
    power_base: float = 800.0
    last_energy_ms: int | None = None
    # Door contact
    door_open: bool = False
    # Battery-powered devices (climate sensors, door contacts)
    battery: float = 100.0
    # Which of the device's properties the next values message reports
    turn: int = 0

    @property
    def on_battery(self) -> bool:
        return self.type != "energy"

    def alarm(self) -> str | None:
        """The alarm this device's state raises now, if any."""
        if self.type == "climate" and self.co2 >= CO2_HIGH_PPM:
            return "co2_high"
        if self.type == "energy" and self.power_w >= OVERLOAD_WATTS:
            return "overload"
        if self.on_battery and self.battery <= BATTERY_LOW_PERCENT:
            return "battery_low"
        return None


@dataclass(frozen=True)
class Outgoing:
    """One message to send: which gateway (0-based index), which kind, the JSON body."""

    gateway: int
    kind: str
    body: dict[str, Any]


def _clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


class Fleet:
    """``gateways`` gateways of ``devices`` devices each; ``next`` makes the next message."""

    def __init__(self, gateways: int, devices: int, seed: int) -> None:
        if gateways < 1 or devices < 1:
            raise ValueError("a fleet needs at least one gateway and one device per gateway")
        self.rng = random.Random(seed)
        self.devices: list[Device] = []
        for g in range(gateways):
            site, floor = SITES[g % len(SITES)], str(1 + g % 5)
            for d in range(devices):
                kind = device_type(g, d)
                device = Device(
                    gateway=g, index=d, type=kind, id=f"{kind}-{g + 1:02d}{d + 1:02d}",
                    site=site, floor=floor, room=ROOMS[(g * devices + d) % len(ROOMS)],
                    out_of_service=self.rng.random() < _OUT_OF_SERVICE_SHARE,
                )
                self._initial_state(device)
                self.devices.append(device)
        self._by_kind: dict[str, list[Device]] = {
            "values": [d for d in self.devices if d.type in ("climate", "energy")],
            "events": [d for d in self.devices if d.type == "door"],
        }
        possible = [k for k in KINDS if k == "alarms" or self._by_kind.get(k)]
        self._kinds = possible
        self._weights = [KIND_WEIGHTS[k] for k in possible]

    def _initial_state(self, device: Device) -> None:
        rng = self.rng
        device.temperature = rng.gauss(21.0, 1.0)
        device.humidity = rng.uniform(35.0, 60.0)
        device.co2 = rng.uniform(450.0, 1100.0)
        device.energy_wh = rng.uniform(1_000_000.0, 50_000_000.0)  # 1,000 to 50,000 kWh
        device.power_base = rng.uniform(300.0, 2600.0)
        device.power_w = device.power_base
        device.door_open = rng.random() < 0.2
        # Most batteries are fine; a few are nearly flat.
        device.battery = rng.uniform(10.0, 100.0)
        device.turn = rng.randrange(3)

    def next(self, now_ms: int) -> Outgoing:
        """The fleet's next message, stamped ``now_ms``."""
        kind = self.rng.choices(self._kinds, self._weights)[0]
        if kind == "alarms":
            raising = [d for d in self.devices if d.alarm() is not None]
            if raising:
                device = self.rng.choice(raising)
                return Outgoing(device.gateway, "alarms", self._alarm(device, now_ms))
            # Nothing is wrong anywhere: a reading instead (the fleet may have no
            # values devices at all, in which case a door reports).
            kind = "values" if self._by_kind["values"] else "events"
        device = self.rng.choice(self._by_kind[kind])
        if kind == "events":
            return Outgoing(device.gateway, "events", self._door(device, now_ms))
        return Outgoing(device.gateway, "values", self._value(device, now_ms))

    # --- message bodies -----------------------------------------------------------------

    def _message(self, device: Device, prop: str, now_ms: int, payload: Any,
                 scaled: float | int | None, name: str, unit: str | None,
                 extra_tags: dict[str, str] | None = None) -> dict[str, Any]:
        g, d = device.gateway + 1, device.index + 1
        tags = {"site": device.site, "floor": device.floor, "room": device.room,
                "type": device.type}
        if extra_tags:
            tags.update(extra_tags)
        body: dict[str, Any] = {
            "deviceId": device.id,
            "property": prop,
            "timestamp": now_ms,
            "payload": payload,
            "scaledPayload": scaled,
            "name": name,
            "unit": unit,
            "externalId": f"{gateway_external_id(device.gateway)}-D{d:02d}",
            "propertyId": f"prop-{g:02d}{d:02d}-{prop}",
            "equipmentId": f"eq-{g:02d}{d:02d}",
            "gatewayInterfaceId": _INTERFACES[device.type],
            "slug": f"{device.id}-{prop.replace('_', '-')}",
            "isOutOfService": device.out_of_service,
            "tags": tags,
        }
        # receivedAt is the server's to set; the rest in the format's order.
        return {k: body[k] for k in FIELDS if k in body}

    def _drain_battery(self, device: Device) -> None:
        if device.on_battery:
            device.battery = max(1.0, device.battery - self.rng.uniform(0.0, 0.05))

    def _value(self, device: Device, now_ms: int) -> dict[str, Any]:
        rng = self.rng
        self._drain_battery(device)
        if device.type == "climate":
            prop = ("temperature", "humidity", "co2")[device.turn % 3]
            device.turn += 1
            if prop == "temperature":
                # Pulled back towards 21 °C, with noise: it drifts but does not wander off.
                device.temperature = _clamp(
                    device.temperature + 0.1 * (21.0 - device.temperature) + rng.gauss(0, 0.15),
                    15.0, 28.0,
                )
                raw = round(device.temperature * 100)
                return self._message(device, prop, now_ms, raw, raw / 100, "Temperature", "°C")
            if prop == "humidity":
                device.humidity = _clamp(device.humidity + rng.gauss(0, 0.8), 30.0, 70.0)
                raw = round(device.humidity * 10)
                return self._message(device, prop, now_ms, raw, raw / 10, "Relative humidity",
                                     "%")
            # CO2 climbs while people are in and falls back when they leave.
            device.co2 = _clamp(device.co2 + 0.03 * (700.0 - device.co2) + rng.gauss(0, 60),
                                400.0, 2000.0)
            raw = round(device.co2)
            return self._message(device, prop, now_ms, raw, raw, "CO2", "ppm")
        # Energy meter
        prop = ("energy", "power")[device.turn % 2]
        device.turn += 1
        # Load varies around the building's usual draw, with the odd peak.
        device.power_w = _clamp(
            device.power_w + 0.05 * (device.power_base - device.power_w) + rng.gauss(0, 100),
            50.0, 4000.0,
        )
        if device.last_energy_ms is not None and now_ms > device.last_energy_ms:
            device.energy_wh += device.power_w * (now_ms - device.last_energy_ms) / 3_600_000
        device.last_energy_ms = max(now_ms, device.last_energy_ms or now_ms)
        if prop == "energy":
            raw = math.floor(device.energy_wh)  # Wh; floored, so the total never goes back
            return self._message(device, prop, now_ms, raw, raw / 1000, "Active energy", "kWh")
        raw = round(device.power_w * 10)
        return self._message(device, prop, now_ms, raw, raw / 10, "Active power", "W")

    def _door(self, device: Device, now_ms: int) -> dict[str, Any]:
        self._drain_battery(device)
        device.door_open = not device.door_open
        state = "open" if device.door_open else "closed"
        return self._message(device, "door", now_ms, state, None, "Door", None)

    def _alarm(self, device: Device, now_ms: int) -> dict[str, Any]:
        alarm = device.alarm()
        if alarm == "co2_high":
            raw = round(device.co2)
            severity = "critical" if raw >= 1500 else "warning"
            return self._message(device, alarm, now_ms, raw, raw, f"CO2 above {CO2_HIGH_PPM} ppm",
                                 "ppm", {"severity": severity})
        if alarm == "overload":
            raw = round(device.power_w * 10)
            return self._message(device, alarm, now_ms, raw, raw / 10,
                                 f"Power above {OVERLOAD_WATTS:.0f} W", "W",
                                 {"severity": "warning"})
        raw = max(1, round(device.battery))
        return self._message(device, "battery_low", now_ms, raw, raw, "Battery low", "%",
                             {"severity": "critical" if raw <= 5 else "warning"})


# --- pacing and batching -------------------------------------------------------------------

class Pacer:
    """Spreads ``rate`` messages per second evenly over time.

    ``due(elapsed)`` says how many messages are due now. A sender that fell behind (the target
    answered slowly) does not make up with a burst: at most ``catch_up`` seconds' worth is
    kept, the rest is dropped, so the achieved rate shows the shortfall.
    """

    def __init__(self, rate: float, catch_up: float = 0.1) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.max_backlog = max(1, math.ceil(rate * catch_up))
        self.emitted = 0
        self.skipped = 0

    def due(self, elapsed: float) -> int:
        # Message n (from 0) is due at n / rate: the first at once, the last of a run of
        # ``d`` seconds just before ``d``, so a run sends rate * d messages.
        target = math.floor(elapsed * self.rate + 1e-9) + 1
        backlog = target - self.emitted
        if backlog > self.max_backlog:
            self.skipped += backlog - self.max_backlog
            self.emitted = target - self.max_backlog
            backlog = self.max_backlog
        backlog = max(0, backlog)
        self.emitted += backlog
        return backlog

    def delay(self, elapsed: float) -> float:
        """Seconds until the next message is due."""
        return max(0.0, self.emitted / self.rate - elapsed)


@dataclass
class _Pending:
    started: float
    bodies: list[dict[str, Any]] = field(default_factory=list)


class Batcher:
    """Groups messages per (gateway, kind) into batches of ``size``; a batch that is not full
    leaves after ``max_wait`` seconds, so rare events and alarms are not held back."""

    def __init__(self, size: int, max_wait: float = 1.0) -> None:
        if not 1 <= size <= 1000:
            raise ValueError("a batch holds 1 to 1000 messages")
        self.size = size
        self.max_wait = max_wait
        self._open: dict[tuple[int, str], _Pending] = {}

    def add(self, message: Outgoing, now: float) -> list[tuple[int, str, list[dict[str, Any]]]]:
        key = (message.gateway, message.kind)
        pending = self._open.setdefault(key, _Pending(now))
        pending.bodies.append(message.body)
        if len(pending.bodies) >= self.size:
            del self._open[key]
            return [(key[0], key[1], pending.bodies)]
        return []

    def expired(self, now: float) -> list[tuple[int, str, list[dict[str, Any]]]]:
        keys = [k for k, p in self._open.items() if now - p.started >= self.max_wait]
        return [(k[0], k[1], self._open.pop(k).bodies) for k in keys]

    def flush(self) -> list[tuple[int, str, list[dict[str, Any]]]]:
        out = [(k[0], k[1], p.bodies) for k, p in self._open.items()]
        self._open.clear()
        return out


def http_body(bodies: list[dict[str, Any]]) -> bytes:
    """One message as an object, several as an array."""
    return orjson.dumps(bodies[0] if len(bodies) == 1 else bodies)


# --- MQTT -----------------------------------------------------------------------------------

def mqtt_topic(gateway_id: str, kind: str) -> str:
    """Where a gateway publishes: ``hookstream/{gatewayId}/{kind}``."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    return f"hookstream/{gateway_id}/{kind}"


def mqtt_payload(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


# Where deploy/mosquitto's configuration reads the gateways' credentials, and how the broker
# is told to read that file again (Mosquitto reloads it on SIGHUP).
MOSQUITTO_PASSWORDS = "/etc/mosquitto/hookstream/passwords"
MOSQUITTO_RELOAD = "`kill -HUP <pid of mosquitto>` or `systemctl reload mosquitto`"


def mosquitto_passwd_args(passwords: str, gateway_id: str, token: str, *, create: bool = False,
                          program: str = "mosquitto_passwd") -> list[str]:
    """The call that lets a gateway sign in to Mosquitto: its id as the user name, its ingest
    token as the password. ``create`` (``-c``) starts a new file, replacing any already there."""
    return [program, *(["-c"] if create else []), "-b", passwords, gateway_id, token]


def mosquitto_passwd_line(passwords: str, gateway_id: str, token: str) -> str:
    """The same call as a shell line to copy."""
    return shlex.join(mosquitto_passwd_args(passwords, gateway_id, token))


@dataclass(frozen=True)
class MqttAddress:
    host: str
    port: int
    tls: bool


def parse_mqtt_url(url: str) -> MqttAddress:
    """``mqtt://host:port`` (1883 by default) or ``mqtts://`` (TLS, 8883); no credentials, as
    each simulated gateway signs in as itself."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"{url!r}: use mqtt://host:port or mqtts://host:port")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the MQTT URL must not carry credentials: each simulated gateway "
                         "signs in with its id and ingest token")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r}: {exc}") from None
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    tls = parts.scheme == "mqtts"
    return MqttAddress(parts.hostname, port or (8883 if tls else 1883), tls)


# --- counters -------------------------------------------------------------------------------

def percentile(samples: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0-100) of ``samples``; None when there are none."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class Reservoir:
    """A uniform sample of at most ``capacity`` values, so long runs keep bounded memory."""

    def __init__(self, capacity: int = 100_000, seed: int = 0) -> None:
        self.capacity = capacity
        self.samples: list[float] = []
        self.seen = 0
        self._rng = random.Random(seed)

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.samples) < self.capacity:
            self.samples.append(value)
            return
        slot = self._rng.randrange(self.seen)
        if slot < self.capacity:
            self.samples[slot] = value


@dataclass
class KindCounts:
    sent: int = 0
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())


class Stats:
    """What a run sent, what was accepted, what was refused and why, and how fast."""

    def __init__(self) -> None:
        self.kinds: dict[str, KindCounts] = {k: KindCounts() for k in KINDS}
        self.latency_ms = Reservoir()
        # (time, accepted per kind) a few seconds back, for the current rate.
        self._marks: deque[tuple[float, dict[str, int]]] = deque()
        self.last_answer = 0.0  # the clock's time of the last acceptance

    def sent(self, kind: str, n: int = 1) -> None:
        self.kinds[kind].sent += n

    def accepted(self, kind: str, n: int, latency_ms: float, at: float = 0.0) -> None:
        self.kinds[kind].accepted += n
        self.latency_ms.add(latency_ms)
        self.last_answer = max(self.last_answer, at)

    def refused(self, kind: str, n: int, reason: str) -> None:
        self.kinds[kind].refused[reason] += n

    def total(self) -> KindCounts:
        total = KindCounts()
        for counts in self.kinds.values():
            total.sent += counts.sent
            total.accepted += counts.accepted
            total.refused.update(counts.refused)
        return total

    def unanswered(self) -> int:
        total = self.total()
        return total.sent - total.accepted - total.refused_total

    def mark(self, now: float, window: float = 2.0) -> dict[str, float]:
        """Record the counts at ``now``; returns the accepted rate per kind over ``window``."""
        counts = {k: c.accepted for k, c in self.kinds.items()}
        self._marks.append((now, counts))
        while len(self._marks) > 1 and now - self._marks[1][0] >= window:
            self._marks.popleft()
        then, before = self._marks[0]
        span = now - then
        if span <= 0:
            return {k: 0.0 for k in counts}
        return {k: (counts[k] - before[k]) / span for k in counts}
