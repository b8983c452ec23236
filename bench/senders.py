"""``python -m bench.senders`` (``make bench-senders``): HTTP clients as webhook senders.

POSTs one signed ~300-byte webhook (Content-Type and the Standard Webhooks headers
webhook-id, webhook-timestamp, webhook-signature) ``--requests`` times over keep-alive
connections, ``--concurrency`` at once, with each client in turn, to a local receiver in its
own process (nginx when the binary is on PATH or given with ``--nginx``, else this module's
``--receiver``, a minimal asyncio protocol answering 204). Prints requests/s and the ratio to
aiohttp, hookstream's sender (the reference), and a second table: what each client offers
delivery (the SSRF guard, split timeouts, a pool per connector, TLS verification, the 1 KiB
response excerpt).

The clients: aiohttp (one ClientSession, TCPConnector(limit=concurrency), set up as
hookstream.pipeline.deliver.client.Sender sets it up), pyreqwest (Rust: reqwest and hyper),
pycurl (libcurl's multi interface, on asyncio with pycurl.AsyncCurlMulti and in a blocking
select loop), a minimal keep-alive client on an asyncio protocol with httptools' response
parser, and a bare asyncio protocol that writes the same request bytes and counts the answers
(the upper bound: no client work at all). None of them but aiohttp is a dependency of
hookstream: a client that is not installed is reported and skipped. To measure them all, use
a venv of their own::

    python3 -m venv /tmp/bench-venv
    /tmp/bench-venv/bin/pip install -e . aiohttp pyreqwest pycurl httptools uvloop
    make bench-senders SENDERS_PYTHON=/tmp/bench-venv/bin/python

Each client opens its pool and sends ``--warmup`` requests first (not counted); then the
clock runs until the last of ``--requests`` answers. CPU is read for this process (all its
threads: pyreqwest's Tokio runtime included) and for the receiver's: client CPU µs/request is
the cost that matters on a busy worker. A figure counts only if every answer was a 204.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import orjson
from rich.console import Console
from rich.table import Table

from bench.common import RESULTS, machine, say, timestamp

EXCERPT = 1024  # hookstream keeps this much of a response body (RESPONSE_EXCERPT)
DRAIN_LIMIT = 64 * 1024  # and reads up to this much more to keep the connection
PATH = "/hooks/bench"
CONNECT_TIMEOUT = 5.0
TOTAL_TIMEOUT = 15.0
READY_TIMEOUT = 15.0
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nServer: bench\r\n\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


# --- the request ------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """Where and what every client POSTs: the same body and headers each time."""

    host: str
    port: int
    body: bytes
    headers: dict[str, str]
    concurrency: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{PATH}"


def webhook(host: str, port: int, concurrency: int) -> Target:
    """A ~300-byte datastream value, signed as hookstream signs it (Standard Webhooks)."""
    from hookstream.pipeline.deliver.signing import new_secret, secret_key, sign

    body = orjson.dumps({
        "type": "values", "deviceId": "boiler-007", "property": "temperature",
        "timestamp": 1_767_225_600_000, "receivedAt": 1_767_225_600_005, "payload": 642,
        "scaledPayload": 64.2, "name": "Boiler temperature", "unit": "°C",
        "externalId": "TW-0001", "propertyId": "prop-17", "equipmentId": "eq-3",
        "slug": "boiler-temperature", "tags": {"site": "north"},
    })
    webhook_id = f"msg_{uuid.uuid4().hex}"
    stamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "hookstream/0.1",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign([secret_key(new_secret())], webhook_id, stamp, body),
    }
    return Target(host, port, body, headers, concurrency)


# --- results ----------------------------------------------------------------------------

@dataclass
class Counts:
    """Answers of one run: 204s, anything else, and the first failure seen."""

    ok: int = 0
    errors: int = 0
    first_error: str | None = None

    def add(self, status: int) -> None:
        if status == 204:
            self.ok += 1
        else:
            self.fail(f"status {status}")

    def fail(self, why: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = why


@dataclass
class Outcome:
    """One client's figure, or why there is none."""

    name: str
    version: str | None = None
    how: str = ""
    requests: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    receiver_cpu_seconds: float | None = None
    counts: Counts = field(default_factory=Counts)
    missing: str | None = None  # "not installed (...)"
    failed: str | None = None

    @property
    def per_second(self) -> float | None:
        if self.missing or self.failed or not self.seconds:
            return None
        return self.requests / self.seconds

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "how": self.how,
            "requests": self.requests, "seconds": round(self.seconds, 4),
            "requestsPerSecond": None if self.per_second is None else round(self.per_second, 1),
            "clientCpuSeconds": round(self.cpu_seconds, 4),
            "receiverCpuSeconds": None if self.receiver_cpu_seconds is None
            else round(self.receiver_cpu_seconds, 4),
            "ok": self.counts.ok, "errors": self.counts.errors,
            "firstError": self.counts.first_error, "missing": self.missing,
            "failed": self.failed,
        }


