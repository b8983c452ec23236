"""What every benchmark shares: options, figures, processes, databases, tenants, load."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG_ENVS = ("HOOKSTREAM_BENCH_POSTGRESQL_URL", "HOOKSTREAM_TEST_POSTGRESQL_URL")
KIND = "values"


# --- options and figures ----------------------------------------------------------------

@dataclass
class Options:
    """Sizes and switches of one run (see ``python -m bench --help``)."""

    mode: str = "default"
    deliveries: int = 20_000
    backlog_batch: int = 1000
    concurrency: int = 256  # the reference client's, and the worker's default
    # The bench connector's limits.maxConcurrency; None: 256 per worker process (a
    # connector's limit holds for all workers together, so with 256 two workers could not
    # both fill their HOOKSTREAM_WORKER_CONCURRENCY of 256).
    connector_concurrency: int | None = None
    ingest_seconds: float = 6.0
    ingest_warmup: float = 1.0
    ingest_clients: int = 64
    ingest_batch: int = 100
    ingest_batch_clients: int = 16
    latency_rates: tuple[float, ...] = (1000.0,)
    latency_seconds: float = 10.0
    # Fan-out and isolation: messages ingested, each to fanout_connectors connectors.
    fanout_connectors: int = 100
    fanout_messages: int = 200
    # The large backlog drained by one worker (its rate against the drain figure's).
    backlog: int = 200_000
    backlog_clients: int = 4
    # Messages published over MQTT (QoS 1), and the publisher's messages in flight.
    mqtt_messages: int = 20_000
    mqtt_inflight: int = 1000
    # Deliveries drained to each broker type (mqtt_drain, amqp_drain, nats_drain).
    broker_messages: int = 10_000
    sqlite_synchronous: str = "full"
    postgresql_url: str | None = None
    # The sustained rate of serve: offered rates tried in turn, each this long.
    sustained_rates: tuple[float, ...] = (250.0, 500.0, 750.0, 1000.0, 1500.0, 2000.0, 3000.0)
    sustained_seconds: float = 5.0
    only: frozenset[str] = frozenset({"drain", "ingest", "latency", "sustained", "fanout",
                                      "isolation", "backlog", "mqtt", "mqtt_drain",
                                      "amqp_drain", "nats_drain"})
    profile: bool = False
    keep: bool = False

    def connector_limit(self, workers: int = 1) -> int:
        return self.connector_concurrency or min(1000, 256 * workers)


@dataclass
class Figure:
    """One measured figure and its reference, measured in the same run just before it."""

    benchmark: str
    name: str
    database: str
    value: float
    unit: str
    reference: float
    reference_name: str
    higher_is_better: bool = True
    details: dict[str, Any] = field(default_factory=dict)
    reference_unit: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.reference if self.reference else float("nan")

    def as_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark, "name": self.name, "database": self.database,
            "value": self.value, "unit": self.unit, "reference": self.reference,
            "referenceUnit": self.reference_unit or self.unit,
            "referenceName": self.reference_name, "ratio": self.ratio,
            "higherIsBetter": self.higher_is_better, "details": self.details,
        }


def say(text: str) -> None:
    """Progress on stderr (the table goes to stdout at the end)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- the machine ------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--", "src"))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "pythonImplementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "hookstreamCommit": commit,
        "srcDirty": dirty,
        "loadAverageAtStart": list(os.getloadavg()),
        "packages": _versions("aiohttp", "uvloop", "uvicorn", "fastapi", "sqlalchemy",
                              "aiosqlite", "asyncpg", "httptools", "orjson", "pydantic"),
    }


def fsync_probe(directory: Path, count: int = 50) -> dict[str, float]:
    """How long an fsync of a small append takes where the SQLite files live (ms): with
    HOOKSTREAM_SQLITE_SYNCHRONOUS=full every SQLite commit pays about one."""
    path = directory / "fsync-probe"
    times: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            os.write(fd, b"x" * 4096)
            t0 = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return {k: v for k, v in percentiles(times).items() if v is not None}


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _versions(*names: str) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


