"""What every drill shares: options, the ledger of messages, a receiver, hookstream processes,
a PostgreSQL and a Mosquitto of the drill's own, the HTTP load and a tenant set up over the API.

Messages are told apart by their ``payload``: a sequence number, unique within a drill. A
message is *accepted* when hookstream said so (a 202 over HTTP, a PUBACK from the broker over
MQTT), *delivered* when the receiver got it (signature checked) at least once, *lost* when it
was accepted and never delivered, and *duplicated* when it was delivered more than once.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from cryptography.fernet import Fernet
from tests.mqtt_support import MOSQUITTO, MOSQUITTO_PASSWD, Mosquitto

from hookstream.pipeline.deliver.signing import SignatureMismatch, verify

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MOSQUITTO = ROOT / "deploy" / "mosquitto"
KIND = "values"
T0 = 1_767_225_600_000  # 2026-01-01, the timestamp of message 0
# The drills' retry schedule: long enough to outlast a 60 s outage (1+2+5+8x10 = 88 s), short
# enough that what waited for the receiver arrives within 10 s of its return.
RETRY_SCHEDULE = "1,2,5,10,10,10,10,10,10,10,10"
UNPRIVILEGED = "nobody"  # who runs PostgreSQL when the drills run as root


class Skip(Exception):
    """A drill that cannot run here (a program is missing); says why."""


# --- options ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Options:
    """Sizes and timings of one run; ``quick()`` and ``full()`` are the two presets."""

    quick: bool = False
    seed: int = 0
    kills: int = 10  # SIGKILLs per process kind
    kill_after: tuple[float, float] = (0.2, 4.0)  # seconds of load before each kill
    outage: float = 60.0  # seconds the receiver is down
    rate: float = 150.0  # messages per second offered over HTTP
    clients: int = 4  # concurrent HTTP posters
    max_batch: int = 8  # messages per POST: 1 to this
    lease_seconds: float = 5.0
    retry_schedule: str = RETRY_SCHEDULE
    receiver_delay: float = 0.02  # mean seconds a webhook takes to answer (kills land mid-run)
    drain_timeout: float = 90.0  # seconds to wait for every accepted message after the faults
    settle: float = 2.0  # seconds to wait for late duplicates once everything arrived
    pg_restarts: tuple[str, ...] = ("fast", "immediate", "fast")  # pg_ctl stop modes
    broker_restarts: int = 3
    broker_down: float = 2.0  # seconds Mosquitto stays stopped
    # Published at once just before each broker stop, so that the broker holds a queue for the
    # bridge when it goes down (the stop comes once half of them are PUBACKed).
    broker_burst: int = 1000
    gateways: int = 3  # MQTT gateways
    mqtt_rate: float = 150.0
    keep: bool = False  # keep the working folder

    @classmethod
    def full(cls, **overrides: Any) -> Options:
        return replace(cls(), **overrides)

    @classmethod
    def quick_run(cls, **overrides: Any) -> Options:
        quick = cls(
            quick=True, kills=3, kill_after=(0.2, 2.5), outage=10.0, rate=80.0, clients=3,
            drain_timeout=60.0, settle=1.0, pg_restarts=("fast",), broker_restarts=1,
            broker_down=1.0, broker_burst=300, gateways=2, mqtt_rate=80.0,
        )
        return replace(quick, **overrides)


# --- what a drill prints and returns --------------------------------------------------------

class Say:
    """Progress lines of one drill: ``[drill +12.3s] text``."""

    def __init__(self, drill: str, out: Callable[[str], None] | None = None) -> None:
        self.drill = drill
        self.start = time.monotonic()
        self._out = out or (lambda line: print(line, flush=True))

    def __call__(self, text: str) -> None:
        self._out(f"[{self.drill} +{time.monotonic() - self.start:5.1f}s] {text}")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


@dataclass
class DrillResult:
    name: str
    accepted: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None
    seconds: float = 0.0
    keep: bool = False  # something odd happened: keep the logs

    @property
    def failed(self) -> bool:
        return self.lost > 0 or self.error is not None

    def line(self) -> str:
        if self.skipped:
            return f"{self.name}: skipped ({self.skipped})"
        return (f"{self.name}: accepted {self.accepted}, delivered {self.delivered}, "
                f"lost {self.lost}, duplicated {self.duplicated} in {self.seconds:.1f} s"
                + (f"; ERROR {self.error}" if self.error else ""))


# --- the ledger ---------------------------------------------------------------------------

def message(seq: int, drill: str) -> dict[str, Any]:
    """Message ``seq`` of a drill: its payload is its sequence number."""
    return {"deviceId": f"drill-{seq % 16:02d}", "property": drill, "timestamp": T0 + seq,
            "payload": seq, "tags": {"drill": drill}}


class Ledger:
    """Every message of a drill: handed out, accepted or refused, and what arrived.

    Thread-safe: MQTT acknowledgements come from paho's network threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self.accepted: dict[int, str | None] = {}  # seq -> message id (HTTP), None (MQTT)
        self.accepted_at: dict[int, float] = {}  # seq -> monotonic time of its acceptance
        self.refused: Counter[str] = Counter()  # why messages were not accepted
        self.arrivals: Counter[int] = Counter()  # seq -> requests that carried it
        self.webhook_ids: dict[int, set[str]] = {}
        self.first_arrival: dict[int, float] = {}  # seq -> monotonic time it first arrived
        self.arrived_at: list[float] = []  # every arrival
        self.requests = 0
        self.bad_signatures = 0
        self.unreadable = 0

    def take(self, count: int) -> list[int]:
        with self._lock:
            first, self._next = self._next, self._next + count
        return list(range(first, first + count))

    @property
    def handed_out(self) -> int:
        return self._next

    def accept(self, seqs: Sequence[int], ids: Sequence[str] | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            for n, seq in enumerate(seqs):
                self.accepted[seq] = ids[n] if ids is not None and n < len(ids) else None
                self.accepted_at[seq] = now

    def refuse(self, reason: str, count: int) -> None:
        with self._lock:
            self.refused[reason] += count

    def arrived(self, seq: int, webhook_id: str) -> None:
        with self._lock:
            self.arrivals[seq] += 1
            self.webhook_ids.setdefault(seq, set()).add(webhook_id)
            now = time.monotonic()
            self.first_arrival.setdefault(seq, now)
            self.arrived_at.append(now)

    def missing(self) -> list[int]:
        with self._lock:
            return sorted(s for s in self.accepted if s not in self.arrivals)

    def accepted_between(self, start: float, end: float) -> list[int]:
        with self._lock:
            return [s for s, t in self.accepted_at.items() if start <= t < end]

    def fill(self, result: DrillResult) -> None:
        """The counts, and notes on everything that is not a plain single delivery."""
        with self._lock:
            accepted = set(self.accepted)
            arrived = set(self.arrivals)
            result.accepted = len(accepted)
            result.delivered = len(accepted & arrived)
            result.lost = len(accepted - arrived)
            result.duplicated = sum(1 for s in accepted if self.arrivals[s] > 1)
            extra = sum(self.arrivals.values()) - len(arrived)
            stored_twice = sum(1 for s in arrived if len(self.webhook_ids[s]) > 1)
            unacknowledged = len(arrived - accepted)
            wrong_id = sum(
                1 for s, mid in self.accepted.items()
                if mid is not None and s in arrived and mid not in self.webhook_ids[s]
            )
            refused = dict(self.refused)
        if result.duplicated:
            result.notes.append(f"{extra} extra deliveries (same webhook-id)"
                                if not stored_twice else f"{extra} extra deliveries")
        if stored_twice:
            result.notes.append(f"{stored_twice} messages stored twice (two webhook-ids)")
        if unacknowledged:
            result.notes.append(f"{unacknowledged} delivered that were never acknowledged "
                                "(stored, answer lost: fine)")
        if wrong_id:
            result.notes.append(f"{wrong_id} arrived under another webhook-id than the 202 gave")
        if self.bad_signatures:
            result.notes.append(f"{self.bad_signatures} webhooks with a bad signature")
        if self.unreadable:
            result.notes.append(f"{self.unreadable} webhooks without a readable payload")
        if refused:
            result.notes.append("not accepted: " + ", ".join(
                f"{n} {why}" for why, n in sorted(refused.items(), key=lambda kv: -kv[1])))


# --- a receiver in this process -------------------------------------------------------------

def free_socket(port: int = 0) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only then.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def free_port() -> int:
    with contextlib.closing(free_socket()) as sock:
        return int(sock.getsockname()[1])


class Receiver:
    """An aiohttp server that checks each webhook's signature and writes what it carried into
    the ledger before answering 204. ``stop()`` takes it down (connections refused) and
    ``start()`` brings it back on the same port."""

    def __init__(self, ledger: Ledger, delay: float = 0.0) -> None:
        self.ledger = ledger
        self.delay = delay
        self.secret: str | None = None  # set once the connector exists
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        ledger = self.ledger
        ledger.requests += 1
        if self.secret is not None:
            try:
                verify(self.secret, headers, body, now=int(time.time()))
            except SignatureMismatch:
                ledger.bad_signatures += 1
                return web.Response(status=401)
        webhook_id = headers.get("webhook-id", "")
        try:
            parsed = orjson.loads(body)
            items = parsed if isinstance(parsed, list) else [parsed]
            seqs = [int(item["payload"]) for item in items]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            ledger.unreadable += 1
            return web.Response(status=400)
        if self.delay:
            await asyncio.sleep(self.delay * random.random() * 2)  # pacing: a slow receiver
        for seq in seqs:
            ledger.arrived(seq, webhook_id)
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        sock = free_socket(self.port)
        try:
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self.port = int(sock.getsockname()[1])
        self._runner, self._sock = runner, sock

    async def stop(self) -> None:
        runner, sock = self._runner, self._sock
        self._runner, self._sock = None, None
        if runner is not None:
            await runner.cleanup()
        if sock is not None:
            sock.close()


@contextlib.asynccontextmanager
async def running_receiver(ledger: Ledger, delay: float = 0.0) -> AsyncIterator[Receiver]:
    receiver = Receiver(ledger, delay)
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


# --- hookstream processes -----------------------------------------------------------------

@dataclass
class Keys:
    """One run's admin key and secrets key, shared by every process of a drill."""

    admin: str = field(default_factory=lambda: "hsa_drill_" + secrets.token_hex(20))
    secrets: str = field(default_factory=lambda: Fernet.generate_key().decode())


def hookstream_env(database_url: str, data_dir: Path, keys: Keys, options: Options,
                   **extra: str) -> dict[str, str]:
    """A child's environment: ours without any HOOKSTREAM_ variable, then the drill's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")}
    env.update(
        HOOKSTREAM_DATABASE_URL=database_url,
        HOOKSTREAM_DATA_DIR=str(data_dir),
        HOOKSTREAM_ADMIN_KEY=keys.admin,
        HOOKSTREAM_SECRETS_KEY=keys.secrets,
        HOOKSTREAM_ALLOW_PRIVATE_TARGETS="true",
        HOOKSTREAM_RETRY_SCHEDULE=options.retry_schedule,
        HOOKSTREAM_LEASE_SECONDS=str(options.lease_seconds),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Proc:
    """A child process (``python -m hookstream ROLE``) that can be killed and started again;
    its output goes to ``log``, appended across restarts."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @classmethod
    def hookstream(cls, role: str, env: dict[str, str], workdir: Path,
                   name: str | None = None) -> Proc:
        name = name or role
        return cls(name, [sys.executable, "-m", "hookstream", role], env,
                   workdir / f"{name}.log")

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def start(self) -> None:
        assert not self.running, f"{self.name} is already running"
        self.starts += 1
        with self.log.open("ab") as out:  # the child keeps its own descriptor
            out.write(f"\n=== drills: start {self.starts} of {self.name} ===\n".encode())
            out.flush()
            # The working folder is the drill's: no .env of the repository is read.
            self.popen = subprocess.Popen(self.args, env=self.env, stdout=out,
                                          stderr=subprocess.STDOUT, cwd=self.log.parent,
                                          stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(15)
        self.popen = None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; the exit code (None when it had to be killed)."""
        if self.popen is None:
            return 0
        popen, self.popen = self.popen, None
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
        try:
            return popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(15)
            return None

    async def wait_log(self, text: str, timeout: float = 120.0) -> float:
        """Until ``text`` is in the log since the last start; the seconds it took."""
        start = time.monotonic()
        marker = f"=== drills: start {self.starts} of {self.name} ==="
        while True:
            with contextlib.suppress(OSError):
                log = self.log.read_text(errors="replace")
                if text in log[log.rfind(marker):]:
                    return time.monotonic() - start
            if self.popen is None or self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"{self.name} did not print {text!r} in {timeout:.0f} s")
            await asyncio.sleep(0.05)  # poll interval

    def trouble(self) -> list[str]:
        """The log's ERROR lines and exceptions, for the notes."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return []
        pattern = re.compile(r" (ERROR|CRITICAL) |^Traceback|^\w+(\.\w+)*(Error|Exception): ")
        return [line for line in text.splitlines() if pattern.search(line)]


class Processes:
    """The drill's children; every one is stopped (or killed) when the block ends."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []
        self.exit_codes: dict[str, int | None] = {}

    def add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.popen is not None:
                self.exit_codes[proc.name] = proc.stop()

    def report(self, say: Say, result: DrillResult) -> None:
        """Short notes for the table (exit codes, error lines in the logs); the commonest
        error lines of each log are printed with ``say``. A process that did not exit 0 on
        SIGTERM makes the drill keep its folder."""
        notes = [f"{name} exited {code} on SIGTERM" if code is not None
                 else f"{name} did not stop on SIGTERM within 30 s"
                 for name, code in self.exit_codes.items() if code != 0]
        if notes:
            result.keep = True
        for proc in self.procs:
            lines = proc.trouble()
            if not lines:
                continue
            kinds = Counter(_error_kind(line) for line in lines)
            notes.append(f"{proc.name} log: {len(lines)} error lines")
            say(f"{proc.name} log ({proc.log}): {len(lines)} error lines: " + "; ".join(
                f"{n}x {kind}" for kind, n in kinds.most_common(4)))
        result.notes += notes


def _error_kind(line: str) -> str:
    """An error line without its time stamp, shortened, to count alike lines together."""
    line = re.sub(r"^\d{4}-\d\d-\d\d [\d:,]+ ", "", line.strip())
    line = re.sub(r"\d+", "N", line)
    return line[:120]


async def wait_ready(session: aiohttp.ClientSession, base_url: str, timeout: float = 120.0,
                     proc: Proc | None = None) -> float:
    """Until ``/readyz`` answers 200; the seconds it took."""
    start = time.monotonic()
    while True:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
            async with session.get(f"{base_url}/readyz",
                                   timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
        if proc is not None and proc.popen is not None and proc.popen.poll() is not None:
            tail = proc.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{proc.name} exited {proc.popen.returncode}: {tail}")
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"{base_url} not ready after {timeout:.0f} s")
        await asyncio.sleep(0.05)  # poll interval


async def start_serve(ctx: Context, procs: Processes, session: aiohttp.ClientSession,
                      **extra: str) -> tuple[Proc, str]:
    """``hookstream serve`` on a SQLite file of the drill's folder; (process, base URL)."""
    port = free_port()
    env = hookstream_env(f"sqlite:///{ctx.workdir / 'hookstream.db'}", ctx.workdir / "var",
                         ctx.keys, ctx.options, HOOKSTREAM_LISTEN=f"127.0.0.1:{port}", **extra)
    serve = procs.add(Proc.hookstream("serve", env, ctx.workdir))
    base = f"http://127.0.0.1:{port}"
    serve.start()
    took = await wait_ready(session, base, proc=serve)
    ctx.say(f"hookstream serve on SQLite (pid {serve.pid}) ready in {took:.1f} s at {base}")
    return serve, base


# The banner a worker prints once its database is open.
# The readiness line: the worker claimed once, its signal handlers are in place.
WORKER_STARTED = "hookstream ready:"


async def start_split(ctx: Context, procs: Processes, session: aiohttp.ClientSession,
                      env: dict[str, str]) -> tuple[Proc, list[Proc], str]:
    """An ``api`` and two ``worker`` processes on ``env``'s database, started and ready;
    (api, workers, base URL)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = procs.add(Proc.hookstream(
        "api", {**env, "HOOKSTREAM_LISTEN": f"127.0.0.1:{port}"}, ctx.workdir))
    workers = [procs.add(Proc.hookstream("worker", env, ctx.workdir, f"worker-{n}"))
               for n in (1, 2)]
    api.start()
    for w in workers:
        w.start()
    took = await wait_ready(session, base, proc=api)
    for w in workers:
        await w.wait_log(WORKER_STARTED)
    ctx.say(f"api (pid {api.pid}) and 2 workers (pids {[w.pid for w in workers]}) ready in "
            f"{took:.1f} s")
    return api, workers, base


async def migrate(env: dict[str, str], workdir: Path) -> None:
    """``hookstream migrate`` (the api and worker roles do not migrate)."""
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "hookstream", "migrate"], env=env, cwd=workdir,
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"hookstream migrate failed: {done.stdout[-1500:]} {done.stderr[-1500:]}")


# --- a tenant over the API ------------------------------------------------------------------

@dataclass
class Tenant:
    api_key: str
    gateways: list[tuple[str, str]]  # (id, ingest token)
    connector_id: str
    secret: str


async def _call(session: aiohttp.ClientSession, method: str, url: str, key: str,
                body: Any = None, expect: int = 201) -> Any:
    async with session.request(method, url, json=body,
                               headers={"Authorization": f"Bearer {key}"}) as resp:
        text = await resp.text()
        if resp.status != expect:
            raise RuntimeError(f"{method} {url} answered {resp.status}: {text[:500]}")
        return orjson.loads(text)


async def provision(session: aiohttp.ClientSession, base_url: str, admin_key: str,
                    receiver_url: str, gateways: int = 1) -> Tenant:
    """An organization, gateways, a connector to the receiver, a trigger for values."""
    api = f"{base_url}/api/v1"
    org = await _call(session, "POST", f"{api}/organizations", admin_key, {"name": "Drill"})
    key = org["apiKey"]
    made = []
    for n in range(gateways):
        gw = await _call(session, "POST", f"{api}/gateways", key, {"name": f"drill-gw-{n}"})
        made.append((gw["id"], gw["ingestToken"]))
    con = await _call(session, "POST", f"{api}/connectors", key, {
        "name": "drill receiver", "baseUrl": receiver_url, "active": True,
        "routes": {"values": "/values", "events": "/events", "alarms": "/alarms"},
    })
    await _call(session, "POST", f"{api}/connectors/{con['id']}/triggers", key,
                {"kinds": [KIND], "allGateways": True})
    return Tenant(key, made, con["id"], con["secret"])


async def delivery_counts(session: aiohttp.ClientSession, base_url: str,
                          tenant: Tenant) -> Counter[str]:
    """How many of the tenant's deliveries are in each status."""
    counts: Counter[str] = Counter()
    cursor: str | None = None
    while True:
        params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
        async with session.get(f"{base_url}/api/v1/deliveries", params=params,
                               headers={"Authorization": f"Bearer {tenant.api_key}"}) as resp:
            resp.raise_for_status()
            body = await resp.json()
        counts.update(d["status"] for d in body["items"])
        cursor = body["nextCursor"]
        if not cursor:
            return counts


async def explain_lost(session: aiohttp.ClientSession, base_url: str, tenant: Tenant,
                       ledger: Ledger, say: Say, limit: int = 5) -> None:
    """Print what hookstream knows of a few lost messages (the evidence)."""
    missing = ledger.missing()
    if not missing:
        return
    say(f"LOST {len(missing)} messages, e.g. seq {missing[:20]}")
    for seq in missing[:limit]:
        mid = ledger.accepted.get(seq)
        if mid is None:
            say(f"  seq {seq}: accepted (PUBACK), no message id known")
            continue
        try:
            async with session.get(f"{base_url}/api/v1/messages/{mid}", headers={
                    "Authorization": f"Bearer {tenant.api_key}"}) as resp:
                text = await resp.text()
            say(f"  seq {seq} = {mid}: GET /api/v1/messages/{mid} -> {resp.status} {text[:400]}")
        except (aiohttp.ClientError, OSError) as exc:
            say(f"  seq {seq} = {mid}: cannot ask the API ({exc})")


async def wait_delivered(ledger: Ledger, say: Say, timeout: float) -> bool:
    """Until every accepted message arrived (False after ``timeout`` seconds)."""
    start = time.monotonic()
    last_report = start
    while True:
        missing = len(ledger.missing())
        if missing == 0:
            say(f"every accepted message arrived, {time.monotonic() - start:.1f} s after the "
                "load stopped")
            return True
        now = time.monotonic()
        if now - start > timeout:
            say(f"{missing} accepted messages still missing after {timeout:.0f} s")
            return False
        if now - last_report > 10:
            say(f"waiting: {missing} accepted messages not delivered yet")
            last_report = now
        await asyncio.sleep(0.2)  # poll interval


async def wait_settled(session: aiohttp.ClientSession, base_url: str, tenant: Tenant,
                       say: Say, timeout: float) -> Counter[str]:
    """Until no delivery is pending any more (a delivery leased by a killed process is sent
    again when its lease runs out: a duplicate to count); the statuses."""
    start = time.monotonic()
    while True:
        counts = await delivery_counts(session, base_url, tenant)
        if not counts.get("pending") and not counts.get("held"):
            return counts
        if time.monotonic() - start > timeout:
            say(f"deliveries still open after {timeout:.0f} s: {dict(counts)}")
            return counts
        await asyncio.sleep(0.5)  # poll interval


async def finish(ctx: Context, session: aiohttp.ClientSession, base_url: str, tenant: Tenant,
                 ledger: Ledger, result: DrillResult) -> None:
    """After the load: wait for every accepted message and for the queue to empty, then
    count, and show what hookstream knows of any lost message."""
    o, say = ctx.options, ctx.say
    await wait_delivered(ledger, say, o.drain_timeout)
    statuses = await wait_settled(session, base_url, tenant, say,
                                  o.lease_seconds * 2 + 10)
    await asyncio.sleep(o.settle)  # deliberate interval: an attempt still in flight ends
    say(f"deliveries by status: {dict(statuses)}")
    ledger.fill(result)
    await explain_lost(session, base_url, tenant, ledger, say)
    if set(statuses) - {"delivered"}:
        result.notes.append(f"deliveries by status: {dict(statuses)}")


# --- HTTP load ----------------------------------------------------------------------------

class HttpLoad:
    """``clients`` posters sending ``rate`` messages a second, 1 to ``max_batch`` per POST,
    to the ingest URLs in turn; only a 202 counts as accepted."""

    def __init__(self, ledger: Ledger, urls: list[str], token: str, drill: str,
                 options: Options, rng: random.Random) -> None:
        self.ledger = ledger
        self.urls = urls
        self.token = token
        self.drill = drill
        self.rate = options.rate
        self.clients = options.clients
        self.max_batch = options.max_batch
        self.rng = random.Random(rng.random())  # its own: the drill's kill moments stay put
        self._stop = asyncio.Event()
        self._next_at = 0.0
        self._turn = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.posts = 0

    async def __aenter__(self) -> HttpLoad:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=15),
            connector=aiohttp.TCPConnector(limit=self.clients * 2),
        )
        self._next_at = time.monotonic()
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self.clients)]
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _client(self) -> None:
        assert self._session is not None
        session = self._session
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        while not self._stop.is_set():
            count = self.rng.randint(1, self.max_batch)
            at = max(time.monotonic(), self._next_at)
            self._next_at = at + count / self.rate
            delay = at - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                if self._stop.is_set():
                    return
            seqs = self.ledger.take(count)
            body = orjson.dumps([message(s, self.drill) for s in seqs])
            url = self.urls[self._turn % len(self.urls)] + f"/ingest/v1/{KIND}"
            self._turn += 1
            self.posts += 1
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    answer = await resp.read()
                    if resp.status == 202:
                        self.ledger.accept(seqs, orjson.loads(answer)["ids"])
                        continue
                    self.ledger.refuse(f"HTTP {resp.status}", count)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self.ledger.refuse(_error_name(exc), count)
            # Not accepted: the server is down or in trouble; do not spin.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.05 + self.rng.random() * 0.1)


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeouts"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection refused"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return "connection dropped"
    return type(exc).__name__