# --- the clients ------------------------------------------------------------------------

class Sender(Protocol):
    """One HTTP client, set up as a delivery worker would set it up."""

    name: str
    modules: tuple[str, ...]  # importable modules it needs
    distribution: str  # whose version the table shows
    how: str

    async def open(self, target: Target) -> None: ...

    async def run(self, n: int) -> Counts: ...

    async def close(self) -> None: ...


async def closed_loop(post: Callable[[int], Awaitable[int]], n: int, concurrency: int
                      ) -> Counts:
    """``n`` calls of ``post(slot)`` (an HTTP status) from ``concurrency`` tasks."""
    counts = Counts()
    left = n

    async def task(slot: int) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            try:
                counts.add(await post(slot))
            except Exception as exc:  # noqa: BLE001 - a failed request is counted, not raised
                counts.fail(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(task(slot) for slot in range(min(concurrency, n))))
    return counts


class AiohttpSender:
    name = "aiohttp"
    modules: tuple[str, ...] = ("aiohttp",)
    distribution = "aiohttp"
    how = "ClientSession + TCPConnector(limit=C), as deliver/client.py's Sender"

    def __init__(self) -> None:
        self.session: Any = None
        self.target: Target | None = None

    async def open(self, target: Target) -> None:
        import aiohttp

        self.target = target
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=target.concurrency, ttl_dns_cache=10,
                                           enable_cleanup_closed=True),
            timeout=aiohttp.ClientTimeout(total=TOTAL_TIMEOUT, connect=CONNECT_TIMEOUT,
                                          sock_connect=CONNECT_TIMEOUT),
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
        )

    async def post(self, slot: int) -> int:
        assert self.target is not None
        async with self.session.post(self.target.url, data=self.target.body,
                                     headers=self.target.headers,
                                     allow_redirects=False) as resp:
            await resp.content.read(EXCERPT)
            if not resp.content.at_eof():
                await resp.content.read(DRAIN_LIMIT)
            return int(resp.status)

    async def run(self, n: int) -> Counts:
        assert self.target is not None
        return await closed_loop(self.post, n, self.target.concurrency)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class PyreqwestSender:
    name = "pyreqwest"
    modules: tuple[str, ...] = ("pyreqwest",)
    distribution = "pyreqwest"
    how = "one Client, max_connections(C); build_streamed(), body_reader.read()"

    def __init__(self) -> None:
        self.client: Any = None
        self.target: Target | None = None

    async def open(self, target: Target) -> None:
        from pyreqwest.client import ClientBuilder

        self.target = target
        self.client = (
            ClientBuilder()
            .max_connections(target.concurrency)
            .connect_timeout(timedelta(seconds=CONNECT_TIMEOUT))
            .timeout(timedelta(seconds=TOTAL_TIMEOUT))
            .follow_redirects(False)
            .gzip(False).brotli(False).zstd(False).deflate(False)
            .build()
        )

    async def post(self, slot: int) -> int:
        assert self.target is not None
        request = (self.client.post(self.target.url).headers(self.target.headers)
                   .body_bytes(self.target.body).build_streamed())
        async with request as resp:
            await resp.body_reader.read(EXCERPT)
            return int(resp.status)

    async def run(self, n: int) -> Counts:
        assert self.target is not None
        return await closed_loop(self.post, n, self.target.concurrency)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


