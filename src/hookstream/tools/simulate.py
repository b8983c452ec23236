"""``hookstream simulate``: a fleet of gateways sending realistic data at a steady rate.

``--setup`` creates, over the HTTP API, an organization, its gateways, a connector to a local
receiver and a trigger for everything, and keeps what it made in a state file (mode 0600);
later runs reuse it. Messages go over HTTP (``POST /ingest/v1/{kind}``) or MQTT (one client per
gateway, QoS 1). The data itself is made in :mod:`hookstream.tools.simulate_fleet` (pure).

Over MQTT each gateway signs in with its id and ingest token, which a broker with the shipped
configuration (deploy/mosquitto) knows only from its password file: ``--setup`` adds the new
gateways to that file (``--mosquitto-passwords``, by running ``mosquitto_passwd``) or prints the
lines to run, and then waits for the broker to reload it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import orjson
from paho.mqtt.client import (
    MQTT_ERR_NO_CONN,
    MQTT_ERR_SUCCESS,
    Client,
    ConnectFlags,
    DisconnectFlags,
    MQTTv5,
    error_string,
)
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from hookstream.errors import HookstreamError
from hookstream.pipeline.deliver.signing import InvalidSecret, new_secret, secret_key
from hookstream.pipeline.message import KINDS, MAX_BATCH
from hookstream.tools.simulate_fleet import (
    MOSQUITTO_PASSWORDS,
    MOSQUITTO_RELOAD,
    Batcher,
    Fleet,
    MqttAddress,
    Pacer,
    Stats,
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

ORG_NAME = "Simulated fleet"
CONNECTOR_NAME = "Local receiver"
ROUTES = {"values": "/hooks/values", "events": "/hooks/events", "alarms": "/hooks/alarms"}
STATE_VERSION = 1
HTTP_IN_FLIGHT = 64  # requests in flight at once; more waits (and lowers the achieved rate)
MQTT_IN_FLIGHT = 100  # unacknowledged publishes per gateway
DRAIN_SECONDS = 30.0  # how long the last answers are awaited after the run
CONNECT_SECONDS = 10.0  # for the MQTT broker to answer every gateway
# After --setup, how long the broker may refuse the new gateways: until it reloads its
# password file (paho signs in again every 2 s meanwhile).
SIGN_IN_WAIT_SECONDS = 120.0
# How long a run over MQTT waits for the server's bridge to subscribe before it publishes.
BRIDGE_WAIT_SECONDS = 120.0
# CONNACK reason codes of credentials the broker does not know (yet).
NOT_SIGNED_IN = frozenset({134, 135})  # bad user name or password, not authorized
PASSWD_SECONDS = 30.0  # for one mosquitto_passwd call


class SimulationError(HookstreamError):
    """Why the simulation cannot start (shown as a message, exit code 2)."""


@dataclass(frozen=True)
class SimulateOptions:
    api: str
    gateways: int | None
    devices: int
    rate: float
    duration: float
    transport: str
    batch: int
    mqtt_url: str
    state: Path
    setup: bool
    admin_key: str | None
    receiver: str
    secret: str | None
    seed: int | None
    quiet: bool
    mosquitto_passwords: Path | None = None  # --setup adds the new gateways to this file


@dataclass(frozen=True)
class GatewayCreds:
    id: str
    name: str
    token: str


# --- state file -----------------------------------------------------------------------------

def write_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` readable by its owner only (it holds keys), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover file of that name would keep its own mode
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def read_state(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SimulationError(
            f"no state file at {path}: run `hookstream simulate --setup` first (or pass --state "
            "with the file an earlier --setup wrote)"
        )
    try:
        state = json.loads(path.read_text())
        gateways = state["gateways"]
        if not isinstance(gateways, list) or not gateways:
            raise ValueError("no gateways")
        for g in gateways:
            if not (isinstance(g["id"], str) and isinstance(g["ingestToken"], str)):
                raise ValueError("a gateway without id or ingestToken")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SimulationError(
            f"the state file {path} cannot be used ({exc}): run --setup again"
        ) from None
    return dict(state)


def default_admin_key() -> str | None:
    """HOOKSTREAM_ADMIN_KEY, else the key ``make run`` keeps in the data folder."""
    key = os.environ.get("HOOKSTREAM_ADMIN_KEY")
    if key:
        return key
    path = Path(os.environ.get("HOOKSTREAM_DATA_DIR") or "var") / "admin.key"
    with contextlib.suppress(OSError):
        return path.read_text().strip() or None
    return None


# --- the management API ---------------------------------------------------------------------

class Api:
    """The few calls ``--setup`` and the token check make."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base.rstrip("/")

    async def call(self, method: str, path: str, key: str, body: Any) -> tuple[int, Any]:
        try:
            async with self.session.request(
                method, self.base + path, json=body, headers={"Authorization": f"Bearer {key}"}
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SimulationError(
                f"cannot reach the hookstream API at {self.base} ({_describe(exc)}): is "
                "`hookstream serve` (or `make run`) running there? (--api)"
            ) from None
        try:
            return status, orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return status, raw[:200].decode("utf-8", "replace")

    async def create(self, path: str, key: str, body: Any, what: str) -> dict[str, Any]:
        status, answer = await self.call("POST", path, key, body)
        if status != 201 or not isinstance(answer, dict):
            raise SimulationError(f"creating {what} failed: {_api_error(status, answer)}")
        return answer


def _say(console: Console, text: str) -> None:
    """Print ``text`` as it is: ids, keys and URLs are not rich markup."""
    console.print(text, markup=False, highlight=False)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _api_error(status: int, answer: Any) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        error = answer["error"]
        return f"{status} {error.get('code', '')}: {error.get('message', '')}".strip()
    return f"HTTP {status} {answer!r}"[:300]


def _receive_port(receiver: str) -> int:
    parts = urlsplit(receiver)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _check_receiver(receiver: str) -> bool:
    """Refuse a --receiver that is no http(s) URL before anything is created; True when it
    is on this machine or a private network."""
    try:
        parts = urlsplit(receiver)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        raise SimulationError(f"--receiver: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SimulationError(f"--receiver must be an http:// or https:// URL, not {receiver!r}")
    if parts.hostname == "localhost":
        return True
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return False
    return address.is_private or address.is_loopback


def _mosquitto_passwd(options: SimulateOptions) -> str | None:
    """mosquitto_passwd's path when --mosquitto-passwords asks for it; checked before --setup
    creates anything."""
    if options.mosquitto_passwords is None:
        return None
    if not options.setup:
        raise SimulationError(
            "--mosquitto-passwords adds the gateways --setup creates: use it with --setup "
            f"(the gateways of an earlier --setup are in {options.state}: add each with "
            "`mosquitto_passwd -b PASSWORD_FILE <id> <ingestToken>`)"
        )
    program = shutil.which("mosquitto_passwd")
    if program is None:
        raise SimulationError(
            "--mosquitto-passwords runs mosquitto_passwd, which is not installed here (Debian, "
            "Ubuntu: apt install mosquitto); or leave the option out: with --transport mqtt, "
            "--setup prints the mosquitto_passwd lines to run where the broker is"
        )
    return program


async def add_to_mosquitto(program: str, passwords: Path, gateways: list[dict[str, Any]],
                           state_path: Path, out: Console) -> None:
    """``mosquitto_passwd -b`` for each gateway (``-c`` when the file does not exist yet)."""
    for done, g in enumerate(gateways):
        args = mosquitto_passwd_args(str(passwords), g["id"], g["ingestToken"],
                                     create=not passwords.exists(), program=program)
        failure = await _run_quietly(args, PASSWD_SECONDS)
        if failure is not None:
            lines = "\n".join(
                "  " + mosquitto_passwd_line(str(passwords), r["id"], r["ingestToken"])
                for r in gateways[done:]
            )
            missing = "" if passwords.exists() else " (-c on the first line creates the file)"
            raise SimulationError(
                f"mosquitto_passwd could not add {g['name']} ({g['id']}) to {passwords}: "
                f"{failure}\nThe gateways are saved in {state_path}. Add the rest as a user who "
                f"may write {passwords}{missing}; these lines hold their ingest tokens, as the "
                f"state file does. Then reload the broker ({MOSQUITTO_RELOAD}):\n{lines}"
            )
    _say(out, f"mosquitto     {len(gateways)} gateways added to {passwords} (user name: the "
              "gateway id, password: its ingest token)")
    _say(out, f"              the broker must reload that file to know them: {MOSQUITTO_RELOAD}")


async def _run_quietly(args: list[str], timeout: float) -> str | None:
    """Run ``args``; None when it succeeded, else what it said (or why it could not run)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except OSError as exc:
        return _describe(exc)
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return f"no answer within {timeout:g} s"
    if proc.returncode == 0:
        return None
    return output.decode("utf-8", "replace").strip() or f"exit code {proc.returncode}"


def _print_mosquitto_lines(gateways: list[dict[str, Any]], out: Console) -> None:
    """What lets the new gateways sign in to a broker with the shipped configuration."""
    _say(out, "Let the gateways sign in to the MQTT broker (shipped configuration: "
              "deploy/mosquitto): run these lines where the broker is, as a user who may write "
              "its password file. They hold the gateways' ingest tokens, as the state file does:")
    for g in gateways:
        _say(out, f"  {mosquitto_passwd_line(MOSQUITTO_PASSWORDS, g['id'], g['ingestToken'])}")
    _say(out, f"then reload the broker: {MOSQUITTO_RELOAD}. (--mosquitto-passwords PATH with "
              "--setup runs these lines itself.)")


async def setup(api: Api, options: SimulateOptions, out: Console,
                mosquitto_passwd: str | None = None) -> dict[str, Any]:
    """Create the organization, gateways, connector and trigger; save and show them; with
    ``mosquitto_passwd`` (the program) add the gateways to --mosquitto-passwords."""
    admin_key = options.admin_key or default_admin_key()
    if not admin_key:
        raise SimulationError(
            "--setup needs the admin key: pass --admin-key, set HOOKSTREAM_ADMIN_KEY, or run "
            "from the folder where `make run` wrote var/admin.key"
        )
    local = _check_receiver(options.receiver)
    secret = options.secret or new_secret()
    status, answer = await api.call("POST", "/api/v1/organizations", admin_key,
                                    {"name": ORG_NAME})
    if status == 401:
        raise SimulationError(
            f"the API at {api.base} refused the admin key ({_api_error(status, answer)}); pass "
            "the key `hookstream serve` printed with --admin-key or HOOKSTREAM_ADMIN_KEY"
        )
    if status != 201 or not isinstance(answer, dict):
        raise SimulationError(f"creating the organization failed: {_api_error(status, answer)}")
    org, key = answer, str(answer["apiKey"])
    gateways = []
    for i in range(options.gateways or 5):
        made = await api.create(
            "/api/v1/gateways", key,
            {"name": gateway_name(i), "externalId": gateway_external_id(i)}, "a gateway",
        )
        gateways.append({k: made[k] for k in ("id", "name", "externalId", "ingestToken")})
    connector = await api.create(
        "/api/v1/connectors", key,
        {"name": CONNECTOR_NAME, "baseUrl": options.receiver, "routes": ROUTES,
         "secret": secret, "active": True},
        "the connector",
    )
    trigger = await api.create(
        f"/api/v1/connectors/{connector['id']}/triggers", key,
        {"kinds": list(KINDS), "allGateways": True}, "the trigger",
    )
    state = {
        "version": STATE_VERSION,
        "api": api.base,
        "organization": {"id": org["id"], "name": org["name"], "apiKey": key},
        "gateways": gateways,
        "connector": {"id": connector["id"], "name": connector["name"],
                      "baseUrl": connector["baseUrl"], "secret": connector["secret"],
                      "triggerId": trigger["id"]},
    }
    write_state(options.state, state)
    _say(out, f"organization  {org['id']}  {ORG_NAME}")
    for g in gateways:
        _say(out, f"gateway       {g['id']}  {g['name']} ({g['externalId']})")
    _say(out, f"connector     {connector['id']}  {CONNECTOR_NAME} -> {options.receiver} "
              "(values, events and alarms of every gateway)")
    _say(out, f"secret        {connector['secret']}")
    _say(out, f"state         {options.state} (mode 0600: it holds the keys)")
    if local:
        _say(out, "note          webhooks to this address need the server to run with "
                  "HOOKSTREAM_ALLOW_PRIVATE_TARGETS=true (make run sets it)")
    _say(out, "Start the receiver in another terminal:")
    _say(out, f"  hookstream receive --port {_receive_port(options.receiver)} "
              f"--secret {connector['secret']}")
    if mosquitto_passwd is not None and options.mosquitto_passwords is not None:
        await add_to_mosquitto(mosquitto_passwd, options.mosquitto_passwords, gateways,
                               options.state, out)
    elif options.transport == "mqtt":
        _print_mosquitto_lines(gateways, out)
    return state


async def wait_for_bridge(api: Api, err: Console) -> None:
    """Before gateways publish over MQTT: until the server's bridge is subscribed.

    The broker keeps nothing for a subscriber that does not exist yet, so what gateways publish
    before the bridge's first subscription is lost; /readyz says when the bridge is ready."""
    deadline = time.monotonic() + BRIDGE_WAIT_SECONDS
    waiting = False
    while True:
        status, answer = await api.call("GET", "/readyz", "", None)
        roles = answer.get("roles", {}) if isinstance(answer, dict) else {}
        if roles.get("mqtt") == "ready":
            return
        if "mqtt" not in roles and status == 200:
            _say(err, f"note: the server at {api.base} runs no MQTT bridge; the `hookstream mqtt` "
                      "that reads this broker must have logged 'hookstream ready' before "
                      "gateways publish (the broker keeps nothing for a bridge that never "
                      "subscribed)")
            return
        if not waiting:
            _say(err, "waiting for the server's MQTT bridge to subscribe (what gateways publish "
                      "before that is not kept for it)")
            waiting = True
        if time.monotonic() > deadline:
            raise SimulationError(
                f"the MQTT bridge of the server at {api.base} is not subscribed after "
                f"{BRIDGE_WAIT_SECONDS:g} s ({_api_error(status, answer)}): see its log"
            )
        await asyncio.sleep(0.5)  # poll interval


async def check_tokens(api: Api, gateways: list[GatewayCreds], state_path: Path) -> None:
    """Ask the server whether it knows each ingest token, storing nothing.

    An empty array is refused as invalid (422) only after the token was accepted; an unknown
    token is refused first (401)."""

    async def check(gw: GatewayCreds) -> None:
        status, answer = await api.call("POST", "/ingest/v1/values", gw.token, [])
        if status == 401:
            raise SimulationError(
                f"the server at {api.base} refused the ingest token of {gw.name} ({gw.id}) "
                f"saved in {state_path}: the state belongs to another server or database, or "
                "the gateway was deleted; run with --setup again"
            )
        if status != 422:
            raise SimulationError(
                f"unexpected answer checking {gw.name}'s ingest token: "
                f"{_api_error(status, answer)}"
            )

    # All at once (the session bounds the concurrency); every check ends before any error
    # is raised, so none is left running.
    results = await asyncio.gather(*(check(gw) for gw in gateways), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


# --- transports -----------------------------------------------------------------------------

class Transport(Protocol):
    async def start(self) -> None: ...
    async def send(self, gateway: int, kind: str, bodies: list[dict[str, Any]]) -> None: ...
    async def drain(self, timeout: float) -> None: ...
    async def close(self) -> None: ...


class HttpTransport:
    """``POST /ingest/v1/{kind}`` with each gateway's token, over one shared session."""

    latency_label = "202"

    def __init__(self, session: aiohttp.ClientSession, api: str, gateways: list[GatewayCreds],
                 stats: Stats) -> None:
        self.session = session
        self.api = api.rstrip("/")
        self.gateways = gateways
        self.stats = stats
        self._slots = asyncio.Semaphore(HTTP_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        return None

    async def send(self, gateway: int, kind: str, bodies: list[dict[str, Any]]) -> None:
        await self._slots.acquire()
        self.stats.sent(kind, len(bodies))
        task = asyncio.create_task(self._post(self.gateways[gateway], kind, bodies))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, gw: GatewayCreds, kind: str, bodies: list[dict[str, Any]]) -> None:
        started = time.perf_counter()
        try:
            async with self.session.post(
                f"{self.api}/ingest/v1/{kind}", data=http_body(bodies),
                headers={"Authorization": f"Bearer {gw.token}",
                         "Content-Type": "application/json"},
            ) as resp:
                raw = await resp.read()
                latency = (time.perf_counter() - started) * 1000
                if resp.status == 202:
                    accepted = int(orjson.loads(raw)["accepted"])
                    self.stats.accepted(kind, accepted, latency, at=time.perf_counter())
                    if accepted < len(bodies):  # not expected; counted so the totals add up
                        self.stats.refused(kind, len(bodies) - accepted, "202 with fewer")
                else:
                    self.stats.refused(kind, len(bodies), _status_reason(resp.status, raw))
        except TimeoutError:
            self.stats.refused(kind, len(bodies), "timeout")
        except (aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
            self.stats.refused(kind, len(bodies), f"error: {type(exc).__name__}")
        finally:
            self._slots.release()

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def close(self) -> None:
        # What is still unanswered stays so; no request outlives the session.
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))


def _status_reason(status: int, raw: bytes) -> str:
    try:
        code = orjson.loads(raw)["error"]["code"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        code = ""
    return f"{status} {code}".strip()


CallbackOnConnect = Callable[
    [Client, Any, ConnectFlags, ReasonCode, "Properties | None"], None
]
CallbackOnPublish = Callable[[Client, Any, int, ReasonCode, Properties], None]
CallbackOnDisconnect = Callable[
    [Client, Any, DisconnectFlags, ReasonCode, "Properties | None"], None
]


class MqttTransport:
    """One paho client per gateway (username: its id, password: its ingest token), QoS 1;
    a message counts as accepted when its PUBACK arrives.

    A broker refusing a gateway's credentials stops the run at once, unless ``sign_in_wait``
    (new gateways): then the broker may not have reloaded its password file yet, and the run
    waits that long for it, calling ``on_waiting`` once with what it waits for."""

    latency_label = "PUBACK"

    def __init__(self, address: MqttAddress, gateways: list[GatewayCreds], stats: Stats,
                 sign_in_wait: float = 0.0,
                 on_waiting: Callable[[str], None] | None = None) -> None:
        self.address = address
        self.gateways = gateways
        self.stats = stats
        self.sign_in_wait = sign_in_wait
        self.on_waiting = on_waiting
        self._refusals: dict[int, str] = {}  # gateways refused while waiting, and why
        self._clients: list[Client] = []
        self._slots = [asyncio.Semaphore(MQTT_IN_FLIGHT) for _ in gateways]
        self._pending: dict[tuple[int, int], tuple[str, float]] = {}
        self._connected: list[asyncio.Future[None]] = []
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self.disconnections = 0  # the broker's or the network's doing, not ours

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        # paho calls back from its own thread; the counters live in the event loop's.
        with contextlib.suppress(RuntimeError):  # the loop closed under a late callback
            self._loop.call_soon_threadsafe(fn, *args)

    async def start(self) -> None:
        for index, gw in enumerate(self.gateways):
            self._connected.append(self._loop.create_future())
            client = Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{gw.id}",
                            protocol=MQTTv5)
            client.username_pw_set(gw.id, gw.token)
            if self.address.tls:
                client.tls_set()
            client.reconnect_delay_set(1, 2 if self.sign_in_wait else 5)
            client.max_inflight_messages_set(MQTT_IN_FLIGHT)
            client.on_connect = self._on_connect_cb(index)
            client.on_publish = self._on_publish_cb(index)
            client.on_disconnect = self._on_disconnect_cb(index)
            self._clients.append(client)
            client.connect_async(self.address.host, self.address.port, keepalive=30)
            client.loop_start()
        await self._signed_in()
        for client in self._clients:
            client.reconnect_delay_set(1, 5)  # for the run

    async def _signed_in(self) -> None:
        """Until every gateway is signed in, or the error that stops the run."""
        start = self._loop.time()
        while True:
            # Every outcome is looked at, so no refusal is left unretrieved.
            errors = [exc for f in self._connected if f.done() and (exc := f.exception())]
            if errors:
                raise errors[0]
            waiting = [i for i, f in enumerate(self._connected) if not f.done()]
            if not waiting:
                return
            unanswered = [i for i in waiting if i not in self._refusals]
            limit = CONNECT_SECONDS if unanswered else max(CONNECT_SECONDS, self.sign_in_wait)
            remaining = start + limit - self._loop.time()
            if remaining <= 0:
                if unanswered:
                    raise SimulationError(
                        f"cannot reach the MQTT broker at {self.address.host}:"
                        f"{self.address.port} within {CONNECT_SECONDS:g} s (--mqtt-url)"
                    )
                gw = self.gateways[waiting[0]]
                raise SimulationError(
                    f"the MQTT broker at {self.address.host}:{self.address.port} still "
                    f"refuses {gw.name} ({gw.id}) after {self.sign_in_wait:g} s: "
                    f"{self._refusals[waiting[0]]} (each gateway signs in with its id and "
                    "ingest token: are they in the broker's password file, and did the broker "
                    f"reload it? {MOSQUITTO_RELOAD})"
                )
            # Short waits: a refusal while waiting for a reload completes no future.
            await asyncio.wait([self._connected[i] for i in waiting],
                               timeout=min(remaining, 0.25),
                               return_when=asyncio.FIRST_EXCEPTION)

    def _on_connect_cb(self, index: int) -> CallbackOnConnect:
        def on_connect(client: Client, userdata: Any, flags: ConnectFlags, reason: ReasonCode,
                       props: Properties | None) -> None:
            self._post(self._connect_result, index, reason.is_failure, str(reason),
                       reason.value)
        return on_connect

    def _connect_result(self, index: int, failed: bool, reason: str, code: int) -> None:
        done = self._connected[index]
        if done.done() or self._closing:
            return
        gw = self.gateways[index]
        if failed and self.sign_in_wait and code in NOT_SIGNED_IN:
            # paho signs in again by itself; the broker may know the gateway once reloaded.
            if not self._refusals and self.on_waiting is not None:
                self.on_waiting(
                    f"the MQTT broker at {self.address.host}:{self.address.port} does not let "
                    f"{gw.name} ({gw.id}) sign in yet ({reason}): waiting up to "
                    f"{self.sign_in_wait:g} s for it to know the new gateways (they must be in "
                    f"its password file, and the broker reloaded: {MOSQUITTO_RELOAD}); "
                    "Ctrl-C stops"
                )
            self._refusals[index] = reason
        elif failed:
            done.set_exception(SimulationError(
                f"the MQTT broker at {self.address.host}:{self.address.port} refused "
                f"{gw.name} ({gw.id}): {reason} (each gateway signs in with its id and ingest "
                "token: is it in the broker's password file?)"
            ))
        else:
            self._refusals.pop(index, None)
            done.set_result(None)

    def _on_publish_cb(self, index: int) -> CallbackOnPublish:
        def on_publish(client: Client, userdata: Any, mid: int, reason: ReasonCode,
                       props: Properties) -> None:
            self._post(self._acked, index, mid, reason.is_failure, str(reason))
        return on_publish

    def _on_disconnect_cb(self, index: int) -> CallbackOnDisconnect:
        def on_disconnect(client: Client, userdata: Any, flags: DisconnectFlags,
                          reason: ReasonCode, props: Properties | None) -> None:
            self._post(self._disconnected)
        return on_disconnect

    def _disconnected(self) -> None:
        if not self._closing:
            self.disconnections += 1

    def _acked(self, index: int, mid: int, failed: bool, reason: str) -> None:
        entry = self._pending.pop((index, mid), None)
        if entry is None:
            return
        kind, started = entry
        self._slots[index].release()
        if failed:
            self.stats.refused(kind, 1, f"PUBACK {reason}")
        else:
            now = time.perf_counter()
            self.stats.accepted(kind, 1, (now - started) * 1000, at=now)

    async def send(self, gateway: int, kind: str, bodies: list[dict[str, Any]]) -> None:
        topic = mqtt_topic(self.gateways[gateway].id, kind)
        for body in bodies:
            await self._slots[gateway].acquire()
            self.stats.sent(kind)
            info = self._clients[gateway].publish(topic, mqtt_payload(body), qos=1)
            # Not connected: paho keeps a QoS 1 message and sends it on reconnection.
            if info.rc in (MQTT_ERR_SUCCESS, MQTT_ERR_NO_CONN):
                # Recorded before any callback can run: those are posted to this loop.
                self._pending[(gateway, info.mid)] = (kind, time.perf_counter())
            else:
                self._slots[gateway].release()
                self.stats.refused(kind, 1, error_string(info.rc))

    async def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        self._closing = True

        def stop(client: Client) -> None:
            client.disconnect()
            client.loop_stop()

        await asyncio.gather(*(asyncio.to_thread(stop, c) for c in self._clients))
        self._clients.clear()


# --- the run --------------------------------------------------------------------------------

def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _pump(fleet: Fleet, transport: Transport, options: SimulateOptions, pacer: Pacer,
                stop: asyncio.Event) -> float:
    """Send at the paced rate until the duration is over or ``stop`` is set; returns seconds."""
    batcher = Batcher(options.batch if options.transport == "http" else 1)
    start = time.perf_counter()

    def over(elapsed: float | None = None) -> bool:
        if elapsed is None:
            elapsed = time.perf_counter() - start
        return stop.is_set() or bool(options.duration and elapsed >= options.duration)

    while True:
        # One reading of the clock for both: what is due at the end of the run is not sent.
        elapsed = time.perf_counter() - start
        if over(elapsed):
            break
        for _ in range(pacer.due(elapsed)):
            for gateway, kind, bodies in batcher.add(fleet.next(_now_ms()), elapsed):
                await transport.send(gateway, kind, bodies)
            # A send waits while the target is saturated: the end must not wait for the
            # rest of what was due.
            if over():
                break
        for gateway, kind, bodies in batcher.expired(elapsed):
            await transport.send(gateway, kind, bodies)
        now = time.perf_counter() - start
        wait = pacer.delay(now)
        if options.duration:
            wait = min(wait, options.duration - now)
        # Short naps, so Ctrl-C and waiting batches are seen soon.
        await asyncio.sleep(min(max(wait, 0.0), 0.1))
    for gateway, kind, bodies in batcher.flush():
        await transport.send(gateway, kind, bodies)
    return time.perf_counter() - start


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:.1f}/s" if seconds > 0 else "-"


def _live_view(stats: Stats, options: SimulateOptions, elapsed: float,
               current: dict[str, float], target: str) -> RenderableType:
    head = Text(f"hookstream simulate → {target}\n{options.rate:g} msg/s target  ·  "
                f"elapsed {elapsed:.1f} s"
                + (f" of {options.duration:g} s" if options.duration else "  (Ctrl-C stops)"))
    table = Table(box=None, padding=(0, 2))
    for column in ("kind", "sent", "accepted", "refused", "rate now", "rate avg"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    total = stats.total()
    rows = [(k, stats.kinds[k], current.get(k, 0.0)) for k in KINDS]
    rows.append(("total", total, sum(current.values())))
    for name, counts, now_rate in rows:
        table.add_row(name, str(counts.sent), str(counts.accepted), str(counts.refused_total),
                      f"{now_rate:.1f}/s", _rate(counts.accepted, elapsed),
                      style="bold" if name == "total" else None)
    # One grid, a renderable per row: each starts on its own line whatever the console.
    view = Table.grid()
    view.add_row(head)
    if options.duration:
        view.add_row(ProgressBar(total=options.duration,
                                 completed=min(elapsed, options.duration), width=60))
    view.add_row(table)
    return view


def _summary(out: Console, stats: Stats, options: SimulateOptions, pumped: float,
             seconds: float, pacer: Pacer, label: str, seed: int, notes: list[str]) -> None:
    """The final tables; rates sent are over the sending time (``pumped``), rates accepted
    over the whole run with its last answers (``seconds``)."""
    table = Table(title="hookstream simulate: summary", title_justify="left")
    for column in ("kind", "sent", "accepted", "refused", "unanswered", "accepted/s"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    total = stats.total()
    for name, counts in [*((k, stats.kinds[k]) for k in KINDS), ("total", total)]:
        unanswered = counts.sent - counts.accepted - counts.refused_total
        table.add_row(name, str(counts.sent), str(counts.accepted), str(counts.refused_total),
                      str(unanswered), _rate(counts.accepted, seconds),
                      style="bold" if name == "total" else None)
    out.print(table)
    if total.refused:
        reasons = Table(title="refused, by reason", title_justify="left")
        reasons.add_column("reason")
        reasons.add_column("messages", justify="right")
        for reason, n in total.refused.most_common():
            reasons.add_row(reason, str(n))
        out.print(reasons)
    samples = stats.latency_ms.samples
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    if p50 is not None and p99 is not None:
        unit = "requests" if label == "202" else "messages"
        _say(out, f"latency to the {label}: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
                  f"({stats.latency_ms.seen} {unit})")
    achieved = total.sent / pumped if pumped > 0 else 0.0
    accepted_rate = total.accepted / seconds if seconds > 0 else 0.0
    _say(out, f"target {options.rate:g} msg/s: sent {achieved:.1f} msg/s over {pumped:.1f} s, "
              f"accepted {accepted_rate:.1f} msg/s (--seed {seed} repeats this data)")
    # A hiccup of the event loop skips a message or two; only a real shortfall is reported.
    if pacer.skipped > 0.01 * max(1, total.sent) or (
        pumped >= 1 and achieved < 0.95 * options.rate
    ):
        _say(out, f"the target could not keep up with {options.rate:g} msg/s: "
                  f"{achieved:.1f} msg/s achieved")
    for note in notes:
        _say(out, note)
    _say(out, f"sent {total.sent}, accepted {total.accepted}, refused {total.refused_total}, "
              f"unanswered {stats.unanswered()} in {seconds:.1f} s")


async def run_simulation(options: SimulateOptions, out: Console, err: Console) -> int:
    """The whole command; returns the exit code (1 when nothing sent was accepted)."""
    if options.secret is not None:
        try:
            secret_key(options.secret)
        except InvalidSecret as exc:
            raise SimulationError(f"--secret: {exc}") from None
    address = None
    if options.transport == "mqtt":
        try:
            address = parse_mqtt_url(options.mqtt_url)
        except ValueError as exc:
            raise SimulationError(f"--mqtt-url: {exc}") from None
        if options.batch != 1:
            err.print("note: --batch applies to HTTP; over MQTT each message is one publish",
                      highlight=False)
    if not 1 <= options.batch <= MAX_BATCH:
        raise SimulationError(f"--batch must be 1 to {MAX_BATCH}")
    mosquitto_passwd = _mosquitto_passwd(options)
    state = None if options.setup else read_state(options.state)

    timeout = aiohttp.ClientTimeout(total=30, connect=5)
    connector = aiohttp.TCPConnector(limit=HTTP_IN_FLIGHT)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        api = Api(session, options.api)
        if state is None:
            state = await setup(api, options, out, mosquitto_passwd)
        elif state.get("api") and str(state["api"]).rstrip("/") != api.base:
            err.print(f"note: {options.state} was made against {state['api']}; using "
                      f"{api.base}", highlight=False, markup=False)
        saved = [GatewayCreds(g["id"], g.get("name") or g["id"], g["ingestToken"])
                 for g in state["gateways"]]
        wanted = options.gateways or len(saved)
        if wanted > len(saved):
            raise SimulationError(f"{options.state} holds {len(saved)} gateways, not {wanted}: "
                                  "run with --setup to make a larger fleet")
        gateways = saved[:wanted]
        if not options.setup:
            await check_tokens(api, gateways, options.state)

        seed = options.seed if options.seed is not None else random.SystemRandom().randrange(
            2**31)
        fleet = Fleet(len(gateways), options.devices, seed)
        stats = Stats()
        transport: HttpTransport | MqttTransport
        if address is not None:
            await wait_for_bridge(api, err)
            # New gateways: the broker may not have reloaded its password file yet.
            transport = MqttTransport(
                address, gateways, stats,
                sign_in_wait=SIGN_IN_WAIT_SECONDS if options.setup else 0.0,
                on_waiting=lambda text: _say(err, text),
            )
            target = f"mqtt://{address.host}:{address.port}"
        else:
            transport = HttpTransport(session, options.api, gateways, stats)
            target = f"{api.base}/ingest/v1"
        try:
            await transport.start()
            pumped, seconds, pacer = await _run_with_display(
                transport, fleet, stats, options, out, target
            )
        finally:
            await transport.close()
    notes = []
    if isinstance(transport, MqttTransport) and transport.disconnections:
        notes.append(f"MQTT disconnections during the run: {transport.disconnections}")
    _summary(out, stats, options, pumped, seconds, pacer, transport.latency_label, seed, notes)
    total = stats.total()
    return 1 if total.sent and not total.accepted else 0


async def _run_with_display(transport: Transport, fleet: Fleet, stats: Stats,
                            options: SimulateOptions, out: Console,
                            target: str) -> tuple[float, float, Pacer]:
    """Pump, with the live view on a terminal; Ctrl-C (or SIGTERM) ends the run early, a second
    one stops waiting for the last answers."""
    loop = asyncio.get_running_loop()
    stop, give_up = asyncio.Event(), asyncio.Event()
    pumping = True

    def on_signal() -> None:
        (stop if pumping and not stop.is_set() else give_up).set()

    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal)
            handled.append(sig)
    pacer = Pacer(options.rate)
    start = time.perf_counter()
    live = None if options.quiet or not out.is_terminal else Live(
        console=out, auto_refresh=False, transient=True
    )
    viewer = None
    try:
        if live is not None:
            live.start()

            async def refresh() -> None:
                while True:
                    elapsed = time.perf_counter() - start
                    view = _live_view(stats, options, elapsed, stats.mark(elapsed), target)
                    live.update(view, refresh=True)
                    await asyncio.sleep(0.25)

            viewer = asyncio.create_task(refresh())
        pumped = await _pump(fleet, transport, options, pacer, stop)
        pumping = False
        drain = asyncio.create_task(transport.drain(DRAIN_SECONDS))
        stopper = asyncio.create_task(give_up.wait())
        await asyncio.wait({drain, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (drain, stopper):
            task.cancel()
        await asyncio.gather(drain, stopper, return_exceptions=True)
        # Rates of what was accepted run until the last answer came.
        seconds = max(pumped, stats.last_answer - start)
    finally:
        if viewer is not None:
            viewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await viewer
        if live is not None:
            live.stop()
        for sig in handled:
            loop.remove_signal_handler(sig)
    return pumped, seconds, pacer