# --- our own PostgreSQL -------------------------------------------------------------------

def postgres_bindir() -> Path | None:
    """The newest installed server binaries (Debian keeps them off PATH)."""

    def version(path: str) -> tuple[int, ...]:
        found = re.search(r"/postgresql/([\d.]+)/", path)
        return tuple(int(p) for p in found.group(1).split(".")) if found else (0,)

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def _as_unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return []
    import pwd

    runuser = shutil.which("runuser")
    if runuser is None:
        raise Skip(f"running as root, PostgreSQL must run as {UNPRIVILEGED}, and runuser is "
                   "missing")
    try:
        pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        raise Skip(f"running as root, PostgreSQL must run as another user, and there is no "
                   f"user {UNPRIVILEGED!r}") from None
    return [runuser, "-u", UNPRIVILEGED, "--"]


class Postgres:
    """A PostgreSQL cluster of the drill's own in a fresh folder of the system's temporary
    folder (owned by an unprivileged user when we are root): 127.0.0.1 on a free port, its
    socket in that folder, trust authentication, fsync on."""

    def __init__(self) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise Skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed "
                       "(apt install postgresql)")
        self.bindir = bindir
        self.prefix = _as_unprivileged()
        self.directory = Path(tempfile.mkdtemp(prefix="hookstream-drill-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgresql.log"
        self.port = free_port()
        self.running = False

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*self.prefix, *args], capture_output=True, text=True,
                              timeout=timeout, cwd=self.directory, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} {' '.join(args[1:])} failed "
                               f"({done.returncode}): {done.stdout[-1500:]} {done.stderr[-1500:]}")
        return done

    def init(self) -> None:
        if self.prefix:
            uid, gid = _uid_gid(UNPRIVILEGED)
            os.chown(self.directory, uid, gid)
        # --no-sync: only initdb's own files are not fsynced; the server runs with fsync on.
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# hookstream drills\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.directory}'\n"
                "fsync = on\nsynchronous_commit = on\nfull_page_writes = on\n"
                "max_connections = 200\n"
            )

    def start(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                  "-w", "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m fast`` (clients disconnected, a clean shutdown) or ``immediate``
        (no shutdown checkpoint: crash recovery at the next start)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                  "-t", "60", "stop")
        self.running = False

    @property
    def version(self) -> str:
        return self.bindir.parent.name

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def create_database(self, name: str) -> str:
        import asyncpg

        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres",
                                     database="postgres")
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)