class _Excerpt:
    """pycurl's WRITEFUNCTION: keeps the first KiB of a body, counts the rest."""

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def clear(self) -> None:
        self.parts.clear()
        self.size = 0

    def write(self, data: bytes) -> int | None:
        if self.size < EXCERPT:
            self.parts.append(data[:EXCERPT - self.size])
        self.size += len(data)
        return -1 if self.size > EXCERPT + DRAIN_LIMIT else None  # -1 aborts the transfer


def _curl_handles(target: Target) -> list[tuple[Any, _Excerpt]]:
    """One easy handle per concurrent transfer, its fixed options set once."""
    import pycurl

    handles = []
    for _ in range(target.concurrency):
        curl = pycurl.Curl()
        excerpt = _Excerpt()
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, int(CONNECT_TIMEOUT * 1000))
        curl.setopt(pycurl.TIMEOUT_MS, int(TOTAL_TIMEOUT * 1000))
        curl.setopt(pycurl.WRITEFUNCTION, excerpt.write)
        handles.append((curl, excerpt))
    return handles


def _curl_prepare(curl: Any, excerpt: _Excerpt, target: Target,
                  header_lines: list[str]) -> None:
    """What changes per delivery: URL, headers, body (set again for every request)."""
    import pycurl

    excerpt.clear()
    curl.setopt(pycurl.URL, target.url)
    curl.setopt(pycurl.HTTPHEADER, header_lines)
    curl.setopt(pycurl.POSTFIELDS, target.body)


def _curl_header_lines(target: Target) -> list[str]:
    # "Expect:" keeps libcurl from waiting for 100 Continue (it asks above 1 MiB).
    return [f"{k}: {v}" for k, v in target.headers.items()] + ["Expect:"]


class PycurlAsyncSender:
    name = "pycurl (AsyncCurlMulti)"
    modules: tuple[str, ...] = ("pycurl",)
    distribution = "pycurl"
    how = "pycurl.AsyncCurlMulti on this event loop, an easy handle per task"

    def __init__(self) -> None:
        self.multi: Any = None
        self.target: Target | None = None
        self.handles: list[tuple[Any, _Excerpt]] = []
        self.lines: list[str] = []

    async def open(self, target: Target) -> None:
        import pycurl

        self.target = target
        self.multi = pycurl.AsyncCurlMulti()
        self.multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, target.concurrency)
        self.multi.setopt(pycurl.M_MAXCONNECTS, target.concurrency)
        self.handles = _curl_handles(target)
        self.lines = _curl_header_lines(target)

    async def post(self, slot: int) -> int:
        import pycurl

        assert self.target is not None
        curl, excerpt = self.handles[slot]
        _curl_prepare(curl, excerpt, self.target, self.lines)
        await self.multi.perform(curl)
        return int(curl.getinfo(pycurl.RESPONSE_CODE))

    async def run(self, n: int) -> Counts:
        assert self.target is not None
        return await closed_loop(self.post, n, self.target.concurrency)

    async def close(self) -> None:
        if self.multi is not None:
            await self.multi.aclose()
        for curl, _ in self.handles:
            curl.close()