class CpuWindow:
    """Machine CPU use (cores busy on average) and our processes' CPU seconds over a span."""

    def __init__(self, procs: list[Proc]) -> None:
        self.procs = procs
        self.start_wall = time.monotonic()
        self.start_machine = cpu_busy()
        self.start_procs = {p.name: p.cpu_seconds() for p in procs}
        self.start_self = _self_cpu()

    def finish(self) -> dict[str, Any]:
        wall = max(time.monotonic() - self.start_wall, 1e-9)
        busy, total = cpu_busy()
        d_busy, d_total = busy - self.start_machine[0], total - self.start_machine[1]
        cores = os.cpu_count() or 1
        procs: dict[str, float] = {}
        system: dict[str, float] = {}
        for p in self.procs:
            (user, sys_), (user0, sys0) = p.cpu_seconds(), self.start_procs[p.name]
            procs[p.name] = round((user + sys_ - user0 - sys0) / wall, 3)
            system[p.name] = round((sys_ - sys0) / wall, 3)
        me, me0 = _self_cpu(), self.start_self
        procs["bench (client)"] = round((sum(me) - sum(me0)) / wall, 3)
        system["bench (client)"] = round((me[1] - me0[1]) / wall, 3)
        return {
            "wallSeconds": round(wall, 3),
            "machineCoresBusy": round(cores * d_busy / d_total, 3) if d_total else None,
            "processCores": procs,
            "processCoresSystem": system,
        }


def _self_cpu() -> tuple[float, float]:
    t = os.times()
    return t.user, t.system


# --- processes --------------------------------------------------------------------------