def _uid_gid(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


@contextlib.contextmanager
def running_postgres(keep: bool = False) -> Iterator[Postgres]:
    """Our own cluster, stopped and removed (unless ``keep``) when the block ends."""
    pg = Postgres()
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        for mode in ("fast", "immediate"):
            if pg.running:
                with contextlib.suppress(Exception):
                    pg.stop(mode)
        if keep:
            print(f"kept PostgreSQL's folder {pg.directory}", flush=True)
        else:
            shutil.rmtree(pg.directory, ignore_errors=True)


# --- our own Mosquitto --------------------------------------------------------------------


def own_mosquitto(directory: Path) -> Mosquitto:
    """A Mosquitto of the drill's own, or Skip when it is not installed."""
    if MOSQUITTO is None or MOSQUITTO_PASSWD is None:
        raise Skip("Mosquitto is not installed (apt install mosquitto)")
    return Mosquitto(directory)


# --- the drill's frame --------------------------------------------------------------------

@dataclass
class Context:
    """What a drill runs with: its options, a folder of its own, a seeded RNG, its voice."""

    options: Options
    workdir: Path
    say: Say
    rng: random.Random
    keys: Keys = field(default_factory=Keys)


async def drill_frame(name: str, options: Options, workdir: Path,
                      body: Callable[[Context, DrillResult], Awaitable[None]],
                      out: Callable[[str], None] | None = None) -> DrillResult:
    """Run one drill's ``body`` and fill in what it found; an exception is a drill ERROR."""
    say = Say(name, out)
    result = DrillResult(name)
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(options, workdir, say, random.Random(f"{options.seed}:{name}"))
    try:
        await body(ctx, result)
    except Skip as exc:
        result.skipped = str(exc)
        say(f"skipped: {exc}")
    except Exception as exc:  # noqa: BLE001 - reported in the table and the exit code
        result.error = f"{type(exc).__name__}: {exc}"[:500]
        say(f"ERROR {result.error}")
        import traceback

        traceback.print_exc()
    result.seconds = say.elapsed
    say(result.line())
    for note in result.notes:
        say(f"  note: {note}")
    return result