class PycurlSelectSender:
    name = "pycurl (CurlMulti, select loop)"
    modules: tuple[str, ...] = ("pycurl",)
    distribution = "pycurl"
    how = "perform()/select() blocking the thread: best case, no event loop"

    def __init__(self) -> None:
        self.multi: Any = None
        self.target: Target | None = None
        self.handles: list[tuple[Any, _Excerpt]] = []
        self.lines: list[str] = []

    async def open(self, target: Target) -> None:
        import pycurl

        self.target = target
        self.multi = pycurl.CurlMulti()
        self.multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, target.concurrency)
        self.multi.setopt(pycurl.M_MAXCONNECTS, target.concurrency)
        self.handles = _curl_handles(target)
        self.lines = _curl_header_lines(target)

    async def run(self, n: int) -> Counts:
        import pycurl

        assert self.target is not None
        target, multi, counts = self.target, self.multi, Counts()
        excerpts = {id(curl): excerpt for curl, excerpt in self.handles}
        started = done = 0
        for curl, excerpt in self.handles[:n]:
            _curl_prepare(curl, excerpt, target, self.lines)
            multi.add_handle(curl)
            started += 1
        while done < n:
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            while True:
                queued, ok, failed = multi.info_read()
                finished = [(curl, None) for curl in ok] + [(c, f"curl {e}: {m}")
                                                           for c, e, m in failed]
                for curl, why in finished:
                    multi.remove_handle(curl)
                    done += 1
                    if why is None:
                        counts.add(int(curl.getinfo(pycurl.RESPONSE_CODE)))
                    else:
                        counts.fail(why)
                    if started < n:
                        _curl_prepare(curl, excerpts[id(curl)], target, self.lines)
                        multi.add_handle(curl)
                        started += 1
                if not queued:
                    break
            if done < n:
                multi.select(1.0)
        return counts

    async def close(self) -> None:
        if self.multi is not None:
            self.multi.close()
        for curl, _ in self.handles:
            curl.close()


class _HttptoolsConnection(asyncio.Protocol):
    """One keep-alive connection; httptools.HttpResponseParser calls back into it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        import httptools

        self.loop = loop
        self.parser = httptools.HttpResponseParser(self)
        self.error = httptools.HttpParserError
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.excerpt = bytearray()
        self.body_size = 0
        self.keep_alive = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def request(self, data: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.excerpt.clear()
        self.body_size = 0
        self.keep_alive = False
        self.waiter = self.loop.create_future()
        self.transport.write(data)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except self.error as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(exc)
            self.close()

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        if len(self.excerpt) < EXCERPT:
            self.excerpt += body[:EXCERPT - len(self.excerpt)]
        self.body_size += len(body)
        if self.body_size > EXCERPT + DRAIN_LIMIT and self.waiter and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())  # answer kept, connection not

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _HttptoolsPool:
    """At most ``limit`` connections to one address; idle ones reused last-in first-out."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port = host, port
        self.slots = asyncio.Semaphore(limit)
        self.idle: list[_HttptoolsConnection] = []

    async def acquire(self) -> _HttptoolsConnection:
        await self.slots.acquire()
        try:
            while self.idle:
                conn = self.idle.pop()
                if not conn.closed:
                    return conn
            loop = asyncio.get_running_loop()
            # A real sender passes the address it resolved and checked, and for https
            # ssl=context, server_hostname=name: SNI and verification by the name.
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _HttptoolsConnection(loop), self.host,
                                       self.port),
                CONNECT_TIMEOUT)
            return conn
        except BaseException:
            self.slots.release()
            raise

    def release(self, conn: _HttptoolsConnection, reuse: bool) -> None:
        if reuse and not conn.closed:
            self.idle.append(conn)
        else:
            conn.close()
        self.slots.release()

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


def _timed_out(waiter: asyncio.Future[int]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no complete answer within the timeout"))


class HttptoolsSender:
    name = "httptools client"
    modules: tuple[str, ...] = ("httptools",)
    distribution = "httptools"
    how = "asyncio.Protocol + HttpResponseParser, pool of C, timer per POST"

    def __init__(self) -> None:
        self.pool: _HttptoolsPool | None = None
        self.target: Target | None = None

    async def open(self, target: Target) -> None:
        self.target = target
        self.pool = _HttptoolsPool(target.host, target.port, target.concurrency)

    def request_bytes(self, target: Target) -> bytes:
        head = [f"POST {PATH} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
                f"Content-Length: {len(target.body)}\r\n"]
        for name, value in target.headers.items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name} holds a line break")
            head.append(f"{name}: {value}\r\n")
        head.append("\r\n")
        return "".join(head).encode("latin-1") + target.body

    async def post(self, slot: int) -> int:
        assert self.pool is not None and self.target is not None
        data = self.request_bytes(self.target)
        conn = await self.pool.acquire()
        reuse = False
        try:
            waiter = conn.request(data)
            timer = conn.loop.call_later(TOTAL_TIMEOUT, _timed_out, waiter)
            try:
                status = await waiter
            finally:
                timer.cancel()
            reuse = conn.keep_alive
            return status
        finally:
            self.pool.release(conn, reuse)

    async def run(self, n: int) -> Counts:
        assert self.target is not None
        return await closed_loop(self.post, n, self.target.concurrency)

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


