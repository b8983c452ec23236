"""A keep-alive HTTP/1.1 client for webhooks: asyncio protocols parsing with httptools.

Why not aiohttp: ``bench/senders.py`` measured aiohttp at 74-113 µs of CPU per POST and this
design (what uvicorn parses with) at 12-13 µs, on the same machine in the same run. A
webhook POST needs little of a general client: no redirects, cookies, proxies, compression
or streaming uploads. What it does need is here:

- **The checked address is the one connected to.** Names are resolved once per connection
  by the caller's resolver (the SSRF guard drops refused addresses) and the socket is opened
  to that address, so a second lookup cannot rebind it. Answers are cached for
  ``DNS_TTL`` seconds, like aiohttp's connector did.
- **Split timeouts**: ``connect`` bounds the lookup and the TCP/TLS handshake; ``total``
  the whole request, connection included.
- **Pools per destination** (scheme, host, port), all under one limit of open connections.
- **TLS verified** with the system's roots and the URL's host name (SNI).
- **A bounded read**: the first ``excerpt`` bytes of the body are kept; up to ``drain``
  bytes are read so the connection can be reused, and a longer body closes it.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Protocol, cast

import httptools
from yarl import URL

DNS_TTL = 10.0
_IDLE_SECONDS = 30.0  # an idle connection older than this is closed, not reused
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Resolver(Protocol):
    """Name lookups (aiohttp's resolvers fit): each answer a dict with ``host`` and ``port``."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds: ``connect`` for the lookup and handshake, ``total`` for the whole request."""

    connect: float
    total: float


@dataclass(frozen=True, slots=True)
class Response:
    """What a POST got back: the status, the headers delivery reads, a body excerpt."""

    status: int
    headers: dict[str, str]  # lower-case names; the last value of a repeated header
    body: bytes  # at most the excerpt asked for


class HttpError(Exception):
    """The base of what ``Pool.post`` raises besides timeouts and OSError."""


class Disconnected(HttpError):
    """The server closed the connection before a complete answer."""


class BadResponse(HttpError):
    """The answer is not HTTP/1.x this client can read."""


class BadRequest(HttpError):
    """The request cannot be written (a header with a line break, say)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    __slots__ = (
        "transport", "key", "parser", "_waiter", "_status", "_headers", "_header_name",
        "_body", "_body_len", "_excerpt", "_drain", "_complete", "_lost", "idle_since",
        "_too_long", "_headers_done", "_keep_alive",
    )

    def __init__(self, key: tuple[str, str, int]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._lost = False
        self.idle_since = 0.0
        self._reset(0, 0)

    def _reset(self, excerpt: int, drain: int) -> None:
        self._status = 0
        self._headers: dict[str, str] = {}
        self._header_name = b""
        self._body = bytearray()
        self._body_len = 0
        self._excerpt = excerpt
        self._drain = drain
        self._complete = False
        self._too_long = False
        self._headers_done = False
        self._keep_alive = False

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes nobody asked for (on an idle connection): it cannot be trusted again.
            self._close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BadResponse("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(BadResponse(f"invalid HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._waiter is not None and not self._waiter.done():
            if self._headers_done and not self._complete and self._status:
                # A body that ends with the connection (no length, not chunked).
                self._complete = True
                self._finish()
                return
            self._fail(Disconnected("the server closed the connection before answering"
                                    + (f" ({exc})" if exc else "")))

    # --- httptools callbacks ------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers_done:
            return  # a trailer
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self._headers = {}  # an interim answer (100 Continue); the real one follows
            return
        self._status = status
        self._headers_done = True
        # Read here: llhttp forgets it once the message is complete.
        self._keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if not self._headers_done:
            return
        room = self._excerpt - len(self._body)
        if room > 0:
            self._body += body[:room]
        self._body_len += len(body)
        if self._body_len > self._drain and not self._too_long:
            # Not worth reading on: answer with what we have and drop the connection.
            self._too_long = True
            self._finish()
            self._close()

    def on_message_complete(self) -> None:
        if not self._headers_done:
            return  # the end of an interim answer
        self._complete = True
        self._finish()

    # --- the request --------------------------------------------------------------------

    def _finish(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(Response(self._status, self._headers, bytes(self._body)))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self._close()

    def _close(self) -> None:
        self._lost = True
        if self.transport is not None:
            self.transport.close()

    @property
    def reusable(self) -> bool:
        """Whether the last answer left this connection fit for the next request."""
        return (not self._lost and self._complete and not self._too_long
                and self.transport is not None and not self.transport.is_closing()
                and self._keep_alive)

    async def request(self, data: bytes, excerpt: int, drain: int, deadline: float
                      ) -> Response:
        """Write one request; its answer, or TimeoutError at ``deadline`` (loop time)."""
        transport = self.transport
        assert transport is not None
        if self._lost or transport.is_closing():
            raise Disconnected("the connection was closed")
        self._reset(excerpt, drain)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Response] = loop.create_future()
        self._waiter = waiter
        # One timer per request (asyncio.timeout costs a context manager and a reschedule).
        timer = loop.call_at(deadline, self._deadline_passed)
        try:
            transport.write(data)
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _deadline_passed(self) -> None:
        self._fail(TimeoutError("no complete answer within the timeout"))

    def abort(self) -> None:
        self._lost = True
        if self.transport is not None:
            self.transport.abort()


def _request_bytes(target: Target, headers: dict[str, str], body: bytes) -> bytes:
    block = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    # A line break in a name or value would split the request; a NUL is refused by servers.
    n = len(headers)
    if block.count("\n") != n or block.count("\r") != n or "\x00" in block:
        bad = next(k for k, v in headers.items() if any(c in k + v for c in "\r\n\x00"))
        raise BadRequest(f"the header {bad!r} holds a line break or NUL")
    return (f"POST {target.path} HTTP/1.1\r\nHost: {target.host}\r\n"
            f"Content-Length: {len(body)}\r\n{block}\r\n").encode() + body


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes, parsed once: the pool's key, the request target and ``Host``."""

    key: tuple[str, str, int]  # scheme, host (IDNA), port
    path: str
    host: str

    @classmethod
    def of(cls, url: URL) -> Target:
        return cls((url.scheme, url.raw_host or "", url.port or 0), url.raw_path_qs or "/",
                   host_header(url))


def host_header(url: URL) -> str:
    """``Host`` as HTTP/1.1 wants it: IPv6 in brackets, the port only when not the default."""
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    if url.port is not None and url.port != _DEFAULT_PORTS.get(url.scheme):
        host = f"{host}:{url.port}"
    return host


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


class Pool:
    """Keep-alive connections by destination, at most ``limit`` open at once."""

    def __init__(self, *, limit: int, resolver: Resolver,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        # A plain counter and queue: asyncio.Semaphore.locked() scans its waiters each time.
        self._free = limit
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._most_idle = limit
        self._idle_total = 0
        self._resolver = resolver
        self._ssl = ssl_context or ssl.create_default_context()
        self._dns: dict[tuple[str, int], tuple[float, list[Any]]] = {}
        self._closed = False

    def clear_dns_cache(self) -> None:
        """Forget every cached answer: the next connection looks its name up again."""
        self._dns.clear()

    async def _addresses(self, host: str, port: int) -> list[Any]:
        cached = self._dns.get((host, port))
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        answers = await self._resolver.resolve(host, port, socket.AF_UNSPEC)
        self._dns[(host, port)] = (now + DNS_TTL, answers)
        return answers

    async def _connect(self, key: tuple[str, str, int]) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls = self._ssl if scheme == "https" else None
        targets = [host] if _is_ip(host) else [a["host"] for a in await self._addresses(host,
                                                                                          port)]
        last: OSError | None = None
        for address in targets:
            try:
                _, conn = await loop.create_connection(
                    lambda: _Connection(key), address, port, ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
            except OSError as exc:  # ssl.SSLError is one
                last = exc
                continue
            sock = conn.transport.get_extra_info("socket") if conn.transport else None
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return conn
        raise ConnectionError(f"cannot connect to {host}:{port}: {last}") from last

    def _take_idle(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            self._idle_total -= 1
            if conn.reusable and now - conn.idle_since < _IDLE_SECONDS:
                return conn
            conn.abort()
        return None

    async def _acquire(self, deadline: float) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot just as it gave up: pass it on
            else:
                waiter.cancel()
            raise

    def _release(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    async def post(
        self, target: Target, headers: dict[str, str], body: bytes, timeouts: Timeouts, *,
        excerpt: int, drain: int,
    ) -> Response:
        """POST ``body``; TimeoutError past a timeout, OSError or HttpError when it failed."""
        if self._closed:
            raise Disconnected("the client is closed")
        data = _request_bytes(target, headers, body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeouts.total
        await self._acquire(deadline)
        try:
            key = target.key
            conn = self._take_idle(key)
            if conn is None:
                async with asyncio.timeout_at(min(deadline, loop.time() + timeouts.connect)):
                    conn = await self._connect(key)
            try:
                response = await conn.request(data, excerpt, drain, deadline)
            except BaseException:
                conn.abort()
                raise
            if conn.reusable and not self._closed and self._idle_total < self._most_idle:
                conn.idle_since = time.monotonic()
                self._idle.setdefault(key, []).append(conn)
                self._idle_total += 1
            else:
                conn.abort()
            return response
        finally:
            self._release()

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.abort()
        self._idle.clear()
        self._idle_total = 0
        await self._resolver.close()
