"""Test support: real databases from templates, the service on a real port, a real receiver."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn
from aiohttp import web
from sqlalchemy.engine import make_url

from hookstream.pipeline.worker import Worker
from hookstream.services.runtime import Runtime
from hookstream.settings import Settings
from hookstream.storage import migrate
from hookstream.web.app import create_app

PG_ENV = "HOOKSTREAM_TEST_POSTGRESQL_URL"
REQUIRE_ENV = "HOOKSTREAM_TEST_REQUIRE_SERVICES"
SECRETS_KEY = "q0Kx9m5b2vYf3Qn8wF4s1Zp7uL6cT0aR9eJ2hG5kD1M="
ADMIN_KEY = "hsa_test_admin_key_0123456789abcdefghijklmnopqrstuv"
ROOT = Path(__file__).resolve().parent.parent


def free_socket() -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only then (else ~40 ms per request).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with contextlib.closing(free_socket()) as sock:
        return int(sock.getsockname()[1])


# --- databases --------------------------------------------------------------------------

def pg_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def _admin_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_exec(url: str, sql: str) -> None:
    conn = await asyncpg.connect(_admin_dsn(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class PostgresTemplates:
    """One migrated template database per test session; each test gets a cheap copy."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.template = f"hs_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.made: list[str] = []

    def url_for(self, name: str) -> str:
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def create_template(self) -> None:
        async def go() -> None:
            await _pg_exec(self.url, f'CREATE DATABASE "{self.template}"')
            await migrate.upgrade(base_settings(self.url_for(self.template)))

        asyncio.run(go())

    async def new_database(self) -> str:
        name = f"hs_t_{uuid.uuid4().hex[:12]}"
        await _pg_exec(self.url, f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.made.append(name)
        return self.url_for(name)

    async def drop(self, url: str) -> None:
        name = make_url(url).database
        await _pg_exec(self.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_all(self) -> None:
        async def go() -> None:
            for name in [*self.made, self.template]:
                await _pg_exec(self.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        asyncio.run(go())


class SqliteTemplate:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "template.db"

    def create_template(self) -> None:
        asyncio.run(migrate.upgrade(base_settings(f"sqlite:///{self.path}")))

    def new_database(self, directory: Path) -> str:
        target = directory / "hookstream.db"
        shutil.copyfile(self.path, target)
        return f"sqlite:///{target}"


def base_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        database_url=database_url,
        secrets_key=SECRETS_KEY,
        admin_key=ADMIN_KEY,
        allow_private_targets=True,
        retry_schedule=(0.2, 0.2, 0.2),
        retry_jitter=0.0,
        poll_interval=0.2,
        lease_seconds=30.0,
        connect_timeout=2.0,
        request_timeout=5.0,
        record_flush_ms=5.0,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a child process the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")}
    env.update(
        HOOKSTREAM_DATABASE_URL=settings.database_url,
        HOOKSTREAM_SECRETS_KEY=SECRETS_KEY,
        HOOKSTREAM_ADMIN_KEY=ADMIN_KEY,
        HOOKSTREAM_ALLOW_PRIVATE_TARGETS="true",
        HOOKSTREAM_RETRY_SCHEDULE=",".join(str(s) for s in settings.retry_schedule),
        HOOKSTREAM_RETRY_JITTER=str(settings.retry_jitter),
        HOOKSTREAM_POLL_INTERVAL=str(settings.poll_interval),
        HOOKSTREAM_LEASE_SECONDS=str(settings.lease_seconds),
        HOOKSTREAM_DATA_DIR=str(settings.data_dir),
    )
    env.update(extra)
    return env


# --- the service in this event loop -----------------------------------------------------

class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


@dataclass
class Service:
    """hookstream running in the test's event loop: API on a real port and a worker."""

    runtime: Runtime
    base_url: str
    client: httpx.AsyncClient
    worker: Worker | None
    # Every organization's client, closed with the service even when a test fails early.
    org_clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def org_client(self, api_key: str) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            base_url=self.base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        )
        self.org_clients.append(client)
        return client

    async def new_org(self, name: str = "Acme") -> Org:
        resp = await self.client.post(
            "/api/v1/organizations", json={"name": name},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert resp.status_code == 201, resp.text
        body = resp.json()
        return Org(self, body["id"], body["apiKey"], self.org_client(body["apiKey"]))


@dataclass
class Org:
    service: Service
    id: str
    api_key: str
    api: httpx.AsyncClient

    async def gateway(self, name: str = "Tower") -> dict[str, Any]:
        resp = await self.api.post("/api/v1/gateways", json={"name": name})
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    async def connector(self, base_url: str, **fields: Any) -> dict[str, Any]:
        body = {
            "name": "receiver", "baseUrl": base_url,
            "routes": {"values": "/values", "events": "/events", "alarms": "/alarms"},
            "active": True,
        }
        body.update(fields)
        resp = await self.api.post("/api/v1/connectors", json=body)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    async def trigger(self, connector_id: str, kinds: list[str], gateway_ids: list[str] | None
                      = None) -> dict[str, Any]:
        body: dict[str, Any] = {"kinds": kinds}
        if gateway_ids is None:
            body["allGateways"] = True
        else:
            body["gatewayIds"] = gateway_ids
        resp = await self.api.post(f"/api/v1/connectors/{connector_id}/triggers", json=body)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    async def ingest(self, token: str, kind: str, body: Any) -> httpx.Response:
        return await self.service.client.post(
            f"/ingest/v1/{kind}", json=body, headers={"Authorization": f"Bearer {token}"}
        )

    async def deliveries(self, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {**params, "limit": 1000, **({"cursor": cursor} if cursor else {})}
            resp = await self.api.get("/api/v1/deliveries", params=query)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            items.extend(body["items"])
            cursor = body["nextCursor"]
            if not cursor:
                return items


@contextlib.asynccontextmanager
async def running_service(settings: Settings, *, worker: bool = True) -> AsyncIterator[Service]:
    runtime = await Runtime.open(settings)
    sock = free_socket()
    port = sock.getsockname()[1]
    server = _QuietServer(uvicorn.Config(
        create_app(runtime), log_level="warning", access_log=False, lifespan="off", loop="none",
        timeout_graceful_shutdown=2,
        # Test clients keep connections across slow steps (a browser walk, a process start):
        # uvicorn's 5 s idle close racing a reuse reads as "Server disconnected".
        timeout_keep_alive=120,
    ))
    api_task = asyncio.create_task(server.serve(sockets=[sock]))
    delivery = (Worker(settings, runtime.db, runtime.box, runtime.wakeup, tracing=runtime.tracing)
                if worker else None)
    worker_task = asyncio.create_task(delivery.run()) if delivery else None
    while not server.started:  # uvicorn's own readiness flag
        if api_task.done():
            api_task.result()
            raise AssertionError("the API server stopped before it listened")
        await asyncio.sleep(0.01)  # poll interval
    base = f"http://127.0.0.1:{port}"
    client = httpx.AsyncClient(base_url=base, timeout=30)
    service = Service(runtime, base, client, delivery)
    try:
        yield service
    finally:
        for org_client in service.org_clients:  # closing one already closed is a no-op
            await org_client.aclose()
        await client.aclose()
        server.should_exit = True
        await asyncio.wait_for(api_task, 15)
        if worker_task is not None:
            worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(worker_task, 30)
        sock.close()
        await runtime.close()


# --- a real receiver --------------------------------------------------------------------

@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


Responder = Callable[["Received", int], Awaitable[web.StreamResponse] | web.StreamResponse]


@dataclass
class Receiver:
    """An aiohttp server on a free port that records every request.

    ``respond(request, n)`` picks the answer for the n-th request with that webhook-id
    (1-based); the default answers 204.
    """

    url: str = ""
    received: list[Received] = field(default_factory=list)
    respond: Responder | None = None
    _counts: dict[str, int] = field(default_factory=dict)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        item = Received(request.path_qs, dict(request.headers), await request.read(), time.time())
        self.received.append(item)
        wid = item.headers.get("webhook-id", "")
        self._counts[wid] = self._counts.get(wid, 0) + 1
        self._arrived.set()
        if self.respond is None:
            return web.Response(status=204)
        result = self.respond(item, self._counts[wid])
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, web.StreamResponse)
        return result

    def ids(self) -> list[str]:
        return [r.headers.get("webhook-id", "") for r in self.received]

    async def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Until at least ``count`` requests arrived (fails after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{len(self.received)} of {count} requests arrived")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(remaining, 0.5))


@contextlib.asynccontextmanager
async def running_receiver(respond: Responder | None = None) -> AsyncIterator[Receiver]:
    receiver = Receiver(respond=respond)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    # A short shutdown: tests with receivers that never answer must not wait 60 s.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    sock = free_socket()
    site = web.SockSite(runner, sock)
    await site.start()
    receiver.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
        sock.close()


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 30.0, interval: float = 0.1,
    what: str = "",
) -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds saying ``what`` it was."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout:g} s: {what or check.__name__}")
        await asyncio.sleep(interval)  # poll interval


# --- child processes --------------------------------------------------------------------

def hookstream_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hookstream", *args]


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            args, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=log.parent
        )


# A process on a slow, busy machine may take long to import and migrate: the deadline is
# generous, and a process that exits stops the wait at once with its log.
READY_TIMEOUT = 120.0
READY_LINE = "hookstream ready:"


def _tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


class _ReadyProbe:
    """What waiting for a process's readiness shares between the sync and async waits."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float,
                 url: str | None, line: str | None) -> None:
        self.proc, self.log, self.what, self.url, self.line = proc, log, what, url, line
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.last = "no answer yet"

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise AssertionError(
                f"{self.what} exited with code {code} before it was ready "
                f"(waited for {self.url or repr(self.line)}); its log:\n{_tail(self.log)}"
            )

    def answered(self, resp: httpx.Response | None, error: Exception | None) -> bool:
        if resp is not None:
            if resp.status_code == 200:
                return True
            self.last = f"{resp.status_code} {resp.text[:300]}"
        elif error is not None:
            self.last = f"{type(error).__name__}: {error}"
        return False

    def line_seen(self) -> bool:
        assert self.line is not None
        try:
            return self.line in self.log.read_text(errors="replace")
        except FileNotFoundError:
            return False

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            target = f"GET {self.url} to answer 200" if self.url else f"the line {self.line!r}"
            raise AssertionError(
                f"{self.what} not ready after {self.timeout:g} s: waited for {target}; "
                f"last answer: {self.last}; its log:\n{_tail(self.log)}"
            )


async def wait_ready(
    proc: subprocess.Popen[bytes], log: Path, *, url: str | None = None,
    line: str | None = None, what: str = "the process", timeout: float = READY_TIMEOUT,
) -> None:
    """Until the process says it is ready: ``url`` (its /readyz) answers 200, or ``line``
    (default: the readiness line) appears in its log. Fails if it exits first, or at the
    deadline, saying what it waited for."""
    if url is None and line is None:
        line = READY_LINE
    probe = _ReadyProbe(proc, log, what, timeout, url, line)
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            probe.check_alive()
            if url is not None:
                resp, error = None, None
                try:
                    resp = await client.get(url)
                except httpx.TransportError as exc:
                    error = exc
                if probe.answered(resp, error):
                    return
            elif probe.line_seen():
                return
            probe.check_deadline()
            await asyncio.sleep(0.1)  # poll interval


def wait_ready_sync(
    proc: subprocess.Popen[bytes], log: Path, *, url: str, what: str = "the process",
    timeout: float = READY_TIMEOUT,
) -> None:
    """``wait_ready`` for tests that run no event loop."""
    probe = _ReadyProbe(proc, log, what, timeout, url, None)
    with httpx.Client(timeout=10) as client:
        while True:
            probe.check_alive()
            resp, error = None, None
            try:
                resp = client.get(url)
            except httpx.TransportError as exc:
                error = exc
            if probe.answered(resp, error):
                return
            probe.check_deadline()
            time.sleep(0.1)  # poll interval