class _BareConnection(asyncio.Protocol):
    """Writes the same request bytes, one at a time, and counts the answers."""

    def __init__(self, owner: BareSender) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        run = self.owner.current
        if run is not None and not self.owner.closing:
            run.lost(f"connection lost: {exc}")

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            length = 0
            at = head.lower().find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17:stop if stop >= 0 else len(head)])
            if len(buf) < end + 4 + length:
                return
            del buf[:end + 4 + length]
            run = self.owner.current
            assert run is not None
            run.answered(self, int(head[9:12]))


class _BareRun:
    """One run of BareSender: ``n`` requests over its open connections."""

    def __init__(self, data: bytes, n: int, loop: asyncio.AbstractEventLoop) -> None:
        self.data = data
        self.left = n  # requests not yet written
        self.pending = n  # answers not yet read
        self.counts = Counts()
        self.done: asyncio.Future[None] = loop.create_future()

    def start(self, conn: _BareConnection) -> None:
        if self.left > 0:
            self.left -= 1
            assert conn.transport is not None
            conn.transport.write(self.data)

    def answered(self, conn: _BareConnection, status: int) -> None:
        self.counts.add(status)
        self.pending -= 1
        if self.pending == 0:
            if not self.done.done():
                self.done.set_result(None)
        else:
            self.start(conn)

    def lost(self, why: str) -> None:
        if self.pending and not self.done.done():
            self.done.set_exception(ConnectionError(why))


class BareSender:
    name = "bare asyncio protocol"
    modules: tuple[str, ...] = ()
    distribution = ""
    how = "C connections, prebuilt request bytes, answers counted: upper bound"

    def __init__(self) -> None:
        self.conns: list[_BareConnection] = []
        self.target: Target | None = None
        self.current: _BareRun | None = None
        self.closing = False

    async def open(self, target: Target) -> None:
        self.target = target
        loop = asyncio.get_running_loop()
        for _ in range(target.concurrency):
            _, conn = await loop.create_connection(lambda: _BareConnection(self),
                                                   target.host, target.port)
            self.conns.append(conn)

    async def run(self, n: int) -> Counts:
        assert self.target is not None
        self.current = _BareRun(HttptoolsSender().request_bytes(self.target), n,
                                asyncio.get_running_loop())
        for conn in self.conns:
            self.current.start(conn)
        await self.current.done
        return self.current.counts

    async def close(self) -> None:
        self.closing = True
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.close()


SENDERS: tuple[Callable[[], Sender], ...] = (
    AiohttpSender, PyreqwestSender, PycurlAsyncSender, PycurlSelectSender, HttptoolsSender,
    BareSender,
)


# --- what delivery needs, per client ------------------------------------------------------
# Read in the installed packages' code and stubs: aiohttp 3.14 (abc.AbstractResolver,
# ClientTimeout), pyreqwest 0.15 (client/__init__.pyi: ClientBuilder; reqwest 0.13, rustls
# with rustls-platform-verifier), pycurl 7.49 (libcurl 8.23: CURLOPT_RESOLVE, CONNECT_TO,
# OPENSOCKETFUNCTION), httptools 0.9 (a parser only: the connection is ours).

NEEDS = ("SSRF: connect to our checked address", "connect / total timeouts",
         "pool per connector", "TLS verification", "1 KiB excerpt")