def rss_mb(pid: int) -> dict[str, float | None]:
    """A process's resident memory now (VmRSS) and at its peak so far (VmHWM), in MB
    (10^6 bytes), from /proc/PID/status; None where that cannot be read."""
    found: dict[str, float | None] = {"rss": None, "peak": None}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                kb = float(value.split()[0])
                found["rss" if key == "VmRSS" else "peak"] = round(kb * 1024 / 1e6, 1)
    return found


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    """A child process we started (only these are ever stopped)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    started_at: float
    # Where this process's output begins in ``log`` (a name used again appends to its log).
    log_start: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        """What this process has written to its log so far."""
        try:
            with self.log.open("rb") as fh:
                fh.seek(self.log_start)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def cpu_seconds(self) -> tuple[float, float]:
        """(user, system) CPU seconds so far of this process and of its child processes
        running now (serve's workers, API processes), from /proc (0 once it is gone)."""
        user = system = 0
        for stat_file in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat_file.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if stat_file.parent.name == str(self.pid) or fields[1] == str(self.pid):
                user += int(fields[11])
                system += int(fields[12])
        tick = os.sysconf("SC_CLK_TCK")
        return user / tick, system / tick

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def spawn(name: str, args: list[str], env: dict[str, str], cwd: Path, log: Path) -> Proc:
    with log.open("ab") as fh:
        start = fh.tell()
        popen = subprocess.Popen(args, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
    return Proc(name, popen, log, time.time(), start)


class Workspace:
    """A temporary folder, the keys of this run, and every process started in it."""

    def __init__(self, options: Options) -> None:
        from cryptography.fernet import Fernet

        self.options = options
        self.dir = Path(tempfile.mkdtemp(prefix="hookstream-bench-"))
        self.secrets_key = Fernet.generate_key().decode()
        self.admin_key = "hsa_bench_" + secrets.token_urlsafe(32)
        self.procs: list[Proc] = []

    def base_env(self) -> dict[str, str]:
        """Our environment, with bytecode cached (in this workspace, not next to the sources):
        with PYTHONDONTWRITEBYTECODE every process start would compile every module again,
        which an installed deployment does not do."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(self.dir / "pycache")
        return env

    def env(self, database_url: str, listen: str | None = None, **extra: str) -> dict[str, str]:
        """The settings of a hookstream process, like tests/support.py's settings_env."""
        env = {k: v for k, v in self.base_env().items() if not k.startswith("HOOKSTREAM_")}
        env.update(
            HOOKSTREAM_DATABASE_URL=database_url,
            HOOKSTREAM_SECRETS_KEY=self.secrets_key,
            HOOKSTREAM_ADMIN_KEY=self.admin_key,
            HOOKSTREAM_ALLOW_PRIVATE_TARGETS="true",
            HOOKSTREAM_DATA_DIR=str(self.dir / "data"),
            HOOKSTREAM_SQLITE_SYNCHRONOUS=self.options.sqlite_synchronous,
            # The benchmarks measure throughput, far above a real gateway's or API client's
            # rate; the limiters still run (a dict lookup per request), they just never refuse.
            HOOKSTREAM_INGEST_TOKEN_RATE_PER_MINUTE="1000000000",
            HOOKSTREAM_API_KEY_RATE_PER_MINUTE="1000000000",
            # Connectors per organization: the fan-out and isolation runs make 101.
            HOOKSTREAM_MAX_CONNECTORS_PER_ORG="10000",
            HOOKSTREAM_MAX_TRIGGERS_PER_ORG="100000",
        )
        if listen is not None:
            env["HOOKSTREAM_LISTEN"] = listen
        # BENCH_HOOKSTREAM_X=v sets HOOKSTREAM_X=v for the measured processes (to try settings).
        env.update({k.removeprefix("BENCH_"): v for k, v in os.environ.items()
                    if k.startswith("BENCH_HOOKSTREAM_")})
        env.update(extra)
        return env

    def hookstream(self, role: str, database_url: str, *, listen: str | None = None,
                   name: str | None = None, env: dict[str, str] | None = None) -> Proc:
        name = name or role
        proc = spawn(name, [sys.executable, "-m", "hookstream", role],
                     self.env(database_url, listen, **(env or {})), self.dir,
                     self.dir / f"{name}.log")
        self.procs.append(proc)
        return proc

    def migrate(self, database_url: str) -> None:
        out = subprocess.run(
            [sys.executable, "-m", "hookstream", "migrate"], env=self.env(database_url),
            cwd=self.dir, capture_output=True, text=True, timeout=120,
        )
        if out.returncode != 0:
            raise RuntimeError(f"hookstream migrate failed:\n{out.stdout}\n{out.stderr}")

    def python(self, name: str, module: str, *args: str) -> Proc:
        env = dict(self.base_env(), PYTHONPATH=str(ROOT))
        proc = spawn(name, [sys.executable, "-m", module, *args], env, ROOT,
                     self.dir / f"{name}.log")
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        if not self.options.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


async def wait_log_line(proc: Proc, prefix: str, timeout: float = 30.0) -> str:
    """The first line of ``proc``'s log starting with ``prefix``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check()
        with contextlib.suppress(OSError):
            for line in proc.log.read_text(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not print {prefix!r} in {timeout} s:\n{proc.tail()}")


async def wait_http(proc: Proc, url: str, timeout: float = 60.0) -> None:
    """Until ``url`` answers 200 (the process is serving)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            proc.check()
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer {url} in {timeout} s:\n{proc.tail()}")


@contextlib.asynccontextmanager
async def hookstream_api(ws: Workspace, role: str, database_url: str,
                         env: dict[str, str] | None = None) -> AsyncIterator[tuple[Proc, str]]:
    """``hookstream api`` (or ``serve``) on a free port, ready; stopped on the way out."""
    port = free_port()
    proc = ws.hookstream(role, database_url, listen=f"127.0.0.1:{port}", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(proc, base + "/readyz")
        yield proc, base
    finally:
        ws.stop(proc)


# --- the receiver -----------------------------------------------------------------------

class Receiver:
    """bench/receiver.py in its own process, and a client for its counters."""

    def __init__(self, proc: Proc, port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    async def start(cls, ws: Workspace, name: str = "receiver", hang: bool = False
                    ) -> Receiver:
        proc = ws.python(name, "bench.receiver", *(["--hang"] if hang else []))
        line = await wait_log_line(proc, "listening ")
        return cls(proc, int(line.split()[1]))

    async def _json(self, method: str, path: str) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self.proc.check()
        async with self._session.request(method, self.url + "/__bench/" + path) as resp:
            resp.raise_for_status()
            return dict(orjson.loads(await resp.read()))

    async def reset(self, latency: bool = False) -> None:
        await self._json("POST", "reset" + ("?latency=1" if latency else ""))

    async def stats(self) -> dict[str, Any]:
        return await self._json("GET", "stats")

    async def samples(self) -> list[float]:
        return list((await self._json("GET", "samples"))["samples"])

    async def wait_for(self, count: int, timeout: float,
                       also: Callable[[], None] | None = None) -> dict[str, Any]:
        """Stats once ``count`` requests have arrived; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            stats = await self.stats()
            if stats["requests"] >= count:
                return stats
            if also is not None:
                also()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the receiver counted {stats['requests']} of {count} "
                                   f"requests in {timeout:.0f} s")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


# --- databases --------------------------------------------------------------------------

class Databases:
    """Fresh, migrated databases: SQLite files copied from a template, or PostgreSQL
    databases cloned from a template (``CREATE DATABASE ... TEMPLATE``, dropped after)."""

    label = ""

    async def new(self) -> str:
        raise NotImplementedError

    async def pending(self, url: str) -> int:
        raise NotImplementedError

    async def messages(self, url: str) -> int:
        """How many messages the database holds."""
        raise NotImplementedError

    async def close(self) -> None:
        return None


class SqliteDatabases(Databases):
    label = "SQLite"

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.template = ws.dir / "template.db"
        ws.migrate(f"sqlite:///{self.template}")

    async def new(self) -> str:
        target = self.ws.dir / f"hookstream-{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(self.template, target)
        return f"sqlite:///{target}"

    async def pending(self, url: str) -> int:
        path = url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            row = conn.execute("SELECT count(*) FROM deliveries WHERE status = 'pending'")
            return int(row.fetchone()[0])

    async def messages(self, url: str) -> int:
        path = url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])


class PostgresDatabases(Databases):
    label = "PostgreSQL"

    def __init__(self, ws: Workspace, url: str) -> None:
        self.ws = ws
        self.url = url
        self.prefix = f"hs_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.template = self.prefix + "_tpl"
        self.made: list[str] = []

    def url_for(self, name: str) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def _dsn(self, name: str | None = None) -> str:
        from sqlalchemy.engine import make_url

        url = make_url(self.url).set(drivername="postgresql")
        if name is not None:
            url = url.set(database=name)
        return url.render_as_string(hide_password=False)

    async def _exec(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn())
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def open(self) -> None:
        await self._exec(f'CREATE DATABASE "{self.template}"')
        self.made.append(self.template)
        await asyncio.to_thread(self.ws.migrate, self.url_for(self.template))

    async def server_info(self) -> dict[str, Any]:
        import asyncpg

        conn = await asyncpg.connect(self._dsn())
        try:
            info = {}
            for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers",
                         "max_connections"):
                info[name] = await conn.fetchval(f"SHOW {name}")
            return info
        finally:
            await conn.close()

    async def new(self) -> str:
        name = f"{self.prefix}_{len(self.made)}"
        await self._exec(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.made.append(name)
        return self.url_for(name)

    async def pending(self, url: str) -> int:
        import asyncpg
        from sqlalchemy.engine import make_url

        conn = await asyncpg.connect(self._dsn(make_url(url).database))
        try:
            return int(await conn.fetchval(
                "SELECT count(*) FROM deliveries WHERE status = 'pending'"))
        finally:
            await conn.close()

    async def messages(self, url: str) -> int:
        import asyncpg
        from sqlalchemy.engine import make_url

        conn = await asyncpg.connect(self._dsn(make_url(url).database))
        try:
            return int(await conn.fetchval("SELECT count(*) FROM messages"))
        finally:
            await conn.close()

    async def close(self) -> None:
        for name in reversed(self.made):
            with contextlib.suppress(Exception):
                await self._exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.made.clear()


def postgresql_url() -> str | None:
    for name in PG_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    return None


async def wait_pending(dbs: Databases, url: str, expect: int, timeout: float) -> float:
    """Until the database shows ``expect`` pending deliveries; returns when (time.time())."""
    deadline = time.monotonic() + timeout
    while True:
        n = await dbs.pending(url)
        if n == expect:
            return time.time()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{n} deliveries pending after {timeout:.0f} s (expected {expect})")
        await asyncio.sleep(0.05)


# --- a tenant: organization, gateway, connector to the receiver, trigger ----------------

@dataclass(frozen=True)
class Tenant:
    api_key: str
    gateway_id: str
    token: str
    connector_id: str
    connector_ids: tuple[str, ...] = ()

    @property
    def ingest_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}


@dataclass(frozen=True)
class Target:
    """One connector to create: where it points (its values to ``base_url + values``) and its
    limits.maxConcurrency (None: the default, HOOKSTREAM_CONNECTOR_MAX_CONCURRENCY)."""

    base_url: str
    max_concurrency: int | None = None
    values: str = "/values"


async def create_tenant(base: str, admin_key: str, receiver_url: str,
                        connector_concurrency: int) -> Tenant:
    """Everything a gateway's values need to reach the receiver, over the HTTP API."""
    return await create_tenant_to(base, admin_key, [Target(receiver_url, connector_concurrency)])


async def create_tenant_to(base: str, admin_key: str, targets: list[Target]) -> Tenant:
    """An organization, a gateway, and one connector per target, each with a trigger for the
    gateway's values: every value is delivered once to every target."""
    async with aiohttp.ClientSession(base_url=base) as http:
        async def post(path: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
            async with http.post(path, json=body,
                                 headers={"Authorization": f"Bearer {key}"}) as resp:
                text = await resp.text()
                if resp.status != 201:
                    raise RuntimeError(f"POST {path}: {resp.status} {text}")
                return dict(orjson.loads(text))

        org = await post("/api/v1/organizations", admin_key, {"name": "Bench"})
        key = org["apiKey"]
        gateway = await post("/api/v1/gateways", key, {"name": "Bench gateway"})
        ids: list[str] = []
        for n, target in enumerate(targets):
            body: dict[str, Any] = {
                "name": f"bench receiver {n + 1}", "baseUrl": target.base_url,
                "routes": {"values": target.values, "events": "/events", "alarms": "/alarms"},
                "active": True,
            }
            if target.max_concurrency is not None:
                body["limits"] = {"maxConcurrency": target.max_concurrency}
            connector = await post("/api/v1/connectors", key, body)
            await post(f"/api/v1/connectors/{connector['id']}/triggers", key,
                       {"kinds": [KIND], "gatewayIds": [gateway["id"]]})
            ids.append(connector["id"])
    return Tenant(key, gateway["id"], gateway["ingestToken"], ids[0], tuple(ids))


# --- messages ------------------------------------------------------------------

def message(i: int, payload: Any = None) -> dict[str, Any]:
    """A datastream value with all 15 fields (receivedAt set, so the delivered body is the
    body sent: the same size at the receiver as in the references)."""
    now = 1_767_225_600_000 + i
    return {
        "deviceId": f"boiler-{i % 100:03d}", "property": "temperature", "timestamp": now,
        "payload": 642 + i % 100 if payload is None else payload, "receivedAt": now + 5,
        "scaledPayload": 64.2, "name": "Boiler temperature", "unit": "°C",
        "externalId": "TW-0001", "propertyId": "prop-17", "equipmentId": "eq-3",
        "gatewayInterfaceId": "if-1", "slug": "boiler-temperature", "isOutOfService": False,
        "tags": {"site": "north", "building": "B2"},
    }


def fake_webhook_headers(i: int) -> dict[str, str]:
    """Headers the size of a signed webhook's, for the references."""
    return {
        "content-type": "application/json", "user-agent": "hookstream/0.1",
        "webhook-id": f"msg_{i:026d}", "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1," + "A" * 43 + "=",
    }


def percentiles(values: list[float], scale: float = 1000.0) -> dict[str, float | None]:
    """p50/p95/p99/max of ``values`` (seconds), in ms."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * scale, 2)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99),
            "max": round(ordered[-1] * scale, 2), "n": len(ordered)}


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