CAPABILITIES: dict[str, tuple[str, ...]] = {
    "aiohttp": (
        "yes: AbstractResolver on the TCPConnector (today's GuardedResolver)",
        "yes: ClientTimeout(connect, sock_connect, total), per request too",
        "yes: a TCPConnector (limit) per session, or limit_per_host",
        "yes: ssl=True default, or an SSLContext",
        "yes: resp.content.read(1024)",
    ),
    "pyreqwest": (
        "partly: no resolver hook; ClientBuilder.resolve(domain, ip, port) is static, so a "
        "Client per checked address (rebuilt when DNS changes)",
        "yes: connect_timeout (per client), timeout (client or request), read_timeout",
        "yes: a Client each; max_connections caps requests in flight",
        "yes: rustls, system roots (platform verifier), add_root_certificate_pem",
        "yes: build_streamed(), body_reader.read(1024)",
    ),
    "pycurl": (
        "yes: CURLOPT_RESOLVE/CONNECT_TO per handle, or OPENSOCKETFUNCTION sees the "
        "address before connect",
        "yes: CONNECTTIMEOUT_MS, TIMEOUT_MS per handle",
        "yes: a CurlMulti each (its connection cache); M_MAX_HOST/TOTAL_CONNECTIONS",
        "yes: libcurl + OpenSSL, SSL_VERIFYPEER/VERIFYHOST on by default, CAINFO",
        "yes: WRITEFUNCTION keeps 1 KiB (-1 aborts, so drain to reuse)",
    ),
    "httptools client": (
        "yes, ours: create_connection(checked_ip, port, server_hostname=name)",
        "ours: wait_for on connect, call_later per request (both here)",
        "ours: the pool is ours (here: semaphore + idle list per address)",
        "yes, ours: ssl=SSLContext (verifies by server_hostname)",
        "yes: on_body keeps 1 KiB (here)",
    ),
    "bare asyncio protocol": (
        "n/a: not a client", "no", "no", "no", "no: counts heads only",
    ),
}


def capability_row(sender: Sender) -> tuple[str, ...]:
    key = sender.name.split(" (")[0]
    return CAPABILITIES.get(key, ("?",) * len(NEEDS))


# --- the receiver -------------------------------------------------------------------------

def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Receiver:
    """The receiver process: nginx, or ``python -m bench.senders --receiver``."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, kind: str,
                 folder: Path | None = None) -> None:
        self.proc, self.port, self.kind, self.folder = proc, port, kind, folder

    def cpu_seconds(self) -> float | None:
        return _cpu_seconds(self.proc.pid)

    @classmethod
    def start(cls, nginx: str | None) -> Receiver:
        return cls._nginx(nginx) if nginx else cls._python()

    @classmethod
    def _python(cls) -> Receiver:
        root = Path(__file__).resolve().parent.parent
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.senders", "--receiver"], cwd=root,
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().split()  # blocks until "ready <port>"
        if len(line) != 2 or line[0] != "ready":
            proc.kill()
            raise RuntimeError(f"the receiver did not start (said {line!r}, exit {proc.poll()})")
        version = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        return cls(proc, int(line[1]), f"python -m bench.senders --receiver ({version})")

    @classmethod
    def _nginx(cls, binary: str) -> Receiver:
        folder = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        with socket.socket() as probe:  # a free port: nginx cannot listen on port 0
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        temp = " ".join(f"{kind}_temp_path {folder}/{kind};"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (folder / "nginx.conf").write_text(
            "daemon off; master_process off; worker_processes 1;\n"
            f"pid {folder}/nginx.pid; error_log {folder}/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            f"http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 60s; {temp}\n"
            f"  server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ return 204; }} }}\n"
            "}\n")
        proc = subprocess.Popen(
            [binary, "-p", str(folder), "-c", str(folder / "nginx.conf"),
             "-e", str(folder / "error.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:  # nginx prints nothing when ready: ready is when it accepts
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"nginx exited {proc.returncode}: {err.strip()}")
            with socket.socket() as s, contextlib.suppress(OSError):
                s.connect(("127.0.0.1", port))
                break
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"nginx did not accept on {port} in {READY_TIMEOUT:.0f} s")
            time.sleep(0.01)
        version = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip()
        return cls(proc, port, f"{version.split(': ')[-1]}, return 204, 1 worker", folder)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if self.folder is None else signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


class _Answer(asyncio.Protocol):
    """The receiver's connection: 204 to every complete request, in order."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        buf = self.buf
        buf += data
        answers = 0
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = bytes(buf[:end]).lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                value = head[at + 17:stop if stop >= 0 else len(head)].strip()
                if not value.isdigit():
                    self.transport.write(BAD_REQUEST)
                    self.transport.close()
                    return
                length = int(value)
            elif b"\r\ntransfer-encoding:" in head:  # none of the clients here chunk
                self.transport.write(BAD_REQUEST)
                self.transport.close()
                return
            if len(buf) < end + 4 + length:
                break
            del buf[:end + 4 + length]
            answers += 1
        if answers:
            self.transport.write(NO_CONTENT * answers)


async def serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Answer, "127.0.0.1", 0, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await stop.wait()


# --- the run ------------------------------------------------------------------------------

def version_of(sender: Sender) -> str | None:
    if not sender.distribution:
        return None
    try:
        return metadata.version(sender.distribution)
    except metadata.PackageNotFoundError:
        return None


def not_installed(sender: Sender) -> str | None:
    missing = [m for m in sender.modules if importlib.util.find_spec(m) is None]
    return f"not installed ({', '.join(missing)})" if missing else None


async def measure(sender: Sender, target: Target, n: int, warmup: int,
                  receiver: Receiver) -> Outcome:
    out = Outcome(sender.name, version_of(sender), sender.how, n)
    out.missing = not_installed(sender)
    if out.missing:
        return out
    try:
        await sender.open(target)
        try:
            if warmup:
                warm = await sender.run(warmup)
                if warm.errors:
                    raise RuntimeError(f"warm-up: {warm.errors} errors, first: "
                                       f"{warm.first_error}")
            receiver_cpu = receiver.cpu_seconds()
            cpu, started = time.process_time(), time.perf_counter()
            out.counts = await sender.run(n)
            out.seconds = time.perf_counter() - started
            out.cpu_seconds = time.process_time() - cpu
            after = receiver.cpu_seconds()
            if receiver_cpu is not None and after is not None:
                out.receiver_cpu_seconds = after - receiver_cpu
        finally:
            await sender.close()
    except Exception as exc:  # noqa: BLE001 - one client failing must not lose the others
        out.failed = f"{type(exc).__name__}: {exc}"
        return out
    if out.counts.errors or out.counts.ok != n:
        out.failed = (f"{out.counts.errors} of {n} failed, first: {out.counts.first_error}")
    return out


async def run_all(args: argparse.Namespace, receiver: Receiver,
                  senders: list[Sender]) -> list[Outcome]:
    target = webhook("127.0.0.1", receiver.port, args.concurrency)
    outcomes = []
    for sender in senders:
        say(f"{sender.name}: {args.requests:,} requests, {args.concurrency} at once")
        outcome = await measure(sender, target, args.requests, args.warmup, receiver)
        if outcome.missing or outcome.failed:
            say(f"{sender.name}: {outcome.missing or outcome.failed}")
        else:
            say(f"{sender.name}: {outcome.per_second:,.0f} requests/s")
        outcomes.append(outcome)
    return outcomes


def print_tables(outcomes: list[Outcome], senders: list[Sender], info: dict[str, Any],
                 console: Console) -> None:
    reference = next((o.per_second for o in outcomes if o.name == "aiohttp"), None)
    table = Table(
        title=f"senders: {info['requests']:,} POSTs of a {info['bodyBytes']}-byte signed "
              f"webhook, {info['concurrency']} at once, keep-alive; {info['cpu']}, "
              f"{info['cores']} cores, Python {info['python']} ({info['loop']})",
        caption=f"receiver: {info['receiver']}; ratio = client / aiohttp, same run; cores: "
                f"this process (all threads), the receiver (≈1.00: it set the figure); "
                f"load at start {info['loadAverageAtStart']:.2f}",
    )
    for col, justify in (("client", "left"), ("version", "left"), ("requests/s", "right"),
                         ("vs aiohttp", "right"), ("client CPU µs/req", "right"),
                         ("client cores", "right"), ("receiver cores", "right"),
                         ("set up as", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for o in outcomes:
        rate = o.per_second
        if rate is None:
            table.add_row(o.name, o.version or "", "[yellow]not installed[/]" if o.missing
                          else "[bold red]failed[/]", "–", "–", "–", "–",
                          o.missing or o.failed or "")
            continue
        ratio = f"{rate / reference:.2f}×" if reference else "–"
        receiver = (f"{o.receiver_cpu_seconds / o.seconds:.2f}"
                    if o.receiver_cpu_seconds is not None else "–")
        table.add_row(o.name, o.version or "", f"{rate:,.0f}", ratio,
                      f"{o.cpu_seconds / o.requests * 1e6:,.1f}",
                      f"{o.cpu_seconds / o.seconds:.2f}", receiver, o.how)
    console.print(table)

    needs = Table(title="what delivery needs, per client (read in the installed packages' "
                        "code and docs; 'ours' = code the client on httptools has to bring)")
    needs.add_column("client")
    for need in NEEDS:
        needs.add_column(need)
    seen: set[str] = set()
    for sender in senders:
        key = sender.name.split(" (")[0]
        if key in seen:
            continue
        seen.add(key)
        missing = not_installed(sender)
        needs.add_row(key + (" [yellow](not installed)[/]" if missing else ""),
                      *capability_row(sender))
    console.print(needs)


def write(doc: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"senders-{doc['startedAt']}.json"
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    return path


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.senders",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000,
                        help="POSTs per client, counted (default 20,000)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="requests in flight and connections (default 64)")
    parser.add_argument("--warmup", type=int, default=1000,
                        help="POSTs per client before the clock starts (default 1,000)")
    parser.add_argument("--only", help="comma-separated client names (or name prefixes)")
    parser.add_argument("--nginx", help="the nginx binary (default: nginx on PATH, if any)")
    parser.add_argument("--no-nginx", action="store_true",
                        help="the Python receiver even where nginx is installed")
    parser.add_argument("--receiver", action="store_true",
                        help="be the receiver: print 'ready PORT', answer 204 until SIGTERM")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.warmup < 0:
        parser.error("--requests and --concurrency must be at least 1, --warmup at least 0")
    return args


def chosen(only: str | None) -> Iterator[Sender]:
    wanted = [w.strip().lower() for w in only.split(",")] if only else None
    for make in SENDERS:
        sender = make()
        if wanted is None or any(sender.name.lower().startswith(w) for w in wanted):
            yield sender


def event_loop_run(main: Awaitable[Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)  # type: ignore[arg-type]
    return uvloop.run(main)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.receiver:
        event_loop_run(serve())
        return 0
    senders = list(chosen(args.only))
    if not senders:
        say(f"--only {args.only}: no such client")
        return 2
    nginx = None if args.no_nginx else (args.nginx or shutil.which("nginx"))
    receiver = Receiver.start(nginx)
    say(f"receiver: {receiver.kind} on port {receiver.port}")
    load = os.getloadavg()[0]
    try:
        outcomes = event_loop_run(run_all(args, receiver, senders))
    finally:
        receiver.stop()
    m = machine()
    info = {
        "startedAt": timestamp(), "requests": args.requests, "concurrency": args.concurrency,
        "warmup": args.warmup, "receiver": receiver.kind, "cpu": m["cpu"], "cores": m["cores"],
        "python": m["python"], "commit": m.get("hookstreamCommit"), "loadAverageAtStart": load,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "bodyBytes": len(webhook("127.0.0.1", 0, 1).body),
    }
    console = Console(width=max(Console().width, 200))
    print_tables(outcomes, senders, info, console)
    path = write({**info, "clients": [o.as_json() for o in outcomes]})
    say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
